//! `?limit&cursor` for keyset-paginated lists; the cursor is opaque to
//! clients (base64url of the last item's timestamp and id).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffee_domain::{Cursor, PageSize};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::problem::{ApiError, FieldError};

/// The query string of a list route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 100 (default 20).
    #[param(value_type = Option<u16>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// Validates both parameters, reporting each bad one.
    pub fn parse(&self) -> Result<(PageSize, Option<Cursor>), ApiError> {
        let mut errors = Vec::new();
        let size = match &self.limit {
            None => Some(PageSize::DEFAULT),
            Some(raw) => {
                let size = raw.parse::<u16>().ok().and_then(PageSize::new);
                if size.is_none() {
                    errors.push(FieldError::new(
                        "limit",
                        format!("must be a whole number from 1 to {}", PageSize::MAX),
                    ));
                }
                size
            }
        };
        let cursor = match &self.cursor {
            None => None,
            Some(raw) => {
                let cursor = decode_cursor(raw);
                if cursor.is_none() {
                    errors.push(FieldError::new("cursor", "is not a cursor this API issued"));
                }
                cursor
            }
        };
        match size {
            Some(size) if errors.is_empty() => Ok((size, cursor)),
            _ => Err(ApiError::validation(errors)),
        }
    }
}

/// `base64url("<unix micros>.<uuid>")`.
pub fn encode_cursor(cursor: &Cursor) -> String {
    let micros = cursor.created_at.unix_timestamp_nanos() / 1_000;
    URL_SAFE_NO_PAD.encode(format!("{micros}.{}", cursor.id))
}

pub fn decode_cursor(raw: &str) -> Option<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (micros, id) = text.split_once('.')?;
    let micros: i128 = micros.parse().ok()?;
    Some(Cursor {
        created_at: OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1_000)?).ok()?,
        id: Uuid::parse_str(id).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cursors_round_trip_to_the_microsecond() {
        let cursor = Cursor {
            created_at: datetime!(2026-11-29 01:02:03.456789 UTC),
            id: Uuid::from_u128(77),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)), Some(cursor));
    }

    #[test]
    fn foreign_cursors_and_bad_limits_are_validation_errors() {
        for (limit, cursor) in [
            (Some("0"), None),
            (Some("101"), None),
            (Some("ten"), None),
            (None, Some("garbage")),
        ] {
            let query = PageQuery {
                limit: limit.map(str::to_owned),
                cursor: cursor.map(str::to_owned),
            };
            assert!(query.parse().is_err(), "{limit:?} {cursor:?}");
        }
        let ok = PageQuery {
            limit: None,
            cursor: None,
        }
        .parse()
        .expect("defaults");
        assert_eq!(ok.0, PageSize::DEFAULT);
    }
}
