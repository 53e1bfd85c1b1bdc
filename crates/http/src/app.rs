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
use crate::openapi::ApiDoc;
use crate::problem::{ApiError, ProblemCode};
use crate::routes::{auth, health, menus, orders, points};
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

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
    /// Set when the instance starts shutting down (see [`crate::drain`]).
    pub drain: crate::drain::Drain,
    /// Seals and opens the lists' pagination cursors.
    pub cursors: crate::pagination::CursorKey,
    /// Renders `GET /metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
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

        /// Registers every route of [`API_ROUTES`] plus the API document and its page.
        pub fn routes(cfg: &mut web::ServiceConfig) {
            // One per worker (each worker builds its own App).
            cfg.app_data(web::Data::new(menus::MenusJson::default()));
            $(cfg.service(web::resource($path)$(.route(web::$method().to($($handler)::+)))+);)+
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
