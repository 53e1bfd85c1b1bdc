//! Orders: what was asked for, what it costs, and what was placed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::menu::{Menu, MenuId};
use crate::points::{Points, PointsError};
use crate::user::UserId;

/// Lines per order, as sent (before duplicates are merged): 1 to 20.
pub const MAX_ORDER_LINES: usize = 20;
/// Cups per line: 1 to 100, also after duplicates are merged.
pub const MAX_QUANTITY: i64 = 100;

/// A validated order request: 1 to 20 lines as sent, duplicate menus merged,
/// each merged quantity 1 to 100, lines sorted by menu id (its canonical form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    lines: Vec<(MenuId, u32)>,
}

/// Why an order request is invalid; `index` is the position in the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRequestError {
    #[error("an order has 1 to {MAX_ORDER_LINES} items")]
    ItemCount,
    #[error("items[{index}].quantity must be 1 to {MAX_QUANTITY}")]
    Quantity { index: usize },
    #[error("the items for menu {menu_id} add up to more than {MAX_QUANTITY}")]
    MergedQuantity { menu_id: MenuId },
}

impl OrderRequest {
    pub fn new(items: &[(MenuId, i64)]) -> Result<Self, OrderRequestError> {
        if items.is_empty() || items.len() > MAX_ORDER_LINES {
            return Err(OrderRequestError::ItemCount);
        }
        let mut merged: BTreeMap<MenuId, i64> = BTreeMap::new();
        for (index, (menu_id, quantity)) in items.iter().enumerate() {
            if !(1..=MAX_QUANTITY).contains(quantity) {
                return Err(OrderRequestError::Quantity { index });
            }
            *merged.entry(*menu_id).or_default() += quantity;
        }
        let lines = merged
            .into_iter()
            .map(|(menu_id, quantity)| {
                u32::try_from(quantity)
                    .ok()
                    .filter(|q| i64::from(*q) <= MAX_QUANTITY)
                    .map(|q| (menu_id, q))
                    .ok_or(OrderRequestError::MergedQuantity { menu_id })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { lines })
    }

    /// Merged lines, sorted by menu id.
    pub fn lines(&self) -> &[(MenuId, u32)] {
        &self.lines
    }

    pub fn menu_ids(&self) -> Vec<MenuId> {
        self.lines.iter().map(|(id, _)| *id).collect()
    }

    /// A stable text form for fingerprinting: `menu:qty,menu:qty`.
    pub fn canonical(&self) -> String {
        self.lines
            .iter()
            .map(|(id, q)| format!("{id}:{q}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One priced line: the menu's name and price are snapshotted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub menu_id: MenuId,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Points,
    pub total_price: Points,
}

/// An order request priced against the current menu: ready to be paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDraft {
    pub lines: Vec<OrderLine>,
    pub total_price: Points,
}

/// Why a request could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("unknown menus: {0:?}")]
    MenuNotFound(Vec<MenuId>),
    #[error("the order total overflows")]
    Overflow,
}

impl From<PointsError> for PricingError {
    fn from(_: PointsError) -> Self {
        Self::Overflow
    }
}

impl OrderDraft {
    /// Prices `request` with `menus` (the current menu rows for its ids).
    pub fn price(request: &OrderRequest, menus: &[Menu]) -> Result<Self, PricingError> {
        let by_id: BTreeMap<MenuId, &Menu> = menus.iter().map(|m| (m.id, m)).collect();
        let missing: Vec<MenuId> = request
            .lines()
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !by_id.contains_key(id))
            .collect();
        if !missing.is_empty() {
            return Err(PricingError::MenuNotFound(missing));
        }
        let mut lines = Vec::with_capacity(request.lines().len());
        let mut total = Points::ZERO;
        for (menu_id, quantity) in request.lines() {
            let menu = by_id[menu_id];
            let line_total = menu.price.checked_mul(*quantity)?;
            total = total.checked_add(line_total)?;
            lines.push(OrderLine {
                menu_id: *menu_id,
                name: menu.name.as_str().to_owned(),
                quantity: *quantity,
                unit_price: menu.price,
                total_price: line_total,
            });
        }
        Ok(Self {
            lines,
            total_price: total,
        })
    }

    /// Pays the draft from `balance`: the balance after it, or `None` when
    /// the balance does not cover the total (nothing may be charged then).
    pub fn pay(&self, balance: Points) -> Option<Points> {
        balance.checked_sub(self.total_price)
    }
}

/// A paid order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    pub id: Uuid,
    pub user_id: UserId,
    pub lines: Vec<OrderLine>,
    pub total_price: Points,
    /// The payer's balance right after this order.
    pub balance_after: Points,
    pub created_at: OffsetDateTime,
}

/// What an order request came to. All three are stored for idempotent replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlaceOrderOutcome {
    Placed(PlacedOrder),
    /// Nothing was charged or written.
    InsufficientPoints {
        balance: Points,
        required: Points,
    },
    /// Nothing was charged or written.
    MenuNotFound {
        menu_ids: Vec<MenuId>,
    },
}

/// The event sent to the data-collection platform for every placed order
/// (docs/API.md, "Events sent to the collector"); its JSON form is the
/// collector's contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlacedEvent {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<OrderPlacedItem>,
    pub total_amount: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

/// One line of an [`OrderPlacedEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlacedItem {
    pub menu_id: Uuid,
    pub quantity: u32,
    /// The line's total in points.
    pub amount: i64,
}

