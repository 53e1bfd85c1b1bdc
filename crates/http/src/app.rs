//! The actix-web application, registered in one place: the route table
//! (which also makes the API document and the metrics' route labels) and the
//! middleware, over the shared [`AppState`] (`state.rs`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, ErrorHandlers};
use actix_web::{App, web};
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::extract;
use crate::metrics::RouteTemplates;
use crate::middleware::{AsIs, Boxed, RequestLifecycle, RouteLabel, problem_fallback};
use crate::openapi::ApiDoc;
use crate::problem::{ApiError, ProblemCode};
use crate::routes::{auth, health, menus, metrics, orders, points};
use crate::state::AppState;

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
            $(if listener.serves($path) {
                cfg.service(
                    web::resource($path)
                        .app_data(RouteLabel($path))
                        $(.route(web::$method().to($($handler)::+)))+,
                );
            })+
            if listener == Listener::Admin {
                return;
            }
            let [openapi, docs, docs_assets] = DOCUMENT_ROUTES;
            cfg.service(
                web::resource(openapi)
                    .app_data(RouteLabel(openapi))
                    .route(web::get().to(openapi_json)),
            );
            cfg.service(SwaggerUi::new(docs_assets).config(
                utoipa_swagger_ui::Config::new([openapi]).persist_authorization(true),
            ));
            cfg.service(
                web::resource(docs)
                    .app_data(RouteLabel(docs))
                    .route(web::get().to(docs_redirect)),
            );
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

impl AppOptions {
    /// Whether the listener answers with CORS headers: origins are allowed,
    /// and it is not the admin listener.
    pub fn cors(&self) -> bool {
        !self.cors_allowed_origins.is_empty() && self.listener != Listener::Admin
    }
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

// The router tries routes in this order, so the busiest come first (no two
// patterns overlap, so the order changes nothing else).
api_routes! {
    "/menus" => [get => menus::list_menus],
    "/orders" => [post => orders::place, get => orders::list],
    "/users/{userId}/points/charge" => [post => points::charge],
    "/menus/popular" => [get => menus::popular],
    "/orders/{orderId}" => [get => orders::get],
    "/users/{userId}/points" => [get => points::balance],
    "/users/{userId}/points/transactions" => [get => points::transactions],
    "/auth/signup" => [post => auth::sign_up],
    "/auth/login" => [post => auth::log_in],
    "/auth/logout" => [post => auth::log_out],
    "/auth/me" => [get => auth::me],
    "/auth/refresh" => [post => auth::refresh],
    "/health/live" => [get => health::live],
    "/health/ready" => [get => health::ready],
    "/metrics" => [get => metrics::render],
}

/// The API document: [`ApiDoc`]'s title, tags and shared components with
/// the operations of every routed handler ([`RoutedPaths`]).
pub fn api_document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(RoutedPaths::openapi());
    document
}

/// The route templates the metrics label requests with: every route this
/// crate registers (handed to the middleware as data).
fn route_templates() -> RouteTemplates {
    RouteTemplates::new(
        API_ROUTES
            .iter()
            .map(|(path, _)| *path)
            .chain(DOCUMENT_ROUTES)
            .collect(),
    )
}

/// `GET /openapi.json`: the OpenAPI 3.1 document.
async fn openapi_json() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(api_document())
}

/// `GET /docs` → `/docs/` (Swagger UI serves its assets under the slash).
async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

/// The whole application on one listener with no CORS, as `coffee serve`
/// serves it ([`build_app_without_cors`]): what tests serve.
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
    build_app_without_cors(state, Listener::All)
}

/// The application one listener serves, with CORS when `options` allow
/// origins (not on the admin listener). Without CORS, `coffee serve` serves
/// [`build_app_without_cors`] instead: the same application without the two
/// layers that would only pass each request through.
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
    let cors = options.cors();
    // `App::wrap` hides whether the CORS layers' futures are `Unpin`.
    let lifecycle = RequestLifecycle::<Boxed>::new(state.drain.clone());
    routed(AppState::clone(&state), options.listener)
        // The lifecycle turns actix's bare error responses into problems.
        // With CORS on, a fallback inside the CORS layer does it first, so
        // that every answer (problems too) carries the CORS headers a
        // browser needs to read it; the lifecycle then makes CORS's own
        // refusals problems as well.
        .wrap(Condition::new(
            cors,
            ErrorHandlers::new().default_handler(problem_fallback),
        ))
        .wrap(Condition::new(
            cors,
            crate::cors::middleware(&options.cors_allowed_origins),
        ))
        .wrap(lifecycle)
}

/// [`build_app_with`] for a listener without CORS: its routes in the
/// lifecycle layer alone. `Condition` layers cost a request a few hundred
/// instructions even when off (a future and a body wrapper each), about 2%
/// of a `GET /menus`.
pub fn build_app_without_cors(
    state: web::Data<AppState>,
    listener: Listener,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    routed(AppState::clone(&state), listener).wrap(RequestLifecycle::<AsIs>::new(state.drain.clone()))
}

/// The routes `listener` serves and their shared data, before any layer.
fn routed(
    state: AppState,
    listener: Listener,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
        // The router's futures are boxed: the lifecycle moves them as they are.
        Service: actix_web::dev::Service<ServiceRequest, Future: Unpin>,
    >,
> {
    App::new()
        // A `Data` of this worker's own: its reference count, which every
        // request's extractor takes and gives back, is then written by this
        // worker's thread only, not moved between cores on each request.
        .app_data(web::Data::new(state))
        .app_data(route_templates())
        .app_data(web::PathConfig::default().error_handler(extract::path_error))
        .app_data(web::QueryConfig::default().error_handler(extract::query_error))
        .configure(|cfg| routes(cfg, listener))
        .default_service(web::to(not_found))
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(ProblemCode::NotFound, "No resource at this path"))
}
