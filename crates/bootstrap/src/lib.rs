//! The `coffee` binary's library half: configuration, telemetry, wiring, and
//! the commands (`serve`, `migrate`).
//!
//! Everything that chooses an implementation lives here and nowhere else: this
//! crate builds the adapters from [`Config`], hands them to the use cases as
//! `Arc<dyn Port>`, and gives the use cases to the HTTP layer.

pub mod config;
pub mod server;
pub mod telemetry;

pub use config::{Config, OperatorConfig};
pub use server::Application;
