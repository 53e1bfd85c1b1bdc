//! Popular-menu sums that can no longer change, held in memory so that a
//! request adds them up in time bounded by menus and buckets, never by orders.
//!
//! [`SettledHours`]: whole hours whose buckets are final, as per-menu prefix
//! sums, so the tail of the range a request needs is one subtraction per menu.
//! [`EdgeHour`]: the hour at the window's old edge as per-second sums with the
//! sums of every later second, so the lower edge is one binary search.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::HOUR;
use crate::menu::MenuId;

/// Per-menu (cups, orders).
pub type Totals = HashMap<MenuId, (i64, i64)>;

/// Adds `(quantity, order_count)` to `menu`'s entry of `totals`.
pub fn add(totals: &mut Totals, menu: MenuId, quantity: i64, order_count: i64) {
    let entry = totals.entry(menu).or_default();
    entry.0 += quantity;
    entry.1 += order_count;
}

/// One menu's sales in one hour (or one second, for [`EdgeHour::new`]):
/// cups, and orders that contained the menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalesSum {
    pub at: OffsetDateTime,
    pub menu: MenuId,
    pub quantity: i64,
    pub order_count: i64,
}

/// Whole hours `[from, to)`: per menu, the sums over `[from, from + k hours)`
/// for every `k` from 0 to the number of hours.
#[derive(Debug, Clone)]
pub struct SettledHours {
    from: OffsetDateTime,
    hours: usize,
    prefix: HashMap<MenuId, Vec<(i64, i64)>>,
}

impl SettledHours {
    /// No hour yet, starting at the whole hour `from`.
    pub fn starting(from: OffsetDateTime) -> Self {
        Self {
            from,
            hours: 0,
            prefix: HashMap::new(),
        }
    }

    pub fn from(&self) -> OffsetDateTime {
        self.from
    }

    pub fn to(&self) -> OffsetDateTime {
        self.hour(self.hours)
    }

    fn hour(&self, k: usize) -> OffsetDateTime {
        self.from + HOUR * u32::try_from(k).unwrap_or(u32::MAX)
    }

    /// The index of the whole hour `at` (`None` outside `[from, to]`).
    fn index(&self, at: OffsetDateTime) -> Option<usize> {
        let k = usize::try_from((at - self.from).whole_seconds() / 3600).ok()?;
        (k <= self.hours && self.hour(k) == at).then_some(k)
    }

    /// These hours and `[to, until)`, whose buckets are `sums` (each `at`
    /// in that range; others are ignored).
    pub fn extended(&self, until: OffsetDateTime, sums: &[SalesSum]) -> Self {
        let added = usize::try_from((until - self.to()).whole_seconds().max(0) / 3600).unwrap_or_default();
        let hours = self.hours + added;
        let mut deltas: HashMap<MenuId, Vec<(i64, i64)>> = HashMap::new();
        for sum in sums {
            let offset = (sum.at - self.to()).whole_seconds();
            let Some(k) = usize::try_from(offset).ok().map(|s| s / 3600).filter(|k| *k < added) else {
                continue;
            };
            let delta = &mut deltas.entry(sum.menu).or_insert_with(|| vec![(0, 0); added])[k];
            delta.0 += sum.quantity;
            delta.1 += sum.order_count;
        }
        let mut prefix = self.prefix.clone();
        for column in prefix.values_mut() {
            let last = column.last().copied().unwrap_or_default();
            column.resize(hours + 1, last);
        }
        for (menu, delta) in deltas {
            let column = prefix.entry(menu).or_insert_with(|| vec![(0, 0); hours + 1]);
            let mut running = column[self.hours];
            for (k, (quantity, order_count)) in delta.into_iter().enumerate() {
                running.0 += quantity;
                running.1 += order_count;
                column[self.hours + k + 1] = running;
            }
        }
        Self {
            from: self.from,
            hours,
            prefix,
        }
    }

