//! `?limit&cursor` for keyset-paginated lists.
//!
//! A cursor is opaque to clients and sealed: base64url (no padding) of the
//! last item's timestamp (8 bytes, unix microseconds) and id (16 bytes),
//! followed by the first 16 bytes of an HMAC-SHA256 over those and the list
//! and user it was issued for. So a cursor the API did not issue, whatever it
//! decodes to (a timestamp PostgreSQL cannot hold, another user's position,
//! another list's), is `400 VALIDATION_FAILED` and never reaches the
//! database; and a cursor is always exactly [`CURSOR_LEN`] characters of the
//! base64url alphabet, as the API document says.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffee_domain::{Cursor, PageSize, UserId};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::problem::{ApiError, FieldError};

/// Characters of every cursor: base64url of 8 + 16 + 16 bytes.
pub const CURSOR_LEN: usize = 54;
const TAG_BYTES: usize = 16;

/// Which list a cursor walks; part of what its tag covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorScope {
    Orders,
    PointTransactions,
}

impl CursorScope {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Orders => b"orders",
            Self::PointTransactions => b"point-transactions",
        }
    }
}

/// The keys of cursors: every instance derives the same ones from the token
/// signing keys, so a cursor from one instance works on all of them. The
/// current key seals; the previous ones (`JWT_PREVIOUS_SECRETS`) still open,
/// so rotating the signing key does not break a client's paging.
#[derive(Clone)]
pub struct CursorKey {
    current: Hmac<Sha256>,
    previous: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// Derives the cursor key from `secret` (HMAC of a fixed label), so it
    /// never equals the secret it comes from.
    pub fn derive(secret: &[u8]) -> Self {
        Self::derive_rotating(secret, &[])
    }

    /// Seals with the key derived from `current`; opens with it and with
    /// those derived from each of `previous`.
    pub fn derive_rotating(current: &[u8], previous: &[&[u8]]) -> Self {
        Self {
            current: derive_key(current),
            previous: previous.iter().map(|secret| derive_key(secret)).collect(),
        }
    }

    fn mac(key: &Hmac<Sha256>, scope: CursorScope, user: UserId, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = key.clone();
        mac.update(scope.label());
        mac.update(user.as_uuid().as_bytes());
        mac.update(body);
        mac
    }

    /// The cursor for `user`'s `scope` list that continues after `cursor`.
    pub fn seal(&self, scope: CursorScope, user: UserId, cursor: &Cursor) -> String {
        let micros = i64::try_from(cursor.created_at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
        let mut bytes = Vec::with_capacity(8 + 16 + TAG_BYTES);
        bytes.extend_from_slice(&micros.to_be_bytes());
        bytes.extend_from_slice(cursor.id.as_bytes());
        let full = Self::mac(&self.current, scope, user, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&full[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position `raw` stands for, if this API sealed it for `user`'s
    /// `scope` list with the current key or a previous one.
    pub fn open(&self, scope: CursorScope, user: UserId, raw: &str) -> Option<Cursor> {
        if raw.len() != CURSOR_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let (body, tag) = bytes.split_at_checked(8 + 16)?;
        // Constant-time comparison of the truncated tag, key by key.
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| Self::mac(key, scope, user, body).verify_truncated_left(tag).is_ok())?;
        let (micros, id) = body.split_at(8);
        let micros = i64::from_be_bytes(micros.try_into().ok()?);
        Some(Cursor {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok()?,
            id: Uuid::from_slice(id).ok()?,
        })
    }
}

/// The cursor key derived from a token signing key.
fn derive_key(secret: &[u8]) -> Hmac<Sha256> {
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable_key());
    derive.update(b"coffee/pagination-cursor/v1");
    let key = derive.finalize().into_bytes();
    <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable_key())
}

/// HMAC-SHA256 takes keys of any length; this cannot happen.
fn unreachable_key() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 refused a key")
}

