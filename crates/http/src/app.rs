//! The actix-web application, registered in one place: the use cases
//! ([`AppState`], wired once by [`AppState::build`] from a bundle of
//! [`Ports`]), the route table (which also makes the API document), and the
//! middleware. Production (`bootstrap`) hands in the real adapters, the HTTP
//! tests mockall fakes; both go through [`AppState::build`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, ErrorHandlers, from_fn};
use actix_web::{App, web};
use coffee_application::{
    Authenticate, ChargePoints, CheckReadiness, GetBalance, GetMe, GetOrder, GetPopularMenus, ListMenus, ListOrders,
    ListPointTransactions, LogIn, LogInPorts, LogOut, PlaceOrder, RefreshTokens, SignUp, TokenIssuer,
};
use coffee_domain::ChargeLimits;
use coffee_ports::{
    ClientThrottle, Clock, DependencyProbe, LoginThrottle, MenuRepository, OrderStore, PasswordHasher, PointStore,
    PopularMenus, SessionStore, TokenCodec, UserRepository,
};
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::client_addr::TrustedProxies;
use crate::drain::Drain;
use crate::extract;
use crate::middleware::{CoffeeRootSpan, problem_fallback, request_context};
use crate::openapi::ApiDoc;
use crate::pagination::CursorKey;
use crate::problem::{ApiError, ProblemCode};
use crate::routes::{auth, health, menus, orders, points};

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
            get_popular_menus: GetPopularMenus::new(ports.popular),
            drain: settings.drain,
            cursors: settings.cursors,
            metrics: settings.metrics,
            request_timeout: settings.request_timeout,
            trusted_proxies: settings.trusted_proxies,
        }
    }
}

/// Declares the API's routes once. The same table gives [`API_ROUTES`] (what
/// the router serves), [`routes`] (the registration with actix) and
/// [`RoutedPaths`] (the operations of the OpenAPI document, read from each
/// handler's `#[utoipa::path]`), so a route cannot be served undocumented: a
/// handler without `#[utoipa::path]` does not compile, and a test checks that
/// each handler documents the path and method it is registered under.
macro_rules! api_routes {
    ($($path:literal => [$($method:ident => $($handler:ident)::+),+ $(,)?]),+ $(,)?) => {
        /// Every (path, methods) the router serves, besides `/openapi.json` and `/docs`.
        pub const API_ROUTES: &[(&str, &[&str])] = &[$(($path, &[$(stringify!($method)),+])),+];

        /// Registers the routes of [`API_ROUTES`] that `listener` serves, plus
        /// the API document and its page on a public listener.
        pub fn routes(cfg: &mut web::ServiceConfig, listener: Listener) {
            // One per worker (each worker builds its own App).
            cfg.app_data(web::Data::new(menus::MenusJson::default()));
            $(if listener.serves($path) {
                cfg.service(web::resource($path)$(.route(web::$method().to($($handler)::+)))+);
            })+
            if listener == Listener::Admin {
                return;
            }
            let [openapi, docs, docs_assets] = DOCUMENT_ROUTES;
            cfg.service(web::resource(openapi).route(web::get().to(openapi_json)));
            cfg.service(SwaggerUi::new(docs_assets).config(
                utoipa_swagger_ui::Config::new([openapi]).persist_authorization(true),
            ));
            cfg.service(web::resource(docs).route(web::get().to(docs_redirect)));
        }

        /// The operations of every routed handler; [`crate::openapi::ApiDoc`]
        /// adds the document's title, tags and shared components.
        #[derive(Debug, utoipa::OpenApi)]
        #[openapi(paths($($($($handler)::+),+),+))]
        pub struct RoutedPaths;
    };
}

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Everything: the API, its document, health and metrics (no admin
    /// listener is configured).
    All,
    /// The API, its document and health; metrics are only on the admin
    /// listener.
    Public,
    /// [`ADMIN_PATHS`] only (`ADMIN_BIND_ADDR`).
    Admin,
}

/// What the admin listener serves: metrics and the health checks.
pub const ADMIN_PATHS: [&str; 3] = ["/metrics", "/health/live", "/health/ready"];

impl Listener {
    /// Whether this listener serves the route at `path`.
    pub fn serves(self, path: &str) -> bool {
        match self {
            Self::All => true,
            Self::Public => path != "/metrics",
            Self::Admin => ADMIN_PATHS.contains(&path),
        }
    }
}

/// How one listener's application is built.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub listener: Listener,
    /// Origins a browser front-end may call the API from
    /// (`CORS_ALLOWED_ORIGINS`); empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            listener: Listener::All,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// The routes of the API document and its page, besides [`API_ROUTES`]: the
/// document, the redirect, and Swagger UI's assets.
pub const DOCUMENT_ROUTES: [&str; 3] = ["/openapi.json", "/docs", "/docs/{_:.*}"];

api_routes! {
    "/auth/signup" => [post => auth::sign_up],
    "/auth/login" => [post => auth::log_in],
    "/auth/logout" => [post => auth::log_out],
    "/auth/me" => [get => auth::me],
    "/auth/refresh" => [post => auth::refresh],
    "/menus" => [get => menus::list_menus],
    "/menus/popular" => [get => menus::popular],
    "/users/{userId}/points/charge" => [post => points::charge],
    "/users/{userId}/points" => [get => points::balance],
    "/users/{userId}/points/transactions" => [get => points::transactions],
    "/orders" => [post => orders::place, get => orders::list],
    "/orders/{orderId}" => [get => orders::get],
    "/health/live" => [get => health::live],
    "/health/ready" => [get => health::ready],
    "/metrics" => [get => crate::metrics::render],
}

/// `GET /openapi.json`: the OpenAPI 3.1 document.
async fn openapi_json() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(ApiDoc::openapi())
}

/// `GET /docs` → `/docs/` (Swagger UI serves its assets under the slash).
async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

/// The whole application on one listener with no CORS: what tests serve.
pub fn build_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    build_app_with(state, AppOptions::default())
}

/// The application one listener of `coffee serve` serves.
pub fn build_app_with(
    state: web::Data<AppState>,
    options: AppOptions,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let listener = options.listener;
    let cors = !options.cors_allowed_origins.is_empty() && listener != Listener::Admin;
    App::new()
        .app_data(state)
        .app_data(web::PathConfig::default().error_handler(extract::path_error))
        .app_data(web::QueryConfig::default().error_handler(extract::query_error))
        .configure(|cfg| routes(cfg, listener))
        .default_service(web::to(not_found))
        .wrap(ErrorHandlers::new().default_handler(problem_fallback))
        // Outside the problem fallback, so every answer (problems too)
        // carries the CORS headers a browser needs to read it; and inside a
        // second fallback, so CORS's own refusals are problems as well.
        .wrap(Condition::new(
            cors,
            crate::cors::middleware(&options.cors_allowed_origins),
        ))
        .wrap(Condition::new(
            cors,
            ErrorHandlers::new().default_handler(problem_fallback),
        ))
        .wrap(TracingLogger::<CoffeeRootSpan>::new())
        .wrap(from_fn(request_context))
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(ProblemCode::NotFound, "No resource at this path"))
}