    /// These hours from `from` on (all of them when `from` is earlier).
    pub fn trimmed(&self, from: OffsetDateTime) -> Self {
        let k = if from <= self.from {
            0
        } else {
            self.index(from).unwrap_or(self.hours)
        };
        Self {
            from: self.hour(k),
            hours: self.hours - k,
            prefix: self
                .prefix
                .iter()
                .map(|(menu, column)| (*menu, column[k..].to_vec()))
                .collect(),
        }
    }

    /// Adds the sums of `[since, to)` to `totals`; `false` (and nothing
    /// added) when `since` is not a whole hour in `[from, to]`.
    pub fn add_since(&self, since: OffsetDateTime, totals: &mut Totals) -> bool {
        let Some(k) = self.index(since) else {
            return false;
        };
        for (menu, column) in &self.prefix {
            let (quantity, order_count) = (column[self.hours].0 - column[k].0, column[self.hours].1 - column[k].1);
            if quantity != 0 || order_count != 0 {
                add(totals, *menu, quantity, order_count);
            }
        }
        true
    }
}

/// The order items of one hour, by the whole second each was created in,
/// rounded up (an item of `10:00:00.2` is in second `10:00:01`): the distinct
/// seconds in order and, for each, per menu the sums of that second and every
/// later one.
#[derive(Debug)]
pub struct EdgeHour {
    /// Unix seconds, ascending.
    seconds: Vec<i64>,
    menus: Vec<MenuId>,
    /// `after[i * menus.len() + m]`: menu `m`'s sums from `seconds[i]` on.
    after: Vec<(i64, i64)>,
}

/// `t` rounded up to a whole Unix second.
pub fn ceil_second(t: OffsetDateTime) -> i64 {
    t.unix_timestamp() + i64::from(t.nanosecond() > 0)
}

impl EdgeHour {
    /// From per-second sums, each `at` a whole second (items rounded up).
    pub fn new(sums: &[SalesSum]) -> Self {
        let mut seconds: Vec<i64> = sums.iter().map(|s| s.at.unix_timestamp()).collect();
        seconds.sort_unstable();
        seconds.dedup();
        let mut menus: Vec<MenuId> = sums.iter().map(|s| s.menu).collect();
        menus.sort_unstable();
        menus.dedup();
        let width = menus.len();
        let mut after = vec![(0, 0); seconds.len() * width];
        for sum in sums {
            let (Ok(i), Ok(m)) = (
                seconds.binary_search(&sum.at.unix_timestamp()),
                menus.binary_search(&sum.menu),
            ) else {
                continue;
            };
            after[i * width + m].0 += sum.quantity;
            after[i * width + m].1 += sum.order_count;
        }
        for i in (0..seconds.len().saturating_sub(1)).rev() {
            for m in 0..width {
                let later = after[(i + 1) * width + m];
                after[i * width + m].0 += later.0;
                after[i * width + m].1 += later.1;
            }
        }
        Self { seconds, menus, after }
    }

