//! Accounts: who can log in, with what, and their points balance.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::points::Points;

/// Identifier of a user account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An email address, trimmed and lower-cased, plausible, at most 254 bytes.
///
/// "Plausible" is deliberately modest: one `@`, a non-empty local part of at
/// most 64 bytes without spaces, and a domain of dot-separated labels of
/// letters, digits and hyphens with at least one dot. Only a confirmation mail
/// could prove more.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why a string is not an acceptable email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("an email address is required")]
    Empty,
    #[error("an email address is at most {max} characters", max = Email::MAX_LEN)]
    TooLong,
    #[error("this is not a valid email address")]
    Implausible,
}

impl Email {
    pub const MAX_LEN: usize = 254;

    /// The form in which emails are stored and compared: trimmed, lower-cased.
    pub fn normalize(raw: &str) -> String {
        raw.trim().to_lowercase()
    }

    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let email = Self::normalize(raw);
        if email.is_empty() {
            return Err(EmailError::Empty);
        }
        if email.len() > Self::MAX_LEN {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = email.split_once('@').ok_or(EmailError::Implausible)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '@')
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            Err(EmailError::Implausible)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name: 1 to 50 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName(String);

/// Why a string is not an acceptable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserNameError {
    #[error("a name is required")]
    Empty,
    #[error("a name is at most {max} characters", max = UserName::MAX_CHARS)]
    TooLong,
    #[error("a name cannot contain control characters")]
    ControlCharacter,
}

impl UserName {
    pub const MAX_CHARS: usize = 50;

    pub fn parse(raw: &str) -> Result<Self, UserNameError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(UserNameError::Empty);
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(UserNameError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(UserNameError::ControlCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The common passwords refused at signup: the 8-or-more-character entries
/// (11,611 of them) of the frequency list the `zxcvbn` crate ships (MIT, see
/// `data/common-passwords.LICENSE`); shorter ones fail the length rule anyway.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../data/common-passwords.txt").lines().collect());

/// A new password as typed: 8 to 128 characters and not a common one.
///
/// It never prints: `Debug` shows `Password([redacted])`, and there is no
/// `Display` or `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password is at least {min} characters", min = Password::MIN_CHARS)]
    TooShort,
    #[error("a password is at most {max} characters", max = Password::MAX_CHARS)]
    TooLong,
    #[error("this password is too common; choose another")]
    TooCommon,
}

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, PasswordError> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        if chars > Self::MAX_CHARS {
            return Err(PasswordError::TooLong);
        }
        if COMMON_PASSWORDS.contains(raw.to_lowercase().as_str()) {
            return Err(PasswordError::TooCommon);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password itself, for the hasher.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// A password hash in PHC string format (`$argon2id$v=19$...`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

/// A user account as the rest of the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: UserName,
    pub point: Points,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Kim@Example.COM ").map(|e| e.0),
            Ok("kim@example.com".to_owned())
        );
    }

    #[test]
    fn implausible_emails_are_refused() {
        for raw in [
            "",
            "kim",
            "kim@",
            "@example.com",
            "kim@example",
            "kim@exa mple.com",
            "k m@example.com",
            "kim@-x.com",
            "kim@example..com",
            ".kim@example.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn an_email_over_254_characters_is_refused() {
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(200));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        assert_eq!(Password::parse("password1"), Err(PasswordError::TooCommon));
        assert_eq!(Password::parse("PassWord1"), Err(PasswordError::TooCommon));
        assert_eq!(Password::parse("qwertyuiop"), Err(PasswordError::TooCommon));
    }

    #[test]
    fn the_common_password_list_has_at_least_10000_entries() {
        assert!(COMMON_PASSWORDS.len() >= 10_000, "{}", COMMON_PASSWORDS.len());
    }

    #[test]
    fn passwords_never_print() {
        let password = Password::parse("correct horse battery staple").expect("valid");
        assert_eq!(format!("{password:?}"), "Password([redacted])");
        let hash = PasswordHash::new("$argon2id$v=19$secret".to_owned());
        assert!(!format!("{hash:?}").contains("secret"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(UserName::parse("  Kim ").map(|n| n.0), Ok("Kim".to_owned()));
        assert_eq!(UserName::parse("   "), Err(UserNameError::Empty));
        assert_eq!(UserName::parse(&"가".repeat(50)).map(|n| n.0.chars().count()), Ok(50));
        assert_eq!(UserName::parse(&"가".repeat(51)), Err(UserNameError::TooLong));
    }

    proptest! {
        #[test]
        fn plausible_emails_round_trip_lower_cased(
            local in "[a-zA-Z0-9][a-zA-Z0-9._+-]{0,20}[a-zA-Z0-9]",
            domain in "[a-zA-Z0-9]{1,20}",
            tld in "[a-zA-Z]{2,6}",
        ) {
            prop_assume!(!local.contains(".."));
            let raw = format!(" {local}@{domain}.{tld} ");
            let email = Email::parse(&raw).expect("plausible");
            prop_assert_eq!(email.as_str(), raw.trim().to_lowercase());
        }

        #[test]
        fn strings_without_an_at_sign_are_never_emails(raw in "[^@]{0,300}") {
            prop_assert!(Email::parse(&raw).is_err());
        }

        #[test]
        fn password_length_is_enforced_in_characters(len in 0usize..200) {
            // A random-looking password that is on no list.
            let raw: String = "Zq9#xW".chars().cycle().take(len).collect();
            let result = Password::parse(&raw);
            match len {
                0..=7 => prop_assert_eq!(result, Err(PasswordError::TooShort)),
                8..=128 => prop_assert!(result.is_ok()),
                _ => prop_assert_eq!(result, Err(PasswordError::TooLong)),
            }
        }

        #[test]
        fn control_characters_are_refused_anywhere_in_a_name(prefix in "[a-z]{1,10}", c in "\\p{Cc}", suffix in "[a-z]{1,10}") {
            prop_assert_eq!(UserName::parse(&format!("{prefix}{c}{suffix}")), Err(UserNameError::ControlCharacter));
        }

        #[test]
        fn names_are_accepted_exactly_when_1_to_50_chars_after_trim(name in "\\PC{0,60}") {
            let trimmed = name.trim().chars().count();
            prop_assert_eq!(UserName::parse(&name).is_ok(), (1..=50).contains(&trimmed));
        }
    }
}
