//! The `Idempotency-Key` header and the `Idempotent-Replayed` marker.

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use coffee_domain::{IdempotencyKey, Idempotent};
use coffee_ports::IdempotencyConflict;
use std::future::{Ready, ready};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::problem::{ApiError, FieldError, ProblemCode};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The one answer to a key conflict, whichever idempotent operation met it.
impl From<IdempotencyConflict> for ApiError {
    fn from(conflict: IdempotencyConflict) -> Self {
        match conflict {
            IdempotencyConflict::KeyReused => ApiError::new(
                ProblemCode::IdempotencyKeyReused,
                "This Idempotency-Key was already used with a different request body",
            ),
            IdempotencyConflict::KeyInUse => ApiError::new(
                ProblemCode::IdempotencyKeyInUse,
                "A request with this Idempotency-Key is still being processed; retry shortly",
            ),
        }
    }
}

/// A required, valid `Idempotency-Key` header: missing is
/// `400 IDEMPOTENCY_KEY_MISSING`, malformed `400 VALIDATION_FAILED`.
#[derive(Debug, Clone)]
pub struct IdempotencyKeyHeader(pub IdempotencyKey);

impl FromRequest for IdempotencyKeyHeader {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(parse(req))
    }
}

/// Documents the header once for every operation that takes it:
/// `params(IdempotencyKeyHeader)` in a handler's `#[utoipa::path]`.
impl utoipa::IntoParams for IdempotencyKeyHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(IdempotencyKey::MAX_LEN))
            .pattern(Some("^[ -~]+$"));
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some(
                    "Unique per intended operation; 1 to 255 printable ASCII characters. \
                     Same key and body replays the first response.",
                ))
                .schema(Some(schema))
                .build(),
        ]
    }
}

fn parse(req: &HttpRequest) -> Result<IdempotencyKeyHeader, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Err(ApiError::new(
            ProblemCode::IdempotencyKeyMissing,
            "This request changes money: send an Idempotency-Key header (a unique value per intended operation)",
        ));
    };
    let invalid = |message: String| ApiError::validation(vec![FieldError::new("header:Idempotency-Key", message)]);
    let raw = value
        .to_str()
        .map_err(|_| invalid("an idempotency key is printable ASCII only".to_owned()))?;
    IdempotencyKey::parse(raw)
        .map(IdempotencyKeyHeader)
        .map_err(|e| invalid(e.to_string()))
}

/// Marks a replayed business rejection with `Idempotent-Replayed: true`.
pub fn mark_replayed_problem<T>(outcome: &Idempotent<T>, problem: ApiError) -> ApiError {
    if outcome.is_replayed() {
        problem.with_header(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"))
    } else {
        problem
    }
}

/// Marks a replayed response with `Idempotent-Replayed: true`.
pub fn mark_replayed<T>(outcome: &Idempotent<T>, response: &mut HttpResponse) {
    if outcome.is_replayed() {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_missing_key_has_its_own_code() {
        let req = TestRequest::default().to_http_request();
        assert_eq!(
            parse(&req).map_err(|e| e.code()).err(),
            Some(ProblemCode::IdempotencyKeyMissing)
        );
    }

    #[test]
    fn a_long_or_non_ascii_key_fails_validation() {
        let long = HeaderValue::from_str(&"k".repeat(256)).expect("ascii");
        let non_ascii = HeaderValue::from_bytes(b"key\xe9").expect("obs-text is a legal header byte");
        for value in [long, non_ascii] {
            let req = TestRequest::default()
                .insert_header(("Idempotency-Key", value.clone()))
                .to_http_request();
            assert_eq!(
                parse(&req).map_err(|e| e.code()).err(),
                Some(ProblemCode::ValidationFailed),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_good_key_is_taken_as_is() {
        let req = TestRequest::default()
            .insert_header(("Idempotency-Key", "order-2026-11-29 #1"))
            .to_http_request();
        assert_eq!(
            parse(&req).map(|k| k.0.as_str().to_owned()).ok(),
            Some("order-2026-11-29 #1".to_owned())
        );
    }
}
