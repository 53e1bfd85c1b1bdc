//! Keyset pagination: newest first, with an opaque cursor.

use time::OffsetDateTime;
use uuid::Uuid;

/// Where the next page starts: strictly after (older than) this item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

/// How many items a page holds: 1 to 100, 20 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u16);

impl PageSize {
    pub const MAX: u16 = 100;
    pub const DEFAULT: PageSize = PageSize(20);

    pub fn new(size: u16) -> Option<Self> {
        (1..=Self::MAX).contains(&size).then_some(Self(size))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// One page of items and the cursor of the next, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_1_to_100() {
        assert_eq!(PageSize::new(0), None);
        assert_eq!(PageSize::new(1).map(PageSize::get), Some(1));
        assert_eq!(PageSize::new(100).map(PageSize::get), Some(100));
        assert_eq!(PageSize::new(101), None);
    }
}
