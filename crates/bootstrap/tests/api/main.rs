//! The whole application in-process (real PostgreSQL and Redis, port 0),
//! driven over HTTP with `reqwest`.

mod health;
mod helpers;
mod login_shedding;
mod menus;
mod metrics;
