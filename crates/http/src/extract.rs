//! Extractors that answer bad input with problem+json.
//!
//! actix-web's own `web::Json` answers with plain text and cannot name the
//! field at fault, so JSON bodies go through [`ApiJson`]: content type, size
//! and syntax are checked here, and `serde_path_to_error` turns a type error
//! deep in the body into `items[0].quantity: invalid type ...`.

use actix_web::dev::Payload;
use actix_web::error::{PathError, QueryPayloadError};
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt as _;
use futures_util::future::LocalBoxFuture;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;

use crate::problem::{ApiError, FieldError, ProblemCode};
use crate::state::AppState;

/// The largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A JSON request body of type `T`, validated for content type, size and shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move {
            match body.await? {
                Some(bytes) => parse_json(&bytes).map(ApiJson),
                None => Err(ApiError::new(ProblemCode::MalformedRequest, "A JSON body is required")),
            }
        })
    }
}

/// A JSON body that may be absent altogether (no bytes, or `null`); when
/// present it is checked exactly like [`ApiJson`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload);
        Box::pin(async move {
            match body.await? {
                // `null` is the same as no body at all.
                Some(bytes) => parse_json::<Option<T>>(&bytes).map(OptionalJson),
                None => Ok(OptionalJson(None)),
            }
        })
    }
}

/// Reads the whole body within [`MAX_BODY_BYTES`]; `None` when there is no
/// body at all. A non-empty body must be declared as JSON.
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
) -> LocalBoxFuture<'static, Result<Option<web::Bytes>, ApiError>> {
    let content_type_ok = is_json_content_type(req);
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // Timed from now, right after the headers arrived: actix times no body.
    let deadline = req
        .app_data::<web::Data<AppState>>()
        .map(|state| tokio::time::Instant::now() + state.request_timeout);
    let mut payload = payload.take();
    Box::pin(async move {
        if declared_length.is_some_and(|len| len > MAX_BODY_BYTES) {
            return Err(too_large());
        }
        let mut body = web::BytesMut::new();
        loop {
            let next = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, payload.next())
                    .await
                    .map_err(|_| body_timed_out())?,
                None => payload.next().await,
            };
            let Some(chunk) = next else { break };
            let chunk = chunk
                .map_err(|_| ApiError::new(ProblemCode::MalformedRequest, "The request body could not be read"))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if body.is_empty() {
            return Ok(None);
        }
        if !content_type_ok {
            return Err(ApiError::new(
                ProblemCode::UnsupportedMediaType,
                "This route takes a JSON body: send Content-Type: application/json",
            ));
        }
        Ok(Some(body.freeze()))
    })
}

/// The body stalled: `408` (and the connection is closed, see
/// [`crate::middleware::RequestLifecycle`]).
fn body_timed_out() -> ApiError {
    ApiError::new(
        ProblemCode::RequestTimeout,
        "The request body did not arrive in time (HTTP_REQUEST_TIMEOUT_MS)",
    )
}

fn too_large() -> ApiError {
    ApiError::new(
        ProblemCode::PayloadTooLarge,
        format!("The request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// `application/json` or any `application/*+json`, with any parameters.
fn is_json_content_type(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserialises a body, telling syntax errors (`MALFORMED_REQUEST`) from
/// shape errors: missing, unknown or mistyped fields (`VALIDATION_FAILED`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut *deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::validation(vec![FieldError::new(field, without_position(&inner))])
            }
            _ => malformed(&inner),
        }
    })?;
    // `deserialize` stops at the end of the value; trailing bytes are an error too.
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::new(
        ProblemCode::MalformedRequest,
        format!("The body is not valid JSON: {}", without_position(error)),
    )
}

/// serde_json appends " at line L column C"; the field path says more.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    }
}

/// `web::Path` failures: a path segment of the wrong type (a non-UUID id).
pub fn path_error(error: PathError, _req: &HttpRequest) -> actix_web::Error {
    let message = match &error {
        PathError::Deserialize(e) => e.to_string(),
        _ => "invalid path parameter".to_owned(),
    };
    ApiError::validation(vec![FieldError::new("path", message)]).into()
}

/// `web::Query` failures: a missing or mistyped query parameter.
pub fn query_error(error: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let message = match &error {
        QueryPayloadError::Deserialize(e) => e.to_string(),
        _ => "invalid query string".to_owned(),
    };
    ApiError::validation(vec![FieldError::new("query", message)]).into()
}

/// `#[serde(deserialize_with = "whole_number")]`: a JSON number with an
/// integral value (`28` or `28.0`, which JSON Schema also calls an integer),
/// refusing fractions (`1.5`), strings and `null`.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    use serde::de::Error as _;
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_i64() {
        return Ok(n);
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(D::Error::custom(format!("expected a whole number, got {number}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Item {
        menu_id: String,
        quantity: u32,
    }

    fn error_of(body: &str) -> ApiError {
        parse_json::<Order>(body.as_bytes()).expect_err("must be rejected")
    }

    #[test]
    fn broken_json_is_malformed() {
        assert_eq!(error_of("{\"items\": [").code(), ProblemCode::MalformedRequest);
        assert_eq!(error_of("").code(), ProblemCode::MalformedRequest);
        assert_eq!(error_of(r#"{"items": []} {}"#).code(), ProblemCode::MalformedRequest);
    }

    #[test]
    fn a_mistyped_field_is_named_by_its_path() {
        let error = error_of(r#"{"items": [{"menuId": "m", "quantity": 1.5}]}"#);
        assert_eq!(error.code(), ProblemCode::ValidationFailed);
        assert_eq!(error.body()["errors"][0]["field"], "items[0].quantity");
    }

    #[test]
    fn unknown_and_missing_fields_fail_validation() {
        assert_eq!(
            error_of(r#"{"items": [], "extra": 1}"#).code(),
            ProblemCode::ValidationFailed
        );
        assert_eq!(error_of(r#"{}"#).code(), ProblemCode::ValidationFailed);
    }

    #[derive(Debug, Deserialize)]
    struct Amount {
        #[serde(deserialize_with = "whole_number")]
        #[allow(dead_code)]
        amount: i64,
    }

    #[test]
    fn whole_numbers_may_be_written_as_integral_floats_but_fractions_strings_and_null_are_refused() {
        assert_eq!(
            parse_json::<Amount>(br#"{"amount": 28.0}"#).map(|a| a.amount).ok(),
            Some(28)
        );
        assert_eq!(
            parse_json::<Amount>(br#"{"amount": 1e3}"#).map(|a| a.amount).ok(),
            Some(1000)
        );
        for bad in [
            r#"{"amount": 1.5}"#,
            r#"{"amount": "100"}"#,
            r#"{"amount": null}"#,
            r#"{"amount": 1e300}"#,
        ] {
            let error = parse_json::<Amount>(bad.as_bytes()).expect_err(bad);
            assert_eq!(error.code(), ProblemCode::ValidationFailed, "{bad}");
            assert_eq!(error.body()["errors"][0]["field"], "amount", "{bad}");
        }
    }

    #[test]
    fn messages_carry_no_line_and_column() {
        let error = error_of(r#"{"items": 3}"#);
        assert!(!error.detail().contains("line"), "{}", error.detail());
    }
}
