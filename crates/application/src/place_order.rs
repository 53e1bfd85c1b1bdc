//! Use case: order coffee, paid with points, idempotently.

use std::sync::Arc;

use coffee_domain::{
    IdempotencyContext, IdempotencyKey, IdempotencyScope, Idempotent, MenuId, OrderRequest, OrderRequestError,
    PlaceOrderOutcome, Principal,
};
use coffee_ports::{IdempotencyConflict, IdempotencyError, InfraError, OrderStore};

use crate::fingerprint::fingerprint;

/// An order as the HTTP edge hands it over.
#[derive(Debug, Clone)]
pub struct PlaceOrderCommand {
    /// `(menuId, quantity)` as sent; validated here.
    pub items: Vec<(MenuId, i64)>,
    pub key: IdempotencyKey,
}

/// Why an order was refused before or instead of its outcome.
#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    #[error(transparent)]
    Invalid(#[from] OrderRequestError),
    #[error(transparent)]
    Conflict(#[from] IdempotencyConflict),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Validates the request in the domain, fingerprints its canonical form and
/// hands it to the store, which prices and pays for it atomically.
/// The order's time is the store's: taken once the balance is locked, so
/// no instance's clock decides it.
#[derive(Clone, Debug)]
pub struct PlaceOrder {
    orders: Arc<dyn OrderStore>,
}

impl PlaceOrder {
    pub fn new(orders: Arc<dyn OrderStore>) -> Self {
        Self { orders }
    }

    #[tracing::instrument(name = "place_order", skip_all, fields(user = %caller.user_id))]
    pub async fn execute(
        &self,
        caller: &Principal,
        command: PlaceOrderCommand,
    ) -> Result<Idempotent<PlaceOrderOutcome>, PlaceOrderError> {
        let request = OrderRequest::new(&command.items)?;
        let context = IdempotencyContext {
            user_id: caller.user_id,
            scope: IdempotencyScope::OrdersPlace,
            key: command.key,
            fingerprint: fingerprint(IdempotencyScope::OrdersPlace, &request.canonical()),
        };
        self.orders
            .place_order(context, request)
            .await
            .map_err(IdempotencyError::split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::caller;
    use crate::test_support::fixed_now;
    use coffee_domain::{OrderLine, PlacedOrder, Points, UserId};
    use coffee_ports::orders::MockOrderStore;
    use uuid::Uuid;

    fn menu(n: u128) -> MenuId {
        MenuId::from_uuid(Uuid::from_u128(n))
    }

    fn command(items: &[(u128, i64)]) -> PlaceOrderCommand {
        PlaceOrderCommand {
            items: items.iter().map(|(m, q)| (menu(*m), *q)).collect(),
            key: IdempotencyKey::parse("order-1").expect("key"),
        }
    }

    fn placed() -> PlaceOrderOutcome {
        PlaceOrderOutcome::Placed(PlacedOrder {
            id: Uuid::from_u128(50),
            user_id: UserId::from_uuid(Uuid::from_u128(1)),
            lines: vec![OrderLine {
                menu_id: menu(10),
                name: "Latte".to_owned(),
                quantity: 2,
                unit_price: Points::new(4500).expect("points"),
                total_price: Points::new(9000).expect("points"),
            }],
            total_price: Points::new(9000).expect("points"),
            balance_after: Points::new(1000).expect("points"),
            created_at: fixed_now(),
        })
    }

    #[tokio::test]
    async fn a_valid_order_reaches_the_store_merged_and_fingerprinted() {
        let mut store = MockOrderStore::new();
        store
            .expect_place_order()
            .withf(|ctx, request| {
                ctx.scope == IdempotencyScope::OrdersPlace
                    && ctx.user_id == UserId::from_uuid(Uuid::from_u128(1))
                    && request.lines() == [(menu(10), 2)]
                    && ctx.fingerprint == fingerprint(IdempotencyScope::OrdersPlace, &request.canonical())
            })
            .times(1)
            .returning(|_, _| Ok(Idempotent::Fresh(placed())));

        let outcome = PlaceOrder::new(Arc::new(store))
            .execute(&caller(), command(&[(10, 1), (10, 1)]))
            .await
            .expect("placed");

        assert_eq!(outcome, Idempotent::Fresh(placed()));
    }

    #[tokio::test]
    async fn an_invalid_request_never_reaches_the_store() {
        for items in [
            vec![],
            vec![(10, 0)],
            vec![(10, 101)],
            (0..21).map(|n| (n, 1)).collect(),
        ] {
            let mut store = MockOrderStore::new();
            store.expect_place_order().never();

            let err = PlaceOrder::new(Arc::new(store))
                .execute(&caller(), command(&items))
                .await
                .expect_err("invalid");

            assert!(matches!(err, PlaceOrderError::Invalid(_)), "{items:?}");
        }
    }

    #[tokio::test]
    async fn business_rejections_and_replays_pass_through() {
        for outcome in [
            Idempotent::Fresh(PlaceOrderOutcome::InsufficientPoints {
                balance: Points::new(100).expect("points"),
                required: Points::new(9000).expect("points"),
            }),
            Idempotent::Replayed(PlaceOrderOutcome::MenuNotFound {
                menu_ids: vec![menu(10)],
            }),
            Idempotent::Replayed(placed()),
        ] {
            let returned = outcome.clone();
            let mut store = MockOrderStore::new();
            store.expect_place_order().returning(move |_, _| Ok(returned.clone()));

            let got = PlaceOrder::new(Arc::new(store))
                .execute(&caller(), command(&[(10, 2)]))
                .await
                .expect("answered");

            assert_eq!(got, outcome);
        }
    }

    #[tokio::test]
    async fn key_conflicts_and_store_failures_are_reported() {
        type MakeError = fn() -> IdempotencyError;
        type Expected = fn(&PlaceOrderError) -> bool;
        let cases: [(MakeError, Expected); 3] = [
            (
                || IdempotencyConflict::KeyReused.into(),
                |e| matches!(e, PlaceOrderError::Conflict(IdempotencyConflict::KeyReused)),
            ),
            (
                || IdempotencyConflict::KeyInUse.into(),
                |e| matches!(e, PlaceOrderError::Conflict(IdempotencyConflict::KeyInUse)),
            ),
            (
                || IdempotencyError::Infra(InfraError::unavailable("database", anyhow::anyhow!("down"))),
                |e| matches!(e, PlaceOrderError::Infra(e) if e.is_unavailable()),
            ),
        ];
        for (error, expected) in cases {
            let mut store = MockOrderStore::new();
            store.expect_place_order().returning(move |_, _| Err(error()));

            let err = PlaceOrder::new(Arc::new(store))
                .execute(&caller(), command(&[(10, 2)]))
                .await
                .expect_err("fails");

            assert!(expected(&err), "{err:?}");
        }
    }
}
