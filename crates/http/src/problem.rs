//! RFC 9457 problem details with the service's stable error codes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Map, Value};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A stable, machine-readable error code and its status (the table in
/// docs/API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemCode {
    ValidationFailed,
    MalformedRequest,
    IdempotencyKeyMissing,
    Unauthorized,
    InvalidCredentials,
    TokenExpired,
    RefreshTokenReused,
    Forbidden,
    NotFound,
    MenuNotFound,
    /// A method the path does not take (`405`, with `Allow`).
    MethodNotAllowed,
    /// A body that did not arrive in time (`HTTP_REQUEST_TIMEOUT_MS`).
    RequestTimeout,
    EmailTaken,
    InsufficientPoints,
    IdempotencyKeyInUse,
    PayloadTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    BalanceLimitExceeded,
    TooManyAttempts,
    Internal,
    DependencyUnavailable,
}

impl ProblemCode {
    pub const ALL: [ProblemCode; 22] = [
        Self::ValidationFailed,
        Self::MalformedRequest,
        Self::IdempotencyKeyMissing,
        Self::Unauthorized,
        Self::InvalidCredentials,
        Self::TokenExpired,
        Self::RefreshTokenReused,
        Self::Forbidden,
        Self::NotFound,
        Self::MenuNotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::EmailTaken,
        Self::InsufficientPoints,
        Self::IdempotencyKeyInUse,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::IdempotencyKeyReused,
        Self::BalanceLimitExceeded,
        Self::TooManyAttempts,
        Self::Internal,
        Self::DependencyUnavailable,
    ];

    /// (code, status, title)
    const fn parts(self) -> (&'static str, u16, &'static str) {
        match self {
            Self::ValidationFailed => ("VALIDATION_FAILED", 400, "The request is not valid"),
            Self::MalformedRequest => ("MALFORMED_REQUEST", 400, "The request body could not be read"),
            Self::IdempotencyKeyMissing => ("IDEMPOTENCY_KEY_MISSING", 400, "An Idempotency-Key header is required"),
            Self::Unauthorized => ("UNAUTHORIZED", 401, "Authentication is required"),
            Self::InvalidCredentials => ("INVALID_CREDENTIALS", 401, "Invalid email or password"),
            Self::TokenExpired => ("TOKEN_EXPIRED", 401, "The token has expired"),
            Self::RefreshTokenReused => ("REFRESH_TOKEN_REUSED", 401, "The refresh token was already used"),
            Self::Forbidden => ("FORBIDDEN", 403, "Access to this resource is forbidden"),
            Self::NotFound => ("NOT_FOUND", 404, "The resource was not found"),
            Self::MenuNotFound => ("MENU_NOT_FOUND", 404, "The menu was not found"),
            Self::MethodNotAllowed => ("METHOD_NOT_ALLOWED", 405, "The method is not allowed on this resource"),
            Self::RequestTimeout => ("REQUEST_TIMEOUT", 408, "The request took too long to arrive"),
            Self::EmailTaken => ("EMAIL_TAKEN", 409, "The email is already registered"),
            Self::InsufficientPoints => ("INSUFFICIENT_POINTS", 409, "Not enough points"),
            Self::IdempotencyKeyInUse => (
                "IDEMPOTENCY_KEY_IN_USE",
                409,
                "A request with this Idempotency-Key is in progress",
            ),
            Self::PayloadTooLarge => ("PAYLOAD_TOO_LARGE", 413, "The request body is too large"),
            Self::UnsupportedMediaType => ("UNSUPPORTED_MEDIA_TYPE", 415, "The content type is not supported"),
            Self::IdempotencyKeyReused => (
                "IDEMPOTENCY_KEY_REUSED",
                422,
                "The Idempotency-Key was used with a different request",
            ),
            Self::BalanceLimitExceeded => ("BALANCE_LIMIT_EXCEEDED", 422, "The balance limit would be exceeded"),
            Self::TooManyAttempts => ("TOO_MANY_ATTEMPTS", 429, "Too many attempts"),
            Self::Internal => ("INTERNAL", 500, "Internal server error"),
            Self::DependencyUnavailable => ("DEPENDENCY_UNAVAILABLE", 503, "A dependency is unavailable"),
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.parts().0
    }

    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.parts().1).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub const fn title(self) -> &'static str {
        self.parts().2
    }

    /// The problem `type` URI: `urn:coffee:problem:<kebab-case code>`.
    pub fn type_uri(self) -> String {
        format!(
            "urn:coffee:problem:{}",
            self.as_str().to_ascii_lowercase().replace('_', "-")
        )
    }
}

