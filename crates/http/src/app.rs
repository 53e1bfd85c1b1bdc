//! The actix-web application: state, routes and middleware.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, web};
use coffee_application::{
    Authenticate, ChargePoints, CheckReadiness, GetBalance, GetMe, GetOrder, GetPopularMenus, ListMenus, ListOrders,
    ListPointTransactions, LogIn, LogOut, PlaceOrder, RefreshTokens, SignUp,
};
use tracing_actix_web::TracingLogger;

use crate::extract;
use crate::middleware::{CoffeeRootSpan, problem_fallback, request_context};
use crate::problem::{ApiError, ProblemCode};
use crate::routes::{auth, health, menus, orders, points};

/// The use cases the routes call, built once by `bootstrap` and shared by
/// every worker.
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
    /// Renders `GET /metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// Registers every route. Kept separate from [`build_app`] so tests can see
/// the whole route table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/signup").route(web::post().to(auth::sign_up)))
        .service(web::resource("/auth/login").route(web::post().to(auth::log_in)))
        .service(web::resource("/auth/logout").route(web::post().to(auth::log_out)))
        .service(web::resource("/auth/me").route(web::get().to(auth::me)))
        .service(web::resource("/auth/refresh").route(web::post().to(auth::refresh)))
        .service(web::resource("/menus").route(web::get().to(menus::list_menus)))
        .service(web::resource("/menus/popular").route(web::get().to(menus::popular)))
        .service(
            web::resource("/orders")
                .route(web::post().to(orders::place))
                .route(web::get().to(orders::list)),
        )
        .service(web::resource("/orders/{orderId}").route(web::get().to(orders::get)))
        .service(web::resource("/users/{userId}/points/charge").route(web::post().to(points::charge)))
        .service(web::resource("/users/{userId}/points").route(web::get().to(points::balance)))
        .service(web::resource("/users/{userId}/points/transactions").route(web::get().to(points::transactions)))
        .service(web::resource("/health/live").route(web::get().to(health::live)))
        .service(web::resource("/health/ready").route(web::get().to(health::ready)))
        .service(web::resource("/metrics").route(web::get().to(crate::metrics::render)));
}

/// The whole application, as served by `coffee serve` and by tests.
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
    App::new()
        .app_data(state)
        .app_data(web::PathConfig::default().error_handler(extract::path_error))
        .app_data(web::QueryConfig::default().error_handler(extract::query_error))
        .configure(routes)
        .default_service(web::to(not_found))
        .wrap(ErrorHandlers::new().default_handler(problem_fallback))
        .wrap(TracingLogger::<CoffeeRootSpan>::new())
        .wrap(from_fn(request_context))
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(ProblemCode::NotFound, "No resource at this path"))
}