/// The query string of a list route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 100 (default 20).
    #[param(value_type = Option<u16>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page, exactly as it was given (54
    /// characters of the base64url alphabet). Any other value is `400`.
    #[param(min_length = 54, max_length = 54, pattern = "^[A-Za-z0-9_-]{54}$")]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// Validates both parameters, reporting each bad one. The cursor must be
    /// one `key` sealed for `user`'s `scope` list.
    pub fn parse(
        &self,
        key: &CursorKey,
        scope: CursorScope,
        user: UserId,
    ) -> Result<(PageSize, Option<Cursor>), ApiError> {
        let mut errors = Vec::new();
        let size = match &self.limit {
            None => Some(PageSize::DEFAULT),
            Some(raw) => {
                let size = raw.parse::<u16>().ok().and_then(PageSize::new);
                if size.is_none() {
                    errors.push(FieldError::new(
                        "limit",
                        format!("must be a whole number from 1 to {}", PageSize::MAX),
                    ));
                }
                size
            }
        };
        let cursor = match &self.cursor {
            None => None,
            Some(raw) => {
                let cursor = key.open(scope, user, raw);
                if cursor.is_none() {
                    errors.push(FieldError::new(
                        "cursor",
                        "is not a cursor this API issued for this list",
                    ));
                }
                cursor
            }
        };
        match size {
            Some(size) if errors.is_empty() => Ok((size, cursor)),
            _ => Err(ApiError::validation(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn key() -> CursorKey {
        CursorKey::derive(b"a-test-signing-key-of-at-least-32-bytes")
    }

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }

    fn cursor() -> Cursor {
        Cursor {
            created_at: datetime!(2026-11-29 01:02:03.456789 UTC),
            id: Uuid::from_u128(77),
        }
    }

    fn query(limit: Option<&str>, cursor: Option<&str>) -> PageQuery {
        PageQuery {
            limit: limit.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
        }
    }

    #[test]
    fn cursors_round_trip_to_the_microsecond_in_54_url_safe_characters() {
        let sealed = key().seal(CursorScope::Orders, user(1), &cursor());
        assert_eq!(sealed.len(), CURSOR_LEN);
        assert!(
            sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(key().open(CursorScope::Orders, user(1), &sealed), Some(cursor()));
    }

    #[test]
    fn a_cursor_opens_only_for_its_list_user_and_key() {
        let sealed = key().seal(CursorScope::Orders, user(1), &cursor());
        assert_eq!(key().open(CursorScope::PointTransactions, user(1), &sealed), None);
        assert_eq!(key().open(CursorScope::Orders, user(2), &sealed), None);
        let other = CursorKey::derive(b"another-signing-key-of-at-least-32-bytes");
        assert_eq!(other.open(CursorScope::Orders, user(1), &sealed), None);
    }

    #[test]
    fn a_cursor_sealed_before_a_key_rotation_opens_until_its_key_is_removed() {
        let old = b"the-old-signing-key-of-at-least-32-bytes".as_slice();
        let new = b"the-new-signing-key-of-at-least-32-bytes".as_slice();
        let sealed = CursorKey::derive(old).seal(CursorScope::Orders, user(1), &cursor());
        let rotated = CursorKey::derive_rotating(new, &[old]);
        assert_eq!(rotated.open(CursorScope::Orders, user(1), &sealed), Some(cursor()));
        assert_eq!(rotated.open(CursorScope::Orders, user(2), &sealed), None);
        let resealed = rotated.seal(CursorScope::Orders, user(1), &cursor());
        assert_eq!(
            CursorKey::derive(new).open(CursorScope::Orders, user(1), &resealed),
            Some(cursor()),
            "the current key seals"
        );
        assert_eq!(CursorKey::derive(new).open(CursorScope::Orders, user(1), &sealed), None);
    }

    #[test]
    fn forged_cursors_are_refused_whatever_they_decode_to() {
        // The old unsealed format with a timestamp of about 5000 BC (which
        // PostgreSQL cannot hold; it gave 500), and a sealed cursor with one
        // byte changed.
        let ancient = URL_SAFE_NO_PAD.encode(format!("-220000000000000000.{}", Uuid::from_u128(1)));
        let mut tampered = key().seal(CursorScope::Orders, user(1), &cursor()).into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        let huge = URL_SAFE_NO_PAD.encode([0xff_u8; 40]);
        for raw in [
            ancient.as_str(),
            tampered.as_str(),
            huge.as_str(),
            "",
            "garbage",
            &"A".repeat(54),
        ] {
            assert_eq!(key().open(CursorScope::Orders, user(1), raw), None, "{raw:?}");
            let err = query(None, Some(raw)).parse(&key(), CursorScope::Orders, user(1));
            assert!(err.is_err(), "{raw:?}");
        }
    }

    #[test]
    fn bad_limits_are_validation_errors() {
        for limit in ["0", "101", "ten", ""] {
            assert!(
                query(Some(limit), None)
                    .parse(&key(), CursorScope::Orders, user(1))
                    .is_err(),
                "{limit:?}"
            );
        }
        let ok = query(None, None)
            .parse(&key(), CursorScope::Orders, user(1))
            .expect("defaults");
        assert_eq!(ok, (PageSize::DEFAULT, None));
    }
}
