//! Builds an `AppState` from mockall fakes of every port, so route tests run
//! the real router and real use cases with no server behind them.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use coffee_application::{
    Authenticate, ChargePoints, CheckReadiness, GetBalance, GetMe, GetOrder, GetPopularMenus, ListMenus, ListOrders,
    ListPointTransactions, LogIn, LogOut, PlaceOrder, RefreshTokens, SignUp, TokenIssuer,
};
use coffee_domain::{ChargeLimits, Points};
use coffee_http::AppState;
use coffee_ports::DependencyProbe;
use coffee_ports::auth::{MockLoginThrottle, MockPasswordHasher, MockSessionStore, MockTokenCodec, MockUserRepository};
use coffee_ports::clock::MockClock;
use coffee_ports::health::MockDependencyProbe;
use coffee_ports::menu::MockMenuRepository;
use coffee_ports::orders::{MockOrderStore, MockPopularMenus};
use coffee_ports::points::MockPointStore;
use coffee_ports::{InfraError, SessionStore, TokenCodec};

/// Every port, as a fake to set expectations on before [`Fakes::state`].
#[derive(Default)]
pub struct Fakes {
    pub menus: MockMenuRepository,
    pub users: MockUserRepository,
    pub hasher: MockPasswordHasher,
    pub throttle: MockLoginThrottle,
    pub sessions: MockSessionStore,
    pub codec: MockTokenCodec,
    pub points: MockPointStore,
    pub orders: MockOrderStore,
    pub popular: MockPopularMenus,
    pub database_up: bool,
}

pub fn probe(name: &'static str, up: bool) -> Arc<dyn DependencyProbe> {
    let mut probe = MockDependencyProbe::new();
    probe.expect_name().return_const(name);
    probe.expect_check().returning(move || {
        if up {
            Ok(())
        } else {
            Err(InfraError::unavailable(name, anyhow::anyhow!("refused")))
        }
    });
    Arc::new(probe)
}

impl Fakes {
    pub fn new() -> Self {
        Self {
            database_up: true,
            ..Self::default()
        }
    }

    pub fn state(self) -> web::Data<AppState> {
        let mut clock = MockClock::new();
        clock.expect_now().returning(time::OffsetDateTime::now_utc);
        let clock: Arc<dyn coffee_ports::Clock> = Arc::new(clock);
        let codec: Arc<dyn TokenCodec> = Arc::new(self.codec);
        let sessions: Arc<dyn SessionStore> = Arc::new(self.sessions);
        let users = Arc::new(self.users);
        let points = Arc::new(self.points);
        let orders = Arc::new(self.orders);
        let hasher = Arc::new(self.hasher);
        let issuer = TokenIssuer::new(
            codec.clone(),
            clock.clone(),
            Duration::from_secs(900),
            Duration::from_secs(3600),
        );
        web::Data::new(AppState {
            list_menus: ListMenus::new(Arc::new(self.menus)),
            check_readiness: CheckReadiness::new(vec![probe("database", self.database_up), probe("cache", true)]),
            sign_up: SignUp::new(users.clone(), hasher.clone()),
            log_in: LogIn::new(
                users.clone(),
                hasher,
                Arc::new(self.throttle),
                sessions.clone(),
                issuer.clone(),
            ),
            log_out: LogOut::new(codec.clone(), sessions.clone(), clock.clone()),
            refresh_tokens: RefreshTokens::new(sessions.clone(), issuer),
            get_me: GetMe::new(users),
            authenticate: Authenticate::new(codec, sessions),
            charge_points: ChargePoints::new(points.clone(), limits()),
            get_balance: GetBalance::new(points.clone()),
            list_point_transactions: ListPointTransactions::new(points),
            place_order: PlaceOrder::new(orders.clone()),
            get_order: GetOrder::new(orders.clone()),
            list_orders: ListOrders::new(orders),
            get_popular_menus: GetPopularMenus::new(Arc::new(self.popular)),
            drain: coffee_http::Drain::default(),
            cursors: coffee_http::CursorKey::derive(b"http-tests-cursor-key-of-32-bytes!!"),
            metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
        })
    }
}

pub fn limits() -> ChargeLimits {
    ChargeLimits {
        max_amount: Points::new(1_000_000).unwrap_or(Points::ZERO),
        max_balance: Points::new(100_000_000).unwrap_or(Points::ZERO),
    }
}
