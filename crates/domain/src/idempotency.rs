//! Idempotency keys: a client's promise that a retried request is the same
//! request, so it takes effect once (docs/API.md, "Idempotency").

use serde::{Deserialize, Serialize};

/// The `Idempotency-Key` header: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a header value is not a usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("an idempotency key is 1 to {max} characters", max = IdempotencyKey::MAX_LEN)]
    Length,
    #[error("an idempotency key is printable ASCII only")]
    NotPrintable,
}

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, IdempotencyKeyError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(IdempotencyKeyError::Length);
        }
        if !raw.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(IdempotencyKeyError::NotPrintable);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which endpoint a key belongs to: keys are scoped to (user, endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdempotencyScope {
    PointsCharge,
    OrdersPlace,
}

impl IdempotencyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PointsCharge => "points.charge",
            Self::OrdersPlace => "orders.place",
        }
    }
}

/// SHA-256 of a request's canonical form: the same key with a different
/// fingerprint is a different request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Everything that identifies one idempotent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyContext {
    pub user_id: crate::UserId,
    pub scope: IdempotencyScope,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
}

/// An outcome, and whether it was produced now or replayed from the first
/// request with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Idempotent<T> {
    Fresh(T),
    Replayed(T),
}

impl<T> Idempotent<T> {
    pub fn is_replayed(&self) -> bool {
        matches!(self, Self::Replayed(_))
    }

    pub fn into_inner(self) -> T {
        match self {
            Self::Fresh(t) | Self::Replayed(t) => t,
        }
    }

    pub fn as_inner(&self) -> &T {
        match self {
            Self::Fresh(t) | Self::Replayed(t) => t,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Idempotent<U> {
        match self {
            Self::Fresh(t) => Idempotent::Fresh(f(t)),
            Self::Replayed(t) => Idempotent::Replayed(f(t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_are_1_to_255_printable_ascii() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Length));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(IdempotencyKeyError::Length)
        );
        assert_eq!(
            IdempotencyKey::parse("tab\there"),
            Err(IdempotencyKeyError::NotPrintable)
        );
        assert_eq!(IdempotencyKey::parse("é"), Err(IdempotencyKeyError::NotPrintable));
    }

    proptest! {
        #[test]
        fn any_printable_ascii_key_of_valid_length_is_accepted(key in "[ -~]{1,255}") {
            prop_assert_eq!(IdempotencyKey::parse(&key).map(|k| k.as_str().to_owned()), Ok(key));
        }
    }
}
