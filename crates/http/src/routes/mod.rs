//! Route handlers, one module per resource. Handlers only translate between
//! HTTP and use cases: they never touch a database.
//!
//! DTOs follow one naming rule, checked by a test on the API document: what
//! a request body is read into is named `…Request` (`ChargeRequest`,
//! `OrderItemRequest`), what a response body is written from is named
//! `…Response` (`ChargeResponse`, `OrderPageResponse`), parts included. The
//! only other schemas are the shared `Problem` and its `FieldError`.

pub mod auth;
pub mod health;
pub mod menus;
pub mod metrics;
pub mod orders;
pub mod points;
