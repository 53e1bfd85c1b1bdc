//! Wiring, once: the ports the routes' use cases need, and the one function
//! that builds [`AppState`] from them. Production (`bootstrap`) hands in the
//! real adapters, the HTTP tests mockall fakes; both go through
//! [`AppState::build`], so a new use case is wired in exactly one place.

use std::sync::Arc;
use std::time::Duration;

use coffee_application::{
    Authenticate, ChargePoints, CheckReadiness, GetBalance, GetMe, GetOrder, GetPopularMenus, ListMenus, ListOrders,
    ListPointTransactions, LogIn, LogOut, PlaceOrder, RefreshTokens, SignUp, TokenIssuer,
};
use coffee_domain::ChargeLimits;
use coffee_ports::{
    Clock, DependencyProbe, LoginThrottle, MenuRepository, OrderStore, PasswordHasher, PointStore, PopularMenus,
    SessionStore, TokenCodec, UserRepository,
};

use crate::app::AppState;
use crate::drain::Drain;
use crate::pagination::CursorKey;

/// Every port the use cases behind the routes need.
#[derive(Clone)]
pub struct Ports {
    pub menus: Arc<dyn MenuRepository>,
    /// What `/health/ready` checks, in report order.
    pub probes: Vec<Arc<dyn DependencyProbe>>,
    pub users: Arc<dyn UserRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttle: Arc<dyn LoginThrottle>,
    pub sessions: Arc<dyn SessionStore>,
    pub codec: Arc<dyn TokenCodec>,
    pub points: Arc<dyn PointStore>,
    pub orders: Arc<dyn OrderStore>,
    pub popular: Arc<dyn PopularMenus>,
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
            sign_up: SignUp::new(ports.users.clone(), ports.hasher.clone()),
            log_in: LogIn::new(
                ports.users.clone(),
                ports.hasher,
                ports.throttle,
                ports.sessions.clone(),
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
            get_popular_menus: GetPopularMenus::new(ports.popular),
            drain: settings.drain,
            cursors: settings.cursors,
            metrics: settings.metrics,
        }
    }
}
