//! Request ids, request spans, the per-request log line, and the problem+json
//! fallback for errors actix produces on its own.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::ConnectionType;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{Error, ResponseError};
use tracing::Span;

use crate::client_addr::client_of;
use crate::drain::Drain;
use crate::extract::MAX_BODY_BYTES;
use crate::problem::{ApiError, PROBLEM_JSON, ProblemCode};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route template a resource serves, registered as that resource's data
/// (`app.rs`): read back from the answered request for the metrics' label,
/// where asking actix for the matched pattern walks the router again.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// The client's `x-request-id` when it is a sane token (1 to 128 visible
/// ASCII characters; anything else could pollute logs), a new UUID
/// otherwise.
fn request_id(req: &ServiceRequest) -> HeaderValue {
    if let Some(value) = req.headers().get(X_REQUEST_ID)
        && (1..=128).contains(&value.len())
        && value.as_bytes().iter().all(u8::is_ascii_graphic)
    {
        return value.clone();
    }
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Whether the request declares a body larger than any this service takes:
/// refused before any route reads it.
fn declared_too_large(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len > MAX_BODY_BYTES)
}

/// Root span of every request: method, route template, request id, the
/// client's address (behind trusted proxies, see [`crate::client_addr`]),
/// and the authenticated user once known (`Span::current().record("user_id", ..)`).
/// Method and route are the metrics' bounded labels, not the raw request
/// line: an invented method of any length is logged as `OTHER`. The fields
/// are only worked out when the span is recorded at all (`RUST_LOG` at
/// `info` or finer for this crate): a disabled span costs nothing.
fn root_span(req: &ServiceRequest, id: &HeaderValue) -> Span {
    let span = tracing::info_span!(
        "http_request",
        method = crate::metrics::method_label(req.method()),
        route = tracing::field::Empty,
        request_id = tracing::field::Empty,
        client_ip = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        span.record("route", route_by_router(req.request()));
        span.record("request_id", id.to_str().unwrap_or_default());
        span.record(
            "client_ip",
            tracing::field::display(client_of(req.request()).map(|ip| ip.to_string()).unwrap_or_default()),
        );
    }
    span
}

/// The route label the router gives `request`'s path (it walks the
/// router): before routing, and for answers without a [`RouteLabel`].
fn route_by_router(request: &actix_web::HttpRequest) -> &'static str {
    request
        .app_data::<crate::metrics::RouteTemplates>()
        .map_or(crate::metrics::UNMATCHED, |templates| {
            templates.label(request.match_pattern().as_deref())
        })
}

/// The route label of an answered request: its resource's [`RouteLabel`],
/// else (Swagger UI's assets, no route at all) the router's answer.
fn route_of(request: &actix_web::HttpRequest) -> &'static str {
    request
        .app_data::<RouteLabel>()
        .map_or_else(|| route_by_router(request), |label| label.0)
}

/// Outermost middleware, one layer for everything every request needs: the
/// request id (echoed on every response, error or not), the root span with
/// the client's address and the one `request completed` line, the request
/// metrics, the refusal of declared oversize bodies, and closing
/// connections while draining (`drain`). One hand-written layer, not a
/// chain of generic ones: nothing is boxed, and nothing goes into the
/// request's extensions. (The `HttpRequest` must not be cloned here:
/// routing needs to be its only owner.)
#[derive(Debug, Clone, Default)]
pub struct RequestLifecycle {
    pub drain: Drain,
}

impl<S, B> Transform<S, ServiceRequest> for RequestLifecycle
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = RequestLifecycleService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestLifecycleService {
            service,
            drain: self.drain.clone(),
        }))
    }
}

/// [`RequestLifecycle`] around the application.
#[derive(Debug)]
pub struct RequestLifecycleService<S> {
    service: S,
    drain: Drain,
}

impl<S, B> Service<ServiceRequest> for RequestLifecycleService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = RequestLifecycleFuture<S::Future>;

    actix_service::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let id = request_id(&req);
        let span = root_span(&req, &id);
        let (refused, serving) = if declared_too_large(&req) {
            let problem = ApiError::new(
                ProblemCode::PayloadTooLarge,
                format!("The request body is larger than {MAX_BODY_BYTES} bytes"),
            );
            (Some(req.into_response(problem.error_response())), None)
        } else {
            // Handlers' and extractors' errors arrive as responses already
            // (actix converts them where they occur), so they get the id too.
            (None, Some(span.in_scope(|| self.service.call(req))))
        };
        RequestLifecycleFuture {
            serving,
            refused,
            span,
            id,
            started,
            drain: self.drain.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request in [`RequestLifecycle`]: the application's future, polled
    /// inside the root span.
    pub struct RequestLifecycleFuture<F> {
        #[pin]
        serving: Option<F>,
        refused: Option<ServiceResponse>,
        span: Span,
        id: HeaderValue,
        started: Instant,
        drain: Drain,
    }
}

impl<F, B> Future for RequestLifecycleFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let outcome = match (this.refused.take(), this.serving.as_pin_mut()) {
            (Some(refused), _) => Ok(refused.map_into_right_body()),
            (None, Some(serving)) => match serving.poll(cx) {
                Poll::Ready(outcome) => outcome.map(ServiceResponse::map_into_left_body),
                Poll::Pending => return Poll::Pending,
            },
            (None, None) => unreachable!("a request future polled after it completed"),
        };
        let response = match outcome {
            Ok(mut response) => {
                answered(&mut response, this.id.clone(), *this.started, this.drain.is_draining());
                response
            }
            Err(error) => {
                log_completed(error.as_response_error().status_code(), 0.0);
                return Poll::Ready(Err(error));
            }
        };
        Poll::Ready(Ok(response))
    }
}

/// The response's part of [`RequestLifecycle`]: the id header, closing the
/// connection while `draining` or after a stalled body, the metrics and the
/// log line.
fn answered<B>(response: &mut ServiceResponse<B>, id: HeaderValue, started: Instant, draining: bool) {
    response.headers_mut().insert(X_REQUEST_ID, id);
    // While draining, every client is asked to reconnect (to another
    // instance, once the balancer has seen this one is not ready). After a
    // body that stalled (`408`), what is left of it would be read as the
    // next request: that connection is closed too.
    if draining || response.status() == StatusCode::REQUEST_TIMEOUT {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    let seconds = started.elapsed().as_secs_f64();
    let request = response.request();
    crate::metrics::record_request(request.method(), route_of(request), response.status(), seconds);
    log_completed(response.status(), seconds * 1000.0);
}

/// The one `request completed` line, at a level by its status.
fn log_completed(status: StatusCode, latency_ms: f64) {
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(status = status.as_u16(), latency_ms, "request completed");
    } else if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), latency_ms, "request completed");
    } else {
        tracing::info!(status = status.as_u16(), latency_ms, "request completed");
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
