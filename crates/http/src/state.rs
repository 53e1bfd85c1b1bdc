//! The state every route shares: the use cases ([`AppState`], wired once by
//! [`AppState::build`] from a bundle of [`Ports`]) and the settings and
//! handles beside them. Production (`bootstrap`) hands in the real adapters,
//! the HTTP tests mockall fakes; both go through [`AppState::build`].

use std::sync::Arc;
use std::time::Duration;

use coffee_application::{
    Authenticate, ChargePoints, CheckReadiness, GetBalance, GetMe, GetOrder, GetPopularMenus, ListMenus, ListOrders,
    ListPointTransactions, LogIn, LogInPorts, LogOut, PlaceOrder, PopularRanking, RefreshTokens, SignUp, TokenIssuer,
};
use coffee_domain::ChargeLimits;
use coffee_ports::{
    ClientThrottle, Clock, DependencyProbe, LoginThrottle, MenuRepository, OrderStore, PasswordHasher, PointStore,
    SalesStatistics, SessionStore, TokenCodec, UserRepository,
};

use crate::client_addr::TrustedProxies;
use crate::drain::Drain;
use crate::pagination::CursorKey;

/// The use cases the routes call, built once by [`AppState::build`] and
/// shared by every worker. A new use case is a field here and a line in
/// `build`.
#[derive(Debug, Clone)]
pub struct AppState {
    pub list_menus: ListMenus,
    pub check_readiness: CheckReadiness,
    pub sign_up: SignUp,
    pub log_in: LogIn,
    pub log_out: LogOut,
    pub refresh_tokens: RefreshTokens,
    pub get_me: GetMe,
    pub authenticate: Authenticate,
    pub charge_points: ChargePoints,
    pub get_balance: GetBalance,
    pub list_point_transactions: ListPointTransactions,
    pub place_order: PlaceOrder,
    pub get_order: GetOrder,
    pub list_orders: ListOrders,
    pub get_popular_menus: GetPopularMenus,
    /// Set when the instance starts shutting down (see [`crate::drain`]).
    pub drain: Drain,
    /// Seals and opens the lists' pagination cursors.
    pub cursors: CursorKey,
    /// Renders `GET /metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// How long a request body may take to arrive before `408`.
    pub request_timeout: Duration,
    /// Whose `X-Forwarded-For` is believed (see [`crate::client_addr`]).
    pub trusted_proxies: TrustedProxies,
}

/// Every port the use cases behind the routes need.
#[derive(Clone)]
pub struct Ports {
    pub menus: Arc<dyn MenuRepository>,
    /// What `/health/ready` checks, in report order.
    pub probes: Vec<Arc<dyn DependencyProbe>>,
    pub users: Arc<dyn UserRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttle: Arc<dyn LoginThrottle>,
    /// Signup and login attempts per client address.
    pub clients: Arc<dyn ClientThrottle>,
    pub sessions: Arc<dyn SessionStore>,
    pub codec: Arc<dyn TokenCodec>,
    pub points: Arc<dyn PointStore>,
    pub orders: Arc<dyn OrderStore>,
    /// What the popular ranking reads (the ranking itself is built here).
    pub statistics: Arc<dyn SalesStatistics>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Everything else the state holds: settings and shared handles.
#[derive(Debug, Clone)]
pub struct StateSettings {
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub charge_limits: ChargeLimits,
    pub cursors: CursorKey,
    pub drain: Drain,
    /// Renders `GET /metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// How long a request body may take to arrive before `408`.
    pub request_timeout: Duration,
    /// Whose `X-Forwarded-For` is believed (see [`crate::client_addr`]).
    pub trusted_proxies: TrustedProxies,
}

impl AppState {
    /// Every use case, wired to `ports`.
    pub fn build(ports: Ports, settings: StateSettings) -> Self {
        let issuer = TokenIssuer::new(
            ports.codec.clone(),
            ports.clock.clone(),
            settings.access_token_ttl,
            settings.refresh_token_ttl,
        );
        Self {
            list_menus: ListMenus::new(ports.menus),
            check_readiness: CheckReadiness::new(ports.probes),
            sign_up: SignUp::new(ports.users.clone(), ports.hasher.clone(), ports.clients.clone()),
            log_in: LogIn::new(
                LogInPorts {
                    users: ports.users.clone(),
                    hasher: ports.hasher,
                    throttle: ports.throttle,
                    clients: ports.clients,
                    sessions: ports.sessions.clone(),
                },
                issuer.clone(),
            ),
            log_out: LogOut::new(ports.codec.clone(), ports.sessions.clone(), ports.clock),
            refresh_tokens: RefreshTokens::new(ports.sessions.clone(), issuer),
            get_me: GetMe::new(ports.users),
            authenticate: Authenticate::new(ports.codec, ports.sessions),
            charge_points: ChargePoints::new(ports.points.clone(), settings.charge_limits),
            get_balance: GetBalance::new(ports.points.clone()),
            list_point_transactions: ListPointTransactions::new(ports.points),
            place_order: PlaceOrder::new(ports.orders.clone()),
            get_order: GetOrder::new(ports.orders.clone()),
            list_orders: ListOrders::new(ports.orders),
            get_popular_menus: GetPopularMenus::new(PopularRanking::new(ports.statistics)),
            drain: settings.drain,
            cursors: settings.cursors,
            metrics: settings.metrics,
            request_timeout: settings.request_timeout,
            trusted_proxies: settings.trusted_proxies,
        }
    }
}
