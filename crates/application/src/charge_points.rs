//! Use case: charge points to one's own account, idempotently.

use std::sync::Arc;

use coffee_domain::{
    ChargeAmount, ChargeLimits, ChargeOutcome, IdempotencyContext, IdempotencyKey, IdempotencyScope, Idempotent,
    Principal, UserId,
};
use coffee_ports::{IdempotencyConflict, IdempotencyError, InfraError, PointStore};

use crate::fingerprint::fingerprint;

/// A charge request as the HTTP edge hands it over.
#[derive(Debug, Clone)]
pub struct ChargeCommand {
    /// The account in the path: must be the caller's own.
    pub user_id: UserId,
    /// As sent; validated against the configured limits here.
    pub amount: i64,
    pub key: IdempotencyKey,
}

/// Why a charge was refused before or instead of its outcome.
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error("only the account owner may charge it")]
    Forbidden,
    #[error("the amount must be 1 to {max}")]
    InvalidAmount { max: i64 },
    #[error(transparent)]
    Conflict(#[from] IdempotencyConflict),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Validates, fingerprints and hands the charge to the store, which applies
/// it atomically with its ledger row and idempotency record.
#[derive(Clone, Debug)]
pub struct ChargePoints {
    points: Arc<dyn PointStore>,
    limits: ChargeLimits,
}

impl ChargePoints {
    pub fn new(points: Arc<dyn PointStore>, limits: ChargeLimits) -> Self {
        Self { points, limits }
    }

    #[tracing::instrument(name = "charge_points", skip_all, fields(user = %command.user_id, amount = command.amount))]
    pub async fn execute(
        &self,
        caller: &Principal,
        command: ChargeCommand,
    ) -> Result<Idempotent<ChargeOutcome>, ChargeError> {
        if caller.user_id != command.user_id {
            return Err(ChargeError::Forbidden);
        }
        let amount = ChargeAmount::new(command.amount, &self.limits).ok_or(ChargeError::InvalidAmount {
            max: self.limits.max_amount.value(),
        })?;
        let context = IdempotencyContext {
            user_id: command.user_id,
            scope: IdempotencyScope::PointsCharge,
            key: command.key,
            fingerprint: fingerprint(IdempotencyScope::PointsCharge, &amount.points().to_string()),
        };
        self.points
            .charge(context, amount, self.limits)
            .await
            .map_err(IdempotencyError::split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::caller_of;
    use coffee_domain::{Charge, Points};
    use coffee_ports::points::MockPointStore;
    use time::OffsetDateTime;
    use uuid::Uuid;

    const OWNER: Uuid = Uuid::from_u128(1);

    fn limits() -> ChargeLimits {
        ChargeLimits {
            max_amount: Points::new(1_000_000).expect("points"),
            max_balance: Points::new(100_000_000).expect("points"),
        }
    }

    fn caller() -> Principal {
        caller_of(UserId::from_uuid(OWNER))
    }

    fn command(user: Uuid, amount: i64, key: &str) -> ChargeCommand {
        ChargeCommand {
            user_id: UserId::from_uuid(user),
            amount,
            key: IdempotencyKey::parse(key).expect("key"),
        }
    }

    fn charged(amount: i64, balance: i64) -> ChargeOutcome {
        ChargeOutcome::Charged(Charge {
            user_id: UserId::from_uuid(OWNER),
            amount: Points::new(amount).expect("points"),
            balance: Points::new(balance).expect("points"),
            transaction_id: Uuid::from_u128(9),
            charged_at: OffsetDateTime::UNIX_EPOCH,
        })
    }

    #[tokio::test]
    async fn a_valid_charge_reaches_the_store_with_its_scope_and_fingerprint() {
        let mut store = MockPointStore::new();
        store
            .expect_charge()
            .withf(|ctx, amount, _| {
                ctx.scope == IdempotencyScope::PointsCharge
                    && ctx.key.as_str() == "k1"
                    && ctx.fingerprint == fingerprint(IdempotencyScope::PointsCharge, "500")
                    && amount.points().value() == 500
            })
            .times(1)
            .returning(|_, _, _| Ok(Idempotent::Fresh(charged(500, 500))));

        let outcome = ChargePoints::new(Arc::new(store), limits())
            .execute(&caller(), command(OWNER, 500, "k1"))
            .await
            .expect("charged");

        assert_eq!(outcome, Idempotent::Fresh(charged(500, 500)));
    }

    #[tokio::test]
    async fn someone_elses_account_is_forbidden_and_untouched() {
        let mut store = MockPointStore::new();
        store.expect_charge().never();

        let err = ChargePoints::new(Arc::new(store), limits())
            .execute(&caller(), command(Uuid::from_u128(99), 500, "k1"))
            .await
            .expect_err("forbidden");

        assert!(matches!(err, ChargeError::Forbidden));
    }

    #[tokio::test]
    async fn amounts_outside_1_to_the_maximum_are_invalid_and_untouched() {
        for amount in [0, -1, 1_000_001, i64::MAX] {
            let mut store = MockPointStore::new();
            store.expect_charge().never();

            let err = ChargePoints::new(Arc::new(store), limits())
                .execute(&caller(), command(OWNER, amount, "k1"))
                .await
                .expect_err("invalid");

            assert!(matches!(err, ChargeError::InvalidAmount { max: 1_000_000 }), "{amount}");
        }
    }

    #[tokio::test]
    async fn replays_and_business_rejections_pass_through() {
        let rejection = ChargeOutcome::BalanceLimitExceeded {
            balance: Points::new(99_999_999).expect("points"),
            amount: Points::new(10).expect("points"),
            max_balance: Points::new(100_000_000).expect("points"),
        };
        let stored = rejection.clone();
        let mut store = MockPointStore::new();
        store
            .expect_charge()
            .returning(move |_, _, _| Ok(Idempotent::Replayed(stored.clone())));

        let outcome = ChargePoints::new(Arc::new(store), limits())
            .execute(&caller(), command(OWNER, 10, "k1"))
            .await
            .expect("replayed");

        assert_eq!(outcome, Idempotent::Replayed(rejection));
    }

    #[tokio::test]
    async fn key_conflicts_and_store_failures_are_reported() {
        type Expected = fn(&ChargeError) -> bool;
        let cases: [(IdempotencyError, Expected); 3] = [
            (IdempotencyConflict::KeyReused.into(), |e| {
                matches!(e, ChargeError::Conflict(IdempotencyConflict::KeyReused))
            }),
            (IdempotencyConflict::KeyInUse.into(), |e| {
                matches!(e, ChargeError::Conflict(IdempotencyConflict::KeyInUse))
            }),
            (
                IdempotencyError::Infra(InfraError::unavailable("database", anyhow::anyhow!("down"))),
                |e| matches!(e, ChargeError::Infra(e) if e.is_unavailable()),
            ),
        ];
        for (error, expected) in cases {
            let mut store = MockPointStore::new();
            let error = std::sync::Mutex::new(Some(error));
            store
                .expect_charge()
                .returning(move |_, _, _| Err(error.lock().expect("lock").take().expect("called once")));

            let err = ChargePoints::new(Arc::new(store), limits())
                .execute(&caller(), command(OWNER, 10, "k1"))
                .await
                .expect_err("fails");

            assert!(expected(&err), "{err:?}");
        }
    }
}
