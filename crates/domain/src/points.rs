//! Points: the service's money. One point is one KRW, always a whole number.

use serde::{Deserialize, Serialize};

/// A non-negative whole number of points.
///
/// Backed by `i64` because that is what PostgreSQL's `bigint` holds; the
/// constructor rejects negative values, and arithmetic is checked so an
/// overflow is an error instead of a wrapped balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Points(i64);

/// Why a number is not a valid amount of points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PointsError {
    #[error("points cannot be negative (got {0})")]
    Negative(i64),
    #[error("points arithmetic overflowed")]
    Overflow,
}

impl Points {
    pub const ZERO: Points = Points(0);

    /// Builds an amount of points, refusing negative values.
    pub fn new(value: i64) -> Result<Self, PointsError> {
        if value < 0 {
            Err(PointsError::Negative(value))
        } else {
            Ok(Self(value))
        }
    }

    pub fn value(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Points) -> Result<Points, PointsError> {
        self.0.checked_add(other.0).map(Points).ok_or(PointsError::Overflow)
    }

    /// `self - other`, or `None` when that would be negative.
    pub fn checked_sub(self, other: Points) -> Option<Points> {
        self.0.checked_sub(other.0).filter(|v| *v >= 0).map(Points)
    }

    /// `self * factor`, refusing overflow.
    pub fn checked_mul(self, factor: u32) -> Result<Points, PointsError> {
        self.0
            .checked_mul(i64::from(factor))
            .map(Points)
            .ok_or(PointsError::Overflow)
    }
}

impl TryFrom<i64> for Points {
    type Error = PointsError;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Points::new(value)
    }
}

impl From<Points> for i64 {
    fn from(points: Points) -> Self {
        points.0
    }
}

impl std::fmt::Display for Points {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn negative_points_are_rejected() {
        assert_eq!(Points::new(-1), Err(PointsError::Negative(-1)));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let max = Points::new(i64::MAX).expect("max is valid");
        assert_eq!(max.checked_add(Points::new(1).expect("1")), Err(PointsError::Overflow));
        assert_eq!(max.checked_mul(2), Err(PointsError::Overflow));
    }

    #[test]
    fn a_charge_is_credited_only_up_to_the_balance_limit() {
        let points = |v| Points::new(v).expect("points");
        let limits = ChargeLimits {
            max_amount: points(1_000),
            max_balance: points(10_000),
        };
        let amount = ChargeAmount::new(1_000, &limits).expect("valid amount");
        assert_eq!(limits.credit(points(8_000), amount), Some(points(9_000)));
        assert_eq!(limits.credit(points(9_000), amount), Some(points(10_000)));
        assert_eq!(limits.credit(points(9_001), amount), None);
        assert_eq!(limits.credit(points(i64::MAX), amount), None);
    }

    proptest! {
        #[test]
        fn checked_sub_is_never_negative(a in 0..=i64::MAX, b in 0..=i64::MAX) {
            let got = Points::new(a).expect("a").checked_sub(Points::new(b).expect("b"));
            prop_assert_eq!(got.map(Points::value), (a >= b).then(|| a - b));
        }

        #[test]
        fn any_non_negative_value_round_trips(v in 0..=i64::MAX) {
            prop_assert_eq!(Points::new(v).map(Points::value), Ok(v));
        }

        #[test]
        fn any_negative_value_is_rejected(v in i64::MIN..0) {
            prop_assert!(Points::new(v).is_err());
        }

        #[test]
        fn checked_mul_matches_wide_arithmetic(v in 0..=i64::MAX, f in any::<u32>()) {
            let wide = i128::from(v) * i128::from(f);
            let got = Points::new(v).expect("non-negative").checked_mul(f);
            if wide > i128::from(i64::MAX) {
                prop_assert_eq!(got, Err(PointsError::Overflow));
            } else {
                prop_assert_eq!(got.map(|p| i128::from(p.value())), Ok(wide));
            }
        }
    }
}

/// Whether a ledger row added or took points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransactionKind {
    #[serde(rename = "ADD")]
    Add,
    #[serde(rename = "DEDUCT")]
    Deduct,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Deduct => "DEDUCT",
        }
    }
}

/// One row of a user's points ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointTransaction {
    pub id: uuid::Uuid,
    pub kind: TransactionKind,
    pub amount: Points,
    pub balance_after: Points,
    pub order_id: Option<uuid::Uuid>,
    pub created_at: time::OffsetDateTime,
}

/// The limits on charging, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeLimits {
    /// Largest single charge (1,000,000 by default).
    pub max_amount: Points,
    /// Largest balance a charge may produce (100,000,000 by default).
    pub max_balance: Points,
}

impl ChargeLimits {
    /// The balance after charging `amount` to `balance`, or `None` when it
    /// would pass `max_balance` (nothing may be charged then).
    pub fn credit(&self, balance: Points, amount: ChargeAmount) -> Option<Points> {
        balance
            .checked_add(amount.points())
            .ok()
            .filter(|after| *after <= self.max_balance)
    }
}

/// A validated charge amount: 1 to the configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeAmount(Points);

impl ChargeAmount {
    pub fn new(amount: i64, limits: &ChargeLimits) -> Option<Self> {
        (1..=limits.max_amount.value())
            .contains(&amount)
            .then_some(Self(Points(amount)))
    }

    pub fn points(self) -> Points {
        self.0
    }
}

/// A completed charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub user_id: crate::UserId,
    pub amount: Points,
    pub balance: Points,
    pub transaction_id: uuid::Uuid,
    pub charged_at: time::OffsetDateTime,
}

/// What a charge request came to. Both are stored for idempotent replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChargeOutcome {
    Charged(Charge),
    /// The balance would pass the cap; nothing was changed.
    BalanceLimitExceeded {
        balance: Points,
        amount: Points,
        max_balance: Points,
    },
}
