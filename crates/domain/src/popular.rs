//! The popular-menu ranking's arithmetic: the window, the hourly statistics
//! buckets, the sums that can be held in memory, and the ranking's order.
//!
//! The window is `(now - 7 days, now]`. Let `lo = now - 7 days` and
//! `first_full` the first whole UTC hour after `lo` ([`window_bounds`]). The
//! ranking adds up the whole hours from `first_full` on (hourly buckets) and
//! the partial hour `(lo, first_full)` at the old edge, at one-second
//! resolution (docs/API.md, "Popular menus": "to the second"): in that hour an
//! order counts when it is younger than `lo` rounded up to a whole second
//! ([`EdgeHour::add_after`]). That is exactly the window when `now` is a whole
//! second; otherwise the orders of the partial hour after `lo` up to the next
//! whole second are left out, and an order older than seven days never counts.
//!
//! Pure: the application reads the rows ([`SalesSum`]) through its ports,
//! keeps these sums in memory and decides when to read what.

mod sums;

use std::time::Duration;

use time::OffsetDateTime;

use crate::menu::Menu;
use crate::order::PopularMenu;

pub use sums::{EdgeHour, SalesSum, SettledHours, Totals, add, ceil_second};

/// The ranking's window.
pub const WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// One hour, the statistics bucket's length.
pub const HOUR: Duration = Duration::from_secs(3600);

/// The start of the UTC hour containing `t`: its statistics bucket.
pub fn hour_of(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t - Duration::from_secs(u64::from(t.minute()) * 60 + u64::from(t.second()))
        - Duration::from_nanos(u64::from(t.nanosecond()))
}

/// The window's bounds for `now`: `(lo, first_full)`, its old edge and the
/// first whole hour after it.
pub fn window_bounds(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let lo = now - WINDOW;
    (lo, hour_of(lo) + HOUR)
}

/// The ranking of `menus` by `totals`: the menus with at least one cup, by
/// cups, then orders (both descending), then name (compared as bytes, UTF-8),
/// then id, ranked from 1. A menu sold but no longer on the menu is left out.
pub fn rank(menus: Vec<Menu>, totals: &Totals) -> Vec<PopularMenu> {
    let mut ranked: Vec<(Menu, i64, i64)> = menus
        .into_iter()
        .filter_map(|menu| {
            let &(quantity, order_count) = totals.get(&menu.id).filter(|(q, _)| *q > 0)?;
            Some((menu, quantity, order_count))
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(b.2.cmp(&a.2))
            .then_with(|| a.0.name.as_str().cmp(b.0.name.as_str()))
            .then(a.0.id.cmp(&b.0.id))
    });
    ranked
        .into_iter()
        .zip(1..)
        .map(|((menu, quantity, order_count), rank)| PopularMenu {
            rank,
            menu,
            quantity,
            order_count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::{MenuId, MenuName};
    use crate::points::Points;
    use time::macros::datetime;
    use uuid::Uuid;

    fn menu(n: u128, name: &str) -> Menu {
        Menu {
            id: MenuId::from_uuid(Uuid::from_u128(n)),
            name: MenuName::parse(name).expect("name"),
            price: Points::new(1000).expect("price"),
        }
    }

    #[test]
    fn buckets_are_utc_hours() {
        assert_eq!(
            hour_of(datetime!(2026-11-29 10:59:59.999999 UTC)),
            datetime!(2026-11-29 10:00 UTC)
        );
        assert_eq!(
            hour_of(datetime!(2026-11-29 10:00 UTC)),
            datetime!(2026-11-29 10:00 UTC)
        );
        assert_eq!(
            hour_of(datetime!(2026-11-29 19:30:00 +09:30)),
            datetime!(2026-11-29 10:00 UTC)
        );
    }

    #[test]
    fn the_window_starts_seven_days_back_and_its_first_whole_hour_follows() {
        let (lo, first_full) = window_bounds(datetime!(2026-11-29 10:17:23.5 UTC));
        assert_eq!(lo, datetime!(2026-11-22 10:17:23.5 UTC));
        assert_eq!(first_full, datetime!(2026-11-22 11:00 UTC));
        // On the hour, the hour starting at the edge is whole but not after it.
        let (lo, first_full) = window_bounds(datetime!(2026-11-29 10:00 UTC));
        assert_eq!(
            (lo, first_full),
            (datetime!(2026-11-22 10:00 UTC), datetime!(2026-11-22 11:00 UTC))
        );
    }

    #[test]
    fn cups_then_orders_then_name_by_bytes_then_id() {
        let menus = vec![
            menu(1, "Latte"),
            menu(2, "Americano"),
            menu(3, "americano"),
            menu(4, "Mocha"),
            menu(5, "Unsold"),
            menu(6, "Espresso"),
        ];
        let id = |n| MenuId::from_uuid(Uuid::from_u128(n));
        let totals = Totals::from([
            (id(1), (10, 3)),
            (id(2), (10, 5)),
            (id(3), (10, 5)),
            (id(4), (12, 1)),
            (id(6), (0, 0)),
            // Sold, but no longer on the menu.
            (id(9), (99, 99)),
        ]);
        let ranked = rank(menus, &totals);
        let order: Vec<_> = ranked.iter().map(|r| (r.rank, r.menu.name.as_str())).collect();
        assert_eq!(order, [(1, "Mocha"), (2, "Americano"), (3, "americano"), (4, "Latte")]);
        assert_eq!((ranked[3].quantity, ranked[3].order_count), (10, 3));
    }

    #[test]
    fn equal_names_fall_back_to_the_id() {
        // Names are unique in the store; the id keeps the order total anyway.
        let totals = Totals::from([
            (MenuId::from_uuid(Uuid::from_u128(2)), (1, 1)),
            (MenuId::from_uuid(Uuid::from_u128(1)), (1, 1)),
        ]);
        let ranked = rank(vec![menu(2, "Same"), menu(1, "Same")], &totals);
        assert_eq!(ranked[0].menu.id, MenuId::from_uuid(Uuid::from_u128(1)));
    }
}
