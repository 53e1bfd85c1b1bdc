//! Use case: order coffee, paid with points, idempotently.

use std::sync::Arc;

use coffee_domain::{
    IdempotencyContext, IdempotencyKey, IdempotencyScope, Idempotent, MenuId, OrderDraft, OrderRequest,
    OrderRequestError, PlaceOrderOutcome, PlacedOrder, PricingError, Principal, UserId,
};
use coffee_ports::{IdempotencyConflict, IdempotencyError, InfraError, OrderReads, OrderStore};
use uuid::Uuid;

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
/// hands it to the store with [`decide`], which the store applies to what
/// its transaction read (between its two round trips) before it writes.
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
            .place_order(context, request, decide)
            .await
            .map_err(IdempotencyError::split)
    }
}

/// An order's outcome from what its transaction read: the request priced at
/// the menus read (a menu that was not read is unknown), then paid from the
/// locked balance if it covers the total, as one order stamped `reads.at`.
/// A missing user or an overflowing total is a broken invariant, not an
/// outcome. The store writes a `Placed` order and nothing for the others.
pub fn decide(user: UserId, request: &OrderRequest, reads: OrderReads) -> Result<PlaceOrderOutcome, InfraError> {
    let draft = match OrderDraft::price(request, &reads.menus) {
        Ok(draft) => draft,
        Err(PricingError::MenuNotFound(menu_ids)) => return Ok(PlaceOrderOutcome::MenuNotFound { menu_ids }),
        Err(PricingError::Overflow) => {
            return Err(InfraError::Unexpected(anyhow::anyhow!("an order total overflowed")));
        }
    };
    let balance = reads
        .balance
        .ok_or_else(|| InfraError::Unexpected(anyhow::anyhow!("user {user} does not exist")))?;
    let Some(balance_after) = draft.pay(balance) else {
        let required = draft.total_price;
        return Ok(PlaceOrderOutcome::InsufficientPoints { balance, required });
    };
    Ok(PlaceOrderOutcome::Placed(PlacedOrder {
        id: Uuid::now_v7(),
        user_id: user,
        lines: draft.lines,
        total_price: draft.total_price,
        balance_after,
        created_at: reads.at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::caller;
    use crate::test_support::fixed_now;
    use coffee_domain::{Menu, MenuName, OrderLine, Points};
    use coffee_ports::orders::MockOrderStore;

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
            .withf(|ctx, request, _| {
                ctx.scope == IdempotencyScope::OrdersPlace
                    && ctx.user_id == UserId::from_uuid(Uuid::from_u128(1))
                    && request.lines() == [(menu(10), 2)]
                    && ctx.fingerprint == fingerprint(IdempotencyScope::OrdersPlace, &request.canonical())
            })
            .times(1)
            .returning(|_, _, _| Ok(Idempotent::Fresh(placed())));

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
            store
                .expect_place_order()
                .returning(move |_, _, _| Ok(returned.clone()));

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
            store.expect_place_order().returning(move |_, _, _| Err(error()));

            let err = PlaceOrder::new(Arc::new(store))
                .execute(&caller(), command(&[(10, 2)]))
                .await
                .expect_err("fails");

            assert!(expected(&err), "{err:?}");
        }
    }

    fn on_the_menu(n: u128, name: &str, price: i64) -> Menu {
        Menu {
            id: menu(n),
            name: MenuName::parse(name).expect("name"),
            price: Points::new(price).expect("points"),
        }
    }

    fn reads(menus: Vec<Menu>, balance: Option<i64>) -> OrderReads {
        OrderReads {
            menus,
            balance: balance.map(|b| Points::new(b).expect("points")),
            at: fixed_now(),
        }
    }

    /// The outcome when the store's transaction reads `reads`: the store
    /// fake hands them to the rules the use case gave it, as the adapter does
    /// between its two round trips.
    async fn outcome_of(reads: OrderReads, items: &[(u128, i64)]) -> Result<PlaceOrderOutcome, PlaceOrderError> {
        let mut store = MockOrderStore::new();
        store
            .expect_place_order()
            .times(1)
            .returning(move |ctx, request, decide| {
                decide(ctx.user_id, &request, reads.clone())
                    .map(Idempotent::Fresh)
                    .map_err(IdempotencyError::from)
            });
        PlaceOrder::new(Arc::new(store))
            .execute(&caller(), command(items))
            .await
            .map(Idempotent::into_inner)
    }

    #[tokio::test]
    async fn an_order_is_priced_from_the_menus_read_and_paid_from_the_balance_read() {
        let menus = vec![on_the_menu(10, "Latte", 4500), on_the_menu(11, "Mocha", 5000)];
        let placed = outcome_of(reads(menus, Some(20_000)), &[(11, 1), (10, 2)])
            .await
            .expect("answered");

        let PlaceOrderOutcome::Placed(order) = placed else {
            panic!("not placed: {placed:?}");
        };
        assert_eq!(order.user_id, caller().user_id);
        assert_eq!(order.total_price.value(), 14_000);
        assert_eq!(order.balance_after.value(), 6_000, "the balance after the order");
        assert_eq!(order.created_at, fixed_now(), "stamped with the store's instant");
        let lines: Vec<_> = order
            .lines
            .iter()
            .map(|l| {
                (
                    l.menu_id,
                    l.name.as_str(),
                    l.quantity,
                    l.unit_price.value(),
                    l.total_price.value(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            [(menu(10), "Latte", 2, 4500, 9000), (menu(11), "Mocha", 1, 5000, 5000)]
        );
    }

    #[tokio::test]
    async fn a_balance_that_exactly_covers_the_total_pays_it_down_to_zero() {
        let placed = outcome_of(reads(vec![on_the_menu(10, "Latte", 4500)], Some(9000)), &[(10, 2)])
            .await
            .expect("answered");
        assert!(
            matches!(&placed, PlaceOrderOutcome::Placed(order) if order.balance_after == Points::ZERO),
            "{placed:?}"
        );
    }

    #[tokio::test]
    async fn a_short_balance_is_insufficient_points_with_the_balance_and_the_total() {
        let refused = outcome_of(reads(vec![on_the_menu(10, "Latte", 4500)], Some(8999)), &[(10, 2)])
            .await
            .expect("answered");
        assert_eq!(
            refused,
            PlaceOrderOutcome::InsufficientPoints {
                balance: Points::new(8999).expect("points"),
                required: Points::new(9000).expect("points"),
            }
        );
    }

    #[tokio::test]
    async fn menus_the_store_did_not_find_are_unknown_whatever_the_balance() {
        let latte = || vec![on_the_menu(10, "Latte", 4500)];
        let unknown = PlaceOrderOutcome::MenuNotFound {
            menu_ids: vec![menu(12), menu(13)],
        };
        for balance in [Some(0), Some(1_000_000), None] {
            let refused = outcome_of(reads(latte(), balance), &[(13, 1), (10, 1), (12, 1)])
                .await
                .expect("answered");
            assert_eq!(refused, unknown, "balance {balance:?}");
        }
    }

    #[tokio::test]
    async fn a_missing_payer_or_an_overflowing_total_is_unexpected_and_writes_nothing() {
        let latte = vec![on_the_menu(10, "Latte", 4500)];
        let huge = vec![on_the_menu(10, "Gold Leaf", i64::MAX / 2)];
        for (reads, items) in [(reads(latte, None), [(10, 1)]), (reads(huge, Some(100)), [(10, 3)])] {
            let error = outcome_of(reads, &items).await.expect_err("broken invariant");
            assert!(
                matches!(&error, PlaceOrderError::Infra(e) if !e.is_unavailable()),
                "{error:?}"
            );
        }
    }
}
