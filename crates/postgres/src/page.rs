//! Keyset pagination, newest first, over a table's `(created_at, id)`: the
//! one way this adapter pages a history (orders, the points ledger).

use coffee_domain::{Cursor, Page, PageSize};

/// `$query` (boxed, over `$table`, which has `created_at` and `id`) from the
/// row after the cursor `$after` on, newest first, one row more than `$size`
/// so that [`page_of`] knows whether another page follows.
macro_rules! newest_first {
    ($query:expr, $table:ident, $size:expr, $after:expr) => {{
        let mut query = $query;
        if let Some(cursor) = $after {
            let cursor: coffee_domain::Cursor = cursor;
            query = query.filter(
                $table::created_at
                    .lt(cursor.created_at)
                    .or($table::created_at.eq(cursor.created_at).and($table::id.lt(cursor.id))),
            );
        }
        query
            .order(($table::created_at.desc(), $table::id.desc()))
            .limit(i64::from($size.get()) + 1)
    }};
}
pub(crate) use newest_first;

/// The page of `rows` read by [`newest_first`]: at most `size` of them, and
/// the cursor of the last one when more follow.
pub(crate) fn page_of<T>(mut rows: Vec<T>, size: PageSize, cursor: impl Fn(&T) -> Cursor) -> Page<T> {
    let size = usize::from(size.get());
    let more = rows.len() > size;
    rows.truncate(size);
    let next = if more { rows.last().map(cursor) } else { None };
    Page { items: rows, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn cursor(n: &u128) -> Cursor {
        Cursor {
            created_at: OffsetDateTime::UNIX_EPOCH,
            id: Uuid::from_u128(*n),
        }
    }

    #[test]
    fn a_page_ends_with_a_cursor_only_when_more_follow() {
        let size = PageSize::new(2).expect("size");
        let full = page_of(vec![3, 2, 1], size, cursor);
        assert_eq!(full.items, [3, 2]);
        assert_eq!(full.next, Some(cursor(&2)));
        let last = page_of(vec![2, 1], size, cursor);
        assert_eq!((last.items, last.next), (vec![2, 1], None));
        assert_eq!(page_of(Vec::<u128>::new(), size, cursor).next, None);
    }
}
