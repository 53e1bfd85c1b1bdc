//! Builds an `AppState` from mockall fakes of every port, so route tests run
//! the real router and real use cases with no server behind them.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use coffee_domain::{ChargeLimits, Points};
use coffee_http::{AppState, Ports, StateSettings};
use coffee_ports::DependencyProbe;
use coffee_ports::InfraError;
use coffee_ports::LoginAttempt;
use coffee_ports::auth::{
    MockClientThrottle, MockLoginThrottle, MockPasswordHasher, MockSessionStore, MockTokenCodec, MockUserRepository,
};
use coffee_ports::clock::MockClock;
use coffee_ports::health::MockDependencyProbe;
use coffee_ports::menu::MockMenuRepository;
use coffee_ports::orders::MockOrderStore;
use coffee_ports::points::MockPointStore;
use coffee_ports::statistics::MockSalesStatistics;

/// Every port, as a fake to set expectations on before [`Fakes::state`].
#[derive(Default)]
pub struct Fakes {
    pub menus: MockMenuRepository,
    pub users: MockUserRepository,
    pub hasher: MockPasswordHasher,
    pub throttle: MockLoginThrottle,
    /// `None`: every client address is let through.
    pub clients: Option<MockClientThrottle>,
    pub sessions: MockSessionStore,
    pub codec: MockTokenCodec,
    pub points: MockPointStore,
    pub orders: MockOrderStore,
    pub statistics: MockSalesStatistics,
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
        let ports = Ports {
            menus: Arc::new(self.menus),
            probes: vec![probe("database", self.database_up), probe("cache", true)],
            users: Arc::new(self.users),
            hasher: Arc::new(self.hasher),
            throttle: Arc::new(self.throttle),
            clients: Arc::new(self.clients.unwrap_or_else(|| {
                let mut clients = MockClientThrottle::new();
                clients.expect_attempt().returning(|_, _, _| Ok(LoginAttempt::Allowed));
                clients.expect_withdraw().returning(|_, _, _| Ok(()));
                clients
            })),
            sessions: Arc::new(self.sessions),
            codec: Arc::new(self.codec),
            points: Arc::new(self.points),
            orders: Arc::new(self.orders),
            statistics: Arc::new(self.statistics),
            clock: Arc::new(clock),
        };
        web::Data::new(AppState::build(
            ports,
            StateSettings {
                access_token_ttl: Duration::from_secs(900),
                refresh_token_ttl: Duration::from_secs(3600),
                charge_limits: limits(),
                cursors: coffee_http::CursorKey::derive(b"http-tests-cursor-key-of-32-bytes!!"),
                drain: coffee_http::Drain::default(),
                metrics: metrics_exporter_prometheus::PrometheusBuilder::new()
                    .build_recorder()
                    .handle(),
                request_timeout: Duration::from_secs(10),
                trusted_proxies: coffee_http::TrustedProxies::default(),
            },
        ))
    }
}

pub fn limits() -> ChargeLimits {
    ChargeLimits {
        max_amount: Points::new(1_000_000).unwrap_or(Points::ZERO),
        max_balance: Points::new(100_000_000).unwrap_or(Points::ZERO),
    }
}
