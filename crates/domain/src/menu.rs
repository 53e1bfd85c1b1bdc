//! The coffee menu: what can be ordered, and at what price.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::points::Points;

/// Identifier of a menu item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MenuId(Uuid);

impl MenuId {
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for MenuId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A menu item's display name: 1 to 100 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MenuName(String);

/// Why a string is not a valid menu name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MenuNameError {
    #[error("a menu name cannot be empty")]
    Empty,
    #[error("a menu name is at most {max} characters", max = MenuName::MAX_CHARS)]
    TooLong,
    #[error("a menu name cannot contain control characters")]
    ControlCharacter,
}

impl MenuName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: impl AsRef<str>) -> Result<Self, MenuNameError> {
        let trimmed = raw.as_ref().trim();
        if trimmed.is_empty() {
            return Err(MenuNameError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(MenuNameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(MenuNameError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MenuName {
    type Error = MenuNameError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        MenuName::parse(value)
    }
}

impl From<MenuName> for String {
    fn from(name: MenuName) -> Self {
        name.0
    }
}

/// A coffee that can be ordered at its current price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    pub id: MenuId,
    pub name: MenuName,
    pub price: Points,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn menu_names_are_trimmed() {
        assert_eq!(
            MenuName::parse("  Latte ").map(|n| n.as_str().to_owned()),
            Ok("Latte".to_owned())
        );
    }

    #[test]
    fn blank_menu_names_are_rejected() {
        assert_eq!(MenuName::parse("   "), Err(MenuNameError::Empty));
    }

    proptest! {
        #[test]
        fn names_longer_than_the_limit_are_rejected(name in "[a-z]{101,200}") {
            prop_assert_eq!(MenuName::parse(name), Err(MenuNameError::TooLong));
        }

        #[test]
        fn any_non_blank_short_name_is_kept_trimmed(name in "[A-Za-z][A-Za-z ]{0,98}") {
            let parsed = MenuName::parse(&name).expect("valid name");
            prop_assert_eq!(parsed.as_str(), name.trim());
        }
    }
}
