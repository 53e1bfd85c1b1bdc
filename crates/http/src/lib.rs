//! Inbound HTTP adapter: the actix-web application.
//!
//! - [`build_app`] assembles routes, extractors and middleware; the same
//!   function serves production (`coffee serve`) and tests.
//! - [`problem`]: every failure leaves as RFC 9457 `application/problem+json`
//!   with a stable `code` (the table in docs/API.md), including the ones
//!   actix itself produces (unknown route, wrong method).
//! - [`extract`]: JSON, path and query extractors that turn bad input into
//!   `4xx` problems instead of actix's plain-text errors.
//! - [`middleware`]: request spans, the one log line per request, and
//!   [`request_id`]s on every response.

pub mod app;
pub mod auth;
pub mod client_addr;
mod cors;
pub mod drain;
pub mod extract;
pub mod graceful_stop;
pub mod idempotency;
pub mod json_time;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod pagination;
pub mod problem;
pub mod request_id;
pub mod routes;
pub mod serve;
pub mod state;
pub mod timed_io;
#[cfg(test)]
mod wakes;

pub use app::{ADMIN_PATHS, AppOptions, Listener, api_document, build_app, build_app_with, build_app_without_cors};
pub use client_addr::{ClientAddr, TrustedProxies};
pub use cors::is_origin as is_cors_origin;
pub use drain::Drain;
pub use pagination::CursorKey;
pub use problem::{ApiError, FieldError, ProblemCode};
pub use serve::{ServeSettings, WorkerStart, server};
pub use state::{AppState, Ports, StateSettings};