impl OrderPlacedEvent {
    pub const TYPE: &'static str = "ORDER_PLACED";

    pub fn new(event_id: Uuid, order: &PlacedOrder) -> Self {
        Self {
            event_id,
            kind: Self::TYPE.to_owned(),
            order_id: order.id,
            user_id: order.user_id.as_uuid(),
            items: order
                .lines
                .iter()
                .map(|l| OrderPlacedItem {
                    menu_id: l.menu_id.as_uuid(),
                    quantity: l.quantity,
                    amount: l.total_price.value(),
                })
                .collect(),
            total_amount: order.total_price.value(),
            occurred_at: order.created_at,
        }
    }
}

/// One entry of the popular-menus ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopularMenu {
    pub rank: u32,
    pub menu: Menu,
    /// Cups ordered in the window.
    pub quantity: i64,
    /// Orders in the window that contained the menu.
    pub order_count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::MenuName;
    use proptest::prelude::*;

    fn id(n: u128) -> MenuId {
        MenuId::from_uuid(Uuid::from_u128(n))
    }

    fn menu(n: u128, price: i64) -> Menu {
        Menu {
            id: id(n),
            name: MenuName::parse(format!("Menu {n}")).expect("name"),
            price: Points::new(price).expect("price"),
        }
    }

    #[test]
    fn duplicates_are_merged_and_lines_sorted() {
        let request = OrderRequest::new(&[(id(2), 1), (id(1), 2), (id(2), 3)]).expect("valid");
        assert_eq!(request.lines(), &[(id(1), 2), (id(2), 4)]);
        assert_eq!(
            request.canonical(),
            OrderRequest::new(&[(id(1), 2), (id(2), 4)]).expect("valid").canonical()
        );
    }

    #[test]
    fn item_counts_and_quantities_are_bounded() {
        assert_eq!(OrderRequest::new(&[]), Err(OrderRequestError::ItemCount));
        let many: Vec<_> = (0..21).map(|n| (id(n), 1)).collect();
        assert_eq!(OrderRequest::new(&many), Err(OrderRequestError::ItemCount));
        assert_eq!(
            OrderRequest::new(&[(id(1), 0)]),
            Err(OrderRequestError::Quantity { index: 0 })
        );
        assert_eq!(
            OrderRequest::new(&[(id(1), 1), (id(1), 101)]),
            Err(OrderRequestError::Quantity { index: 1 })
        );
        assert_eq!(
            OrderRequest::new(&[(id(1), 60), (id(1), 41)]),
            Err(OrderRequestError::MergedQuantity { menu_id: id(1) })
        );
    }

    #[test]
    fn pricing_snapshots_prices_and_sums_the_total() {
        let request = OrderRequest::new(&[(id(1), 2), (id(2), 3)]).expect("valid");
        let draft = OrderDraft::price(&request, &[menu(1, 4000), menu(2, 4500)]).expect("priced");
        assert_eq!(draft.total_price.value(), 2 * 4000 + 3 * 4500);
        assert_eq!(draft.lines[1].unit_price.value(), 4500);
        assert_eq!(draft.lines[1].total_price.value(), 13_500);
        assert_eq!(draft.lines[0].name, "Menu 1");
    }

    #[test]
    fn unknown_menus_are_all_named() {
        let request = OrderRequest::new(&[(id(1), 1), (id(7), 1), (id(9), 1)]).expect("valid");
        assert_eq!(
            OrderDraft::price(&request, &[menu(1, 4000)]),
            Err(PricingError::MenuNotFound(vec![id(7), id(9)]))
        );
    }

    #[test]
    fn a_draft_is_paid_only_from_a_balance_that_covers_it() {
        let request = OrderRequest::new(&[(id(1), 2)]).expect("valid");
        let draft = OrderDraft::price(&request, &[menu(1, 4000)]).expect("priced");
        let points = |v| Points::new(v).expect("points");
        assert_eq!(draft.pay(points(10_000)), Some(points(2_000)));
        assert_eq!(draft.pay(points(8_000)), Some(Points::ZERO));
        assert_eq!(draft.pay(points(7_999)), None);
    }

    #[test]
    fn an_overflowing_total_is_an_error() {
        let request = OrderRequest::new(&[(id(1), 100), (id(2), 100)]).expect("valid");
        assert_eq!(
            OrderDraft::price(&request, &[menu(1, i64::MAX / 150), menu(2, i64::MAX / 150)]),
            Err(PricingError::Overflow)
        );
    }

    proptest! {
        #[test]
        fn the_total_is_the_sum_of_the_merged_lines(
            items in proptest::collection::vec((1u128..6, 1i64..=5), 1..=20),
            prices in proptest::collection::vec(1i64..100_000, 5),
        ) {
            let items: Vec<(MenuId, i64)> = items.into_iter().map(|(n, q)| (id(n), q)).collect();
            let menus: Vec<Menu> = (1..=5u128).map(|n| menu(n, prices[(n - 1) as usize])).collect();
            let request = OrderRequest::new(&items).expect("valid");
            let draft = OrderDraft::price(&request, &menus).expect("priced");
            let expected: i64 = items.iter().map(|(m, q)| q * prices[(m.as_uuid().as_u128() - 1) as usize]).sum();
            prop_assert_eq!(draft.total_price.value(), expected);
            let cups: i64 = items.iter().map(|(_, q)| q).sum();
            prop_assert_eq!(draft.lines.iter().map(|l| i64::from(l.quantity)).sum::<i64>(), cups);
        }
    }
}
