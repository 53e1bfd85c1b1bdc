//! The OpenAPI 3.1 document, generated from the handlers' annotations, served
//! at `GET /openapi.json` with an interactive page at `GET /docs`.

use std::collections::BTreeMap;

use utoipa::openapi::content::Content;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi, ToResponse, ToSchema};

use crate::problem::{FieldError, PROBLEM_JSON, ProblemCode};

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
    /// A stable code, one of [`ProblemCode::ALL`].
    #[schema(schema_with = problem_codes)]
    code: String,
    /// Present on VALIDATION_FAILED: each invalid field.
    errors: Option<Vec<FieldError>>,
}

/// The `code` of a problem: the list comes from [`ProblemCode::ALL`], so a
/// new code is documented by adding it there.
fn problem_codes() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("A stable, machine-readable code"))
        .enum_values(Some(ProblemCode::ALL.iter().map(|code| code.as_str())))
        .examples([ProblemCode::ValidationFailed.as_str()])
        .build()
}

/// A problem+json response described once in `components/responses` and
/// referred to by the operations that answer it.
fn problem_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, Content::new(Some(Ref::from_schema_name("Problem"))))
        .build()
        .into()
}

/// Declares the problem responses many operations share. An operation refers
/// to one as `(status = 401, response = crate::openapi::Unauthorized)`; a
/// response specific to one operation stays inline in its handler.
macro_rules! shared_problems {
    ($($name:ident => $description:literal),+ $(,)?) => {
        $(
            #[doc = $description]
            #[derive(Debug)]
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), problem_response($description))
                }
            }
        )+

        /// Registers the shared responses in `components/responses`.
        #[derive(Debug)]
        struct SharedProblems;

        impl Modify for SharedProblems {
            fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
                let components = openapi.components.get_or_insert_with(Default::default);
                $(components.responses.insert(stringify!($name).to_owned(), $name::response().1);)+
            }
        }
    };
}

shared_problems! {
    BadRequest => "Invalid input: VALIDATION_FAILED (with `errors`) or MALFORMED_REQUEST; \
                   IDEMPOTENCY_KEY_MISSING where the operation takes an `Idempotency-Key`",
    Unauthorized => "Missing, invalid, expired or revoked token: UNAUTHORIZED or TOKEN_EXPIRED",
    RequestTimeout => "The body did not arrive within HTTP_REQUEST_TIMEOUT_MS: REQUEST_TIMEOUT",
    PayloadTooLarge => "Body over 16 KiB: PAYLOAD_TOO_LARGE",
    UnsupportedMediaType => "Not JSON: UNSUPPORTED_MEDIA_TYPE",
    NotYourAccount => "FORBIDDEN: the path names another user's account",
    Internal => "Unexpected failure: INTERNAL",
    DependencyUnavailable => "A dependency is unavailable: DEPENDENCY_UNAVAILABLE",
}

/// Declares groups of shared responses an operation lists by one name in its
/// `responses(...)`, each a `$ref` to a response of [`shared_problems!`].
macro_rules! problem_groups {
    ($($(#[$doc:meta])* $group:ident => [$($status:literal => $name:ident),+ $(,)?]),+ $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Debug)]
            pub struct $group;

            impl IntoResponses for $group {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    BTreeMap::from([$(
                        ($status.to_string(), RefOr::Ref(Ref::from_response_name(stringify!($name)))),
                    )+])
                }
            }
        )+
    };
}

problem_groups! {
    /// What any operation that reads a JSON body may answer before it runs.
    JsonBodyProblems => [
        400 => BadRequest,
        408 => RequestTimeout,
        413 => PayloadTooLarge,
        415 => UnsupportedMediaType,
    ],
    /// What any operation that uses PostgreSQL or Redis may answer.
    ServerProblems => [500 => Internal, 503 => DependencyUnavailable],
}

/// `GET /health/live`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct LiveResponse {
    #[schema(example = "up")]
    status: String,
}

/// `GET /health/ready`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ReadyResponse {
    /// `ready` when every dependency answers, `degraded` when one does not
    /// (the instance still serves what it can, and `503` for the rest).
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
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth, &SharedProblems),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "menus", description = "The menu and its popularity"),
        (name = "points", description = "Charging points and the ledger"),
        (name = "orders", description = "Ordering coffee"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;
