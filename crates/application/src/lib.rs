//! Use cases of the coffee order service.
//!
//! One use case per module: a struct that holds the ports it needs, one
//! `execute` method, and one error enum whose variants are the business
//! outcomes plus the infrastructure failure. Use cases are written only against
//! `coffee-ports`, so every branch is unit-tested with mockall fakes.
//!
//! Besides the use cases, what sits in front of a port and is not about a
//! technology: the popular-menu ranking ([`PopularRanking`], over the rows
//! of [`coffee_ports::SalesStatistics`]), the short-lived menu cache
//! ([`CachedMenus`]), and the shared reads both use ([`Coalesced`]).

pub mod authenticate;
pub mod cached_menus;
pub mod charge_points;
pub mod check_readiness;
pub mod coalesce;
pub mod fingerprint;
pub mod get_me;
pub mod list_menus;
pub mod log_in;
pub mod log_out;
pub mod order_queries;
pub mod outbox_admin;
pub mod place_order;
pub mod point_queries;
pub mod popular_menus;
pub mod popular_ranking;
pub mod purge_idempotency_keys;
pub mod refresh_tokens;
pub mod relay_outbox;
pub mod sign_up;
pub mod token_issuer;

#[cfg(test)]
mod test_support;

pub use authenticate::{Authenticate, AuthenticateError};
pub use cached_menus::CachedMenus;
pub use charge_points::{ChargeCommand, ChargeError, ChargePoints};
pub use check_readiness::{CheckReadiness, DependencyStatus, ReadinessReport};
pub use coalesce::Coalesced;
pub use get_me::{GetMe, GetMeError};
pub use list_menus::{ListMenus, ListMenusError};
pub use log_in::{LogIn, LogInCommand, LogInError, LogInPorts};
pub use log_out::{LogOut, LogOutError};
pub use order_queries::{GetOrder, ListOrders, OrderQueryError};
pub use outbox_admin::OutboxAdmin;
pub use place_order::{PlaceOrder, PlaceOrderCommand, PlaceOrderError};
pub use point_queries::{GetBalance, ListPointTransactions, PointQueryError};
pub use popular_menus::{CompactSalesStatistics, GetPopularMenus, MIN_STATISTICS_RETENTION, POPULAR_LIMIT};
pub use popular_ranking::{PopularRanking, Prepared, SETTLE};
pub use purge_idempotency_keys::PurgeIdempotencyKeys;
pub use refresh_tokens::{RefreshError, RefreshTokens};
pub use relay_outbox::{RelayCounters, RelayOutbox, RelaySettings};
pub use sign_up::{SignUp, SignUpCommand, SignUpError};
pub use token_issuer::TokenIssuer;
