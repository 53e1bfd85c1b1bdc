//! Request ids, request spans, the per-request log line, and the problem+json
//! fallback for errors actix produces on its own.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{Error, HttpMessage, ResponseError, web};

use crate::state::AppState;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

use crate::client_addr::ClientAddr;
use crate::extract::MAX_BODY_BYTES;
use crate::problem::{ApiError, PROBLEM_JSON, ProblemCode};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being served: the client's `x-request-id` when it is
/// a sane token, a new UUID otherwise.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// When the request arrived, for the latency in the request log line.
#[derive(Debug, Clone, Copy)]
struct RequestStart(Instant);

/// The route template the request matched (one of a fixed set, see
/// [`crate::metrics::RouteTemplates::label`]), for the metrics' label.
#[derive(Debug, Clone, Copy)]
struct RoutePattern(&'static str);

/// Accepts ids of 1 to 128 visible ASCII characters; anything else could
/// pollute logs, so it is replaced.
fn client_request_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(X_REQUEST_ID)?.to_str().ok()?;
    let ok = (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| value.to_owned())
}

/// Outermost middleware: assigns the request id and start time, and echoes the
/// id on every response, error or not. (The `HttpRequest` must not be cloned
/// here: routing needs to be its only owner.)
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = client_request_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let client = req.peer_addr().map(|peer| {
        req.app_data::<web::Data<AppState>>().map_or(peer.ip(), |state| {
            state.trusted_proxies.client_address(peer.ip(), req.headers())
        })
    });
    req.extensions_mut().insert(ClientAddr(client));
    req.extensions_mut().insert(RequestStart(Instant::now()));
    // Refused before any route reads it, whatever the route: no body this
    // service takes is anywhere near the limit.
    let declared_too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len > MAX_BODY_BYTES);
    let mut response = if declared_too_large {
        let problem = ApiError::new(
            ProblemCode::PayloadTooLarge,
            format!("The request body is larger than {MAX_BODY_BYTES} bytes"),
        );
        req.into_response(problem.error_response()).map_into_right_body()
    } else {
        // Handlers' and extractors' errors arrive here as responses already
        // (actix converts them where they occur), so they get the header too.
        next.call(req).await?.map_into_left_body()
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    // While draining, every client is asked to reconnect (to another
    // instance, once the balancer has seen this one is not ready). After a
    // body that stalled (`408`), what is left of it would be read as the
    // next request: that connection is closed too.
    let draining = response
        .request()
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.drain.is_draining());
    if draining || response.status() == StatusCode::REQUEST_TIMEOUT {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}

/// Root span of every request: method, route template, request id, the
/// client's address (behind trusted proxies, see [`crate::client_addr`]),
/// and the authenticated user once known (`Span::current().record("user_id", ..)`).
/// When the request ends it emits the one `request completed` line. Method
/// and route are the metrics' bounded labels, not the raw request line: an
/// invented method of any length is logged as `OTHER`.
#[derive(Debug)]
pub struct CoffeeRootSpan;

impl RootSpanBuilder for CoffeeRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        // Resolved once here (it walks the router) and kept for the metrics.
        let route = request
            .app_data::<crate::metrics::RouteTemplates>()
            .map_or(crate::metrics::UNMATCHED, |templates| {
                templates.label(request.match_pattern().as_deref())
            });
        request.extensions_mut().insert(RoutePattern(route));
        let client_ip = request
            .extensions()
            .get::<ClientAddr>()
            .and_then(|c| c.0)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        tracing::info_span!(
            "http_request",
            method = crate::metrics::method_label(request.method()),
            route = route,
            request_id = %request_id,
            client_ip = %client_ip,
            user_id = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, latency_ms) = match outcome {
            Ok(response) => {
                let request = response.request();
                let started = request.extensions().get::<RequestStart>().copied();
                let latency = started.map(|s| s.0.elapsed().as_secs_f64() * 1000.0);
                let route = request
                    .extensions()
                    .get::<RoutePattern>()
                    .map_or(crate::metrics::UNMATCHED, |r| r.0);
                crate::metrics::record_request(
                    request.method(),
                    route,
                    response.status(),
                    latency.unwrap_or_default() / 1000.0,
                );
                (response.status(), latency)
            }
            Err(error) => (error.as_response_error().status_code(), None),
        };
        let _entered = span.enter();
        let latency_ms = latency_ms.unwrap_or_default();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status = status.as_u16(), latency_ms, "request completed");
        } else if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), latency_ms, "request completed");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, "request completed");
        }
    }
}

/// Turns the bare error responses actix produces itself (unknown route, wrong
/// method with its `Allow` header, ...) into problem+json. Responses that are
/// already problems pass through untouched.
pub fn problem_fallback<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    let Some(code) = code_for(response.status()).filter(|_| !is_problem) else {
        return Ok(ErrorHandlerResponse::Response(response.map_into_left_body()));
    };
    let detail = match code {
        ProblemCode::NotFound => "No resource at this path".to_owned(),
        ProblemCode::MethodNotAllowed => {
            let allowed = response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            format!("Allowed methods: {allowed}")
        }
        other => other.title().to_owned(),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut problem = ApiError::new(code, detail);
    if let Some(allow) = allow {
        problem = problem.with_header(header::ALLOW, allow);
    }
    let (request, _) = response.into_parts();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, problem.error_response()).map_into_right_body(),
    ))
}

fn code_for(status: StatusCode) -> Option<ProblemCode> {
    Some(match status.as_u16() {
        400 => ProblemCode::MalformedRequest,
        401 => ProblemCode::Unauthorized,
        403 => ProblemCode::Forbidden,
        404 => ProblemCode::NotFound,
        405 => ProblemCode::MethodNotAllowed,
        413 => ProblemCode::PayloadTooLarge,
        415 => ProblemCode::UnsupportedMediaType,
        500 => ProblemCode::Internal,
        503 => ProblemCode::DependencyUnavailable,
        _ => return None,
    })
}
