//! Timestamps as RFC 3339 in UTC with millisecond precision
//! (`2026-11-29T01:02:03.456Z`), as docs/API.md shows them.

use serde::Serializer;
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Formats `t` (converted to UTC).
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// `#[serde(serialize_with = "json_time::serialize")]`
pub fn serialize<S: Serializer>(t: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn utc_with_milliseconds() {
        assert_eq!(
            format(datetime!(2026-11-29 01:02:03.456789 UTC)),
            "2026-11-29T01:02:03.456Z"
        );
        assert_eq!(
            format(datetime!(2026-11-29 10:02:03 +09:00)),
            "2026-11-29T01:02:03.000Z"
        );
    }
}