/// One invalid field of a `VALIDATION_FAILED` problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field in the request: `items[0].quantity`, `header:Idempotency-Key`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error answered as a problem+json body.
///
/// The `detail` is written for clients: it never carries internal messages,
/// SQL or secrets. Unexpected failures are logged where they are converted
/// (see [`ApiError::internal`]) and leave as an opaque `500 INTERNAL`.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ProblemCode,
    detail: String,
    errors: Vec<FieldError>,
    extensions: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            extensions: Map::new(),
            headers: Vec::new(),
        }
    }

    /// `400 VALIDATION_FAILED` listing the invalid fields.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        Self {
            errors,
            ..Self::new(ProblemCode::ValidationFailed, detail)
        }
    }

    /// `500 INTERNAL`, after logging the whole cause chain of `error`.
    pub fn internal(error: &anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "unexpected error");
        Self::new(ProblemCode::Internal, "An unexpected error occurred")
    }

    /// `503 DEPENDENCY_UNAVAILABLE` for a dependency that did not answer.
    pub fn unavailable(dependency: &str) -> Self {
        Self::new(
            ProblemCode::DependencyUnavailable,
            format!("The {dependency} is temporarily unavailable; retry later"),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// Adds a member to the problem body (`"balance": 1200`).
    pub fn with_extension(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn code(&self) -> ProblemCode {
        self.code
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The JSON body, as sent.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), self.code.type_uri().into());
        body.insert("title".into(), self.code.title().into());
        body.insert("status".into(), self.code.status().as_u16().into());
        body.insert("detail".into(), self.detail.clone().into());
        body.insert("code".into(), self.code.as_str().into());
        if !self.errors.is_empty() {
            body.insert(
                "errors".into(),
                serde_json::to_value(&self.errors).unwrap_or(Value::Null),
            );
        }
        for (name, value) in &self.extensions {
            body.entry(name.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if self.status_code() == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        response.body(self.body().to_string())
    }
}

impl From<coffee_ports::InfraError> for ApiError {
    fn from(error: coffee_ports::InfraError) -> Self {
        match error {
            coffee_ports::InfraError::Unavailable { dependency, source } => {
                tracing::warn!(dependency, error = format!("{source:#}"), "dependency unavailable");
                Self::unavailable(dependency)
            }
            coffee_ports::InfraError::Unexpected(source) => Self::internal(&source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_upper_snake_case_and_has_an_error_status() {
        for code in ProblemCode::ALL {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{s}");
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{s}"
            );
        }
    }

    #[test]
    fn the_body_has_the_rfc_9457_members_and_the_code() {
        let body = ApiError::new(ProblemCode::MenuNotFound, "no such menu").body();
        assert_eq!(body["type"], "urn:coffee:problem:menu-not-found");
        assert_eq!(body["title"], "The menu was not found");
        assert_eq!(body["status"], 404);
        assert_eq!(body["detail"], "no such menu");
        assert_eq!(body["code"], "MENU_NOT_FOUND");
        assert!(body.get("errors").is_none());
    }

    #[test]
    fn extensions_never_overwrite_the_standard_members() {
        let body = ApiError::new(ProblemCode::InsufficientPoints, "short")
            .with_extension("status", 200)
            .with_extension("balance", 100)
            .body();
        assert_eq!(body["status"], 409);
        assert_eq!(body["balance"], 100);
    }

    #[test]
    fn unauthorized_responses_challenge_for_a_bearer_token() {
        let response = ApiError::new(ProblemCode::Unauthorized, "no token").error_response();
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(PROBLEM_JSON.as_bytes())
        );
    }
}