    /// Adds the items created after `lo`, at one-second resolution: those
    /// whose rounded-up second is later than `lo` rounded up. Exactly the
    /// items after `lo` when `lo` is a whole second; otherwise the items in
    /// the rest of `lo`'s own second are left out, and never one before `lo`.
    pub fn add_after(&self, lo: OffsetDateTime, totals: &mut Totals) {
        let threshold = ceil_second(lo);
        let i = self.seconds.partition_point(|s| *s <= threshold);
        if i == self.seconds.len() {
            return;
        }
        let width = self.menus.len();
        for (menu, (quantity, order_count)) in self.menus.iter().zip(&self.after[i * width..(i + 1) * width]) {
            if *quantity != 0 || *order_count != 0 {
                add(totals, *menu, *quantity, *order_count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    use std::time::Duration;
    use uuid::Uuid;

    const A: MenuId = MenuId::from_uuid(Uuid::from_u128(1));
    const B: MenuId = MenuId::from_uuid(Uuid::from_u128(2));

    fn sum(at: OffsetDateTime, menu: MenuId, quantity: i64, order_count: i64) -> SalesSum {
        SalesSum {
            at,
            menu,
            quantity,
            order_count,
        }
    }

    fn totals(f: impl FnOnce(&mut Totals)) -> Totals {
        let mut totals = Totals::new();
        f(&mut totals);
        totals
    }

    #[test]
    fn settled_hours_sum_any_tail_and_survive_extending_and_trimming() {
        let h0 = datetime!(2026-11-20 10:00 UTC);
        let hours = SettledHours::starting(h0).extended(
            h0 + HOUR * 3,
            &[
                sum(h0, A, 5, 2),
                sum(h0 + HOUR, B, 1, 1),
                sum(h0 + HOUR * 2, A, 3, 1),
                // Outside the range: ignored.
                sum(h0 + HOUR * 3, A, 100, 100),
                sum(h0 - HOUR, A, 100, 100),
            ],
        );
        assert_eq!(hours.to(), h0 + HOUR * 3);
        assert_eq!(
            totals(|t| assert!(hours.add_since(h0, t))),
            Totals::from([(A, (8, 3)), (B, (1, 1))])
        );
        assert_eq!(
            totals(|t| assert!(hours.add_since(h0 + HOUR * 2, t))),
            Totals::from([(A, (3, 1))])
        );
        assert!(totals(|t| assert!(hours.add_since(h0 + HOUR * 3, t))).is_empty());
        assert!(!hours.add_since(h0 - HOUR, &mut Totals::new()), "before the range");
        assert!(!hours.add_since(h0 + HOUR * 4, &mut Totals::new()), "after the range");
        assert!(
            !hours.add_since(h0 + Duration::from_secs(60), &mut Totals::new()),
            "not a whole hour"
        );

        // A new menu in a new hour, then the oldest hour dropped.
        let c = MenuId::from_uuid(Uuid::from_u128(3));
        let later = hours
            .extended(
                h0 + HOUR * 5,
                &[sum(h0 + HOUR * 4, c, 7, 7), sum(h0 + HOUR * 3, A, 1, 1)],
            )
            .trimmed(h0 + HOUR);
        assert_eq!((later.from(), later.to()), (h0 + HOUR, h0 + HOUR * 5));
        assert_eq!(
            totals(|t| assert!(later.add_since(h0 + HOUR, t))),
            Totals::from([(A, (4, 2)), (B, (1, 1)), (c, (7, 7))])
        );
        assert_eq!(
            totals(|t| assert!(later.add_since(h0 + HOUR * 4, t))),
            Totals::from([(c, (7, 7))])
        );
    }

    #[test]
    fn the_edge_hour_counts_from_the_second_after_the_edge() {
        let h = datetime!(2026-11-20 10:00 UTC);
        let s = |secs: u64| h + Duration::from_secs(secs);
        let edge = EdgeHour::new(&[
            sum(s(1), A, 1, 1),
            sum(s(1), B, 2, 1),
            sum(s(60), A, 3, 2),
            sum(s(3600), B, 4, 4),
        ]);
        let all = Totals::from([(A, (4, 3)), (B, (6, 5))]);
        assert_eq!(totals(|t| edge.add_after(h, t)), all);
        // Second 1 holds the items of (h, h + 1 s]: a whole-second edge is exact.
        assert_eq!(
            totals(|t| edge.add_after(s(1), t)),
            Totals::from([(A, (3, 2)), (B, (4, 4))])
        );
        // An edge inside a second leaves out the rest of that second.
        assert_eq!(
            totals(|t| edge.add_after(s(0) + Duration::from_millis(300), t)),
            Totals::from([(A, (3, 2)), (B, (4, 4))])
        );
        assert_eq!(
            totals(|t| edge.add_after(s(59), t)),
            totals(|t| edge.add_after(s(2), t))
        );
        assert_eq!(totals(|t| edge.add_after(s(3599), t)), Totals::from([(B, (4, 4))]));
        assert!(totals(|t| edge.add_after(s(3600), t)).is_empty());
        assert!(totals(|t| EdgeHour::new(&[]).add_after(h, t)).is_empty());
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_second(datetime!(1970-01-01 00:00:10 UTC)), 10);
        assert_eq!(ceil_second(datetime!(1970-01-01 00:00:10.000001 UTC)), 11);
        assert_eq!(ceil_second(datetime!(1970-01-01 00:00:10.999999 UTC)), 11);
    }
}
