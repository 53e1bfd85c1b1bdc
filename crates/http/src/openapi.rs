//! The OpenAPI 3.1 document, generated from the handlers' annotations, served
//! at `GET /openapi.json` with an interactive page at `GET /docs`.

use std::collections::BTreeMap;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::problem::FieldError;
use crate::routes::{auth, health, menus, orders, points};

/// An RFC 9457 problem (`application/problem+json`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `urn:coffee:problem:<code in kebab case>`.
    #[schema(example = "urn:coffee:problem:validation-failed")]
    r#type: String,
    title: String,
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    detail: String,
    /// A stable code: VALIDATION_FAILED, MALFORMED_REQUEST, IDEMPOTENCY_KEY_MISSING, UNAUTHORIZED,
    /// INVALID_CREDENTIALS, TOKEN_EXPIRED, REFRESH_TOKEN_REUSED, FORBIDDEN, NOT_FOUND, MENU_NOT_FOUND,
    /// METHOD_NOT_ALLOWED, EMAIL_TAKEN, INSUFFICIENT_POINTS, IDEMPOTENCY_KEY_IN_USE, PAYLOAD_TOO_LARGE,
    /// UNSUPPORTED_MEDIA_TYPE, IDEMPOTENCY_KEY_REUSED, BALANCE_LIMIT_EXCEEDED, TOO_MANY_ATTEMPTS, INTERNAL,
    /// DEPENDENCY_UNAVAILABLE.
    #[schema(pattern = "^[A-Z_]+$", example = "VALIDATION_FAILED")]
    code: String,
    /// Present on VALIDATION_FAILED: each invalid field.
    errors: Option<Vec<FieldError>>,
}

/// `GET /health/live`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct Live {
    #[schema(example = "up")]
    status: String,
}

/// `GET /health/ready`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct Ready {
    #[schema(example = "ready")]
    status: String,
    /// `database` and `cache`: `up` or `down`.
    dependencies: BTreeMap<String, String>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Coffee Order API",
        description = "Sign up, charge points, order coffee paid with points, and see the most popular menus. \
                       Errors are RFC 9457 problems with a stable `code`; money-moving requests take an \
                       `Idempotency-Key`.",
        version = env!("CARGO_PKG_VERSION")
    ),
    paths(
        auth::sign_up, auth::log_in, auth::log_out, auth::me, auth::refresh,
        menus::list_menus, menus::popular,
        points::charge, points::balance, points::transactions,
        orders::place, orders::list, orders::get,
        health::live, health::ready, crate::metrics::render,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "menus", description = "The menu and its popularity"),
        (name = "points", description = "Charging points and the ledger"),
        (name = "orders", description = "Ordering coffee"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;
