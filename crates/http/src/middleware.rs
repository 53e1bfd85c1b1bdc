//! The request lifecycle (request ids, spans, the per-request log line) and the problem+json
//! fallback for errors actix produces on its own.

use std::future::{Future, Ready, ready};
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::ConnectionType;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{Error, ResponseError};
use tracing::Span;

use crate::client_addr::client_of;
use crate::drain::Drain;
use crate::extract::MAX_BODY_BYTES;
use crate::problem::{ApiError, PROBLEM_JSON, ProblemCode};
use crate::request_id::{self, X_REQUEST_ID};

/// The route template a resource serves, registered as that resource's data
/// (`app.rs`): read back from the answered request for the metrics' label,
/// where asking actix for the matched pattern walks the router again.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

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
/// metrics, the refusal of declared oversize bodies, problem+json for the
/// bare error responses actix produces itself ([`as_problem`]), and closing
/// connections while draining (`drain`). One hand-written layer, not a
/// chain of generic ones: nothing is boxed (but the application's future
/// behind the CORS layers, see [`Boxed`]), and nothing goes into the
/// request's extensions. (The `HttpRequest` must not be cloned here:
/// routing needs to be its only owner.) `H` is how it holds the
/// application's future ([`Holding`]).
#[derive(Debug, Clone, Default)]
pub struct RequestLifecycle<H = AsIs> {
    drain: Drain,
    holding: PhantomData<H>,
}

impl<H> RequestLifecycle<H> {
    /// The layer, closing connections once `drain` is set.
    pub fn new(drain: Drain) -> Self {
        Self {
            drain,
            holding: PhantomData,
        }
    }
}

/// How [`RequestLifecycle`] holds the application's future, which must be
/// free to move to a task of its own after it was polled, once it waits.
pub trait Holding<F: Future> {
    type Held: Future<Output = F::Output> + Unpin + 'static;
    fn hold(future: F) -> Self::Held;
}

/// The future as it is: its type says it is `Unpin` (actix's router boxes
/// each route's future), so holding it costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsIs;

impl<F: Future + Unpin + 'static> Holding<F> for AsIs {
    type Held = F;

    fn hold(future: F) -> F {
        future
    }
}

/// The future boxed: behind layers added by `App::wrap`, whose type hides
/// whether their future is `Unpin` (the CORS layers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Boxed;

impl<F: Future + 'static> Holding<F> for Boxed {
    type Held = Pin<Box<F>>;

    fn hold(future: F) -> Self::Held {
        Box::pin(future)
    }
}

impl<S, B, H> Transform<S, ServiceRequest> for RequestLifecycle<H>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
    H: Holding<S::Future>,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Transform = RequestLifecycleService<S, H>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestLifecycleService {
            service,
            drain: Rc::new(self.drain.clone()),
            holding: PhantomData,
        }))
    }
}

/// [`RequestLifecycle`] around the application. Its requests share the
/// worker's handle on the drain flag by an `Rc`: the flag's own `Arc` is
/// shared by every worker, and taking it for each request would write its
/// count from both cores.
#[derive(Debug)]
pub struct RequestLifecycleService<S, H> {
    service: S,
    drain: Rc<Drain>,
    holding: PhantomData<H>,
}

impl<S, B, H> Service<ServiceRequest> for RequestLifecycleService<S, H>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
    H: Holding<S::Future>,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Future = RequestLifecycleFuture<H::Held>;

    actix_service::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let id = request_id::of(&req);
        let span = root_span(&req, &id);
        let serving = if declared_too_large(&req) {
            Serving::Refused(Some(too_large(req)))
        } else {
            // Handlers' and extractors' errors arrive as responses already
            // (actix converts them where they occur), so they get the id too.
            Serving::Inline(H::hold(span.in_scope(|| self.service.call(req))))
        };
        RequestLifecycleFuture {
            serving,
            span,
            id,
            started,
            drain: Rc::clone(&self.drain),
        }
    }
}

/// The `413` of a request that declares too large a body. Here and below,
/// what a request answered in its first poll (`GET /menus`) never needs
/// is a function of its own, kept off the hot path (`#[cold]`), so the
/// code such a request runs stays in fewer cache lines and pages: at one
/// connection its time is mostly fetching code and data back into caches
/// the kernel's work between two requests has evicted (`docs/DECISIONS.md`,
/// "One connection to a hundredth").
#[cold]
#[inline(never)]
fn too_large(req: ServiceRequest) -> ServiceResponse {
    let problem = ApiError::new(
        ProblemCode::PayloadTooLarge,
        format!("The request body is larger than {MAX_BODY_BYTES} bytes"),
    );
    req.into_response(problem.error_response())
}

/// Where a request's answer comes from.
enum Serving<F: Future> {
    /// Refused before any route (a declared body too large).
    Refused(Option<ServiceResponse>),
    /// The application's future, polled here until it first waits.
    Inline(F),
    /// The same future once it waited: a task of its own on this worker
    /// ([`Detached`]).
    Detached(Detached<F::Output>),
}

/// A request's future moved to a task of its own on the HTTP worker that
/// took it (`spawn_local`: the same thread, no hand-over), once its first
/// poll waited for I/O. actix polls a request's future from the
/// connection's dispatcher, and every poll of the dispatcher also tries to
/// decode the next request, clearing a 3 KB header array each time: a write
/// woken by its session lookup and each PostgreSQL answer paid that at every
/// wake-up. Detached, those wake only the task; the dispatcher is woken once,
/// by the finished task. A request that answers in its first poll (`GET
/// /menus`) is never moved. Dropped (the client went away, or the worker
/// stops), it aborts the task, which drops the request's future as it would
/// have been dropped in place.
struct Detached<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Detached<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request in [`RequestLifecycle`]: the application's future as held
/// ([`Holding`]), polled inside the root span. Nothing in it is pinned in
/// place, so it is `Unpin`.
pub struct RequestLifecycleFuture<F: Future> {
    serving: Serving<F>,
    span: Span,
    id: HeaderValue,
    started: Instant,
    drain: Rc<Drain>,
}

impl<F: Future> std::fmt::Debug for RequestLifecycleFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let serving = match self.serving {
            Serving::Refused(_) => "refused",
            Serving::Inline(_) => "inline",
            Serving::Detached(_) => "detached",
        };
        f.debug_struct("RequestLifecycleFuture")
            .field("id", &self.id)
            .field("serving", &serving)
            .finish_non_exhaustive()
    }
}

impl<F: Future + 'static> Serving<F> {
    /// Moves the application's future, which has just waited, to a task
    /// of its own ([`Detached`]), in the request's `span`. Once per write
    /// (each waits for the database), whose time is that wait's, not this
    /// call's: cold for the requests that never wait.
    #[cold]
    #[inline(never)]
    fn detach(&mut self, span: &Span) {
        let Serving::Inline(serving) = std::mem::replace(self, Serving::Refused(None)) else {
            unreachable!("only an inline future is detached")
        };
        *self = Serving::Detached(Detached(actix_web::rt::spawn(tracing::Instrument::instrument(
            serving,
            span.clone(),
        ))));
    }
}

impl<F, B> Future for RequestLifecycleFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>> + Unpin + 'static,
    B: MessageBody + 'static,
{
    type Output = Result<ServiceResponse<BoxBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        let outcome = loop {
            match &mut this.serving {
                Serving::Refused(refused) => match refused.take() {
                    Some(refused) => break Ok(refused),
                    None => unreachable!("a request future polled after it completed"),
                },
                Serving::Inline(serving) => {
                    if let Poll::Ready(outcome) = Pin::new(serving).poll(cx) {
                        break outcome.map(problem_or_boxed);
                    }
                    this.serving.detach(&this.span);
                    // Round again: polling the task's handle registers
                    // this request's waker for the task's end.
                }
                Serving::Detached(task) => match Pin::new(&mut task.0).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(outcome)) => break outcome.map(problem_or_boxed),
                    Poll::Ready(Err(failed)) => break Err(detached_failed(&failed)),
                },
            }
        };
        let response = match outcome {
            Ok(mut response) => {
                // The id moves into the response: this future is done.
                let id = std::mem::replace(&mut this.id, HeaderValue::from_static(""));
                answered(&mut response, id, this.started, this.drain.is_draining());
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

/// The answer to a request whose task ended without one: it panicked, or
/// the worker's runtime is stopping. A `500` problem, and the cause logged.
fn detached_failed(failed: &tokio::task::JoinError) -> Error {
    if failed.is_panic() {
        tracing::error!("a request's handler panicked");
    } else {
        tracing::error!("a request's task was cancelled before it answered");
    }
    ApiError::new(ProblemCode::Internal, "An unexpected error occurred").into()
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
        close_after(response);
    }
    let seconds = started.elapsed().as_secs_f64();
    let request = response.request();
    crate::metrics::record_request(request.method(), route_of(request), response.status(), seconds);
    log_completed(response.status(), seconds * 1000.0);
}

/// Closes the connection once `response` is written.
#[cold]
#[inline(never)]
fn close_after<B>(response: &mut ServiceResponse<B>) {
    response
        .response_mut()
        .head_mut()
        .set_connection_type(ConnectionType::Close);
}

/// The one `request completed` line, at a level by its status.
fn log_completed(status: StatusCode, latency_ms: f64) {
    if status.is_server_error() {
        log_failed(status, latency_ms);
    } else {
        tracing::info!(status = status.as_u16(), latency_ms, "request completed");
    }
}

/// [`log_completed`] for a `5xx`.
#[cold]
#[inline(never)]
fn log_failed(status: StatusCode, latency_ms: f64) {
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(status = status.as_u16(), latency_ms, "request completed");
    } else {
        tracing::warn!(status = status.as_u16(), latency_ms, "request completed");
    }
}

/// [`as_problem`] as an `ErrorHandlers` handler: with CORS on, it runs
/// inside the CORS layer, so that the problems it makes carry the CORS
/// headers too ([`RequestLifecycle`] converts what the CORS layer refuses).
pub fn problem_fallback<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    Ok(ErrorHandlerResponse::Response(match as_problem(response) {
        Answer::Untouched(response) => response.map_into_left_body(),
        Answer::Problem(problem) => problem.map_into_right_body(),
    }))
}

/// [`as_problem`] for [`RequestLifecycle`]'s answer, in one body type. The
/// application's body is already a `BoxBody` (without CORS layers), which
/// boxes into itself: nothing is wrapped for the response's body to pass
/// through on every poll.
fn problem_or_boxed<B: MessageBody + 'static>(response: ServiceResponse<B>) -> ServiceResponse<BoxBody> {
    match as_problem(response) {
        Answer::Untouched(response) => response.map_into_boxed_body(),
        Answer::Problem(problem) => problem,
    }
}

/// A response as [`as_problem`] leaves it.
enum Answer<B> {
    /// As the application gave it.
    Untouched(ServiceResponse<B>),
    /// A problem+json in place of actix's bare error response.
    Problem(ServiceResponse),
}

/// Turns the bare error responses actix produces itself (unknown route, wrong
/// method with its `Allow` header, ...) into problem+json. Responses that are
/// already problems, and every other response, pass through untouched.
fn as_problem<B: MessageBody + 'static>(response: ServiceResponse<B>) -> Answer<B> {
    match code_for(response.status()) {
        None => Answer::Untouched(response),
        Some(code) => error_as_problem(response, code),
    }
}

/// [`as_problem`] for an error status (`code`).
#[cold]
#[inline(never)]
fn error_as_problem<B: MessageBody + 'static>(response: ServiceResponse<B>, code: ProblemCode) -> Answer<B> {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return Answer::Untouched(response);
    }
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
    Answer::Problem(ServiceResponse::new(request, problem.error_response()))
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::task::Waker;

    use actix_web::dev::Service as _;
    use actix_web::test::{TestRequest, init_service};
    use actix_web::{App, HttpResponse, web};
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

    use super::*;
    use crate::wakes::Wakes;

    /// Sets its flag when dropped: the handler's future is gone.
    struct Dropped(Rc<RefCell<bool>>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            *self.0.borrow_mut() = true;
        }
    }

    /// A handler that waits for `ANSWERS` answers on a channel the test
    /// feeds, like a write waiting for its session lookup and each
    /// PostgreSQL answer, and counts them.
    const ANSWERS: usize = 5;

    struct Handler {
        answers: Rc<RefCell<Option<UnboundedReceiver<()>>>>,
        received: Rc<RefCell<usize>>,
        dropped: Rc<RefCell<bool>>,
    }

    fn handler() -> (Handler, UnboundedSender<()>) {
        let (tx, rx) = unbounded_channel();
        let handler = Handler {
            answers: Rc::new(RefCell::new(Some(rx))),
            received: Rc::default(),
            dropped: Rc::default(),
        };
        (handler, tx)
    }

    async fn app(
        handler: &Handler,
    ) -> impl actix_web::dev::Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = Error>
    {
        let (answers, received, dropped) = (
            Rc::clone(&handler.answers),
            Rc::clone(&handler.received),
            Rc::clone(&handler.dropped),
        );
        init_service(App::new().wrap(RequestLifecycle::<AsIs>::default()).route(
            "/",
            web::get().to(move || {
                let answers = answers.borrow_mut().take();
                let (received, guard) = (Rc::clone(&received), Dropped(Rc::clone(&dropped)));
                async move {
                    let _guard = guard;
                    let mut answers = answers.expect("one request per test");
                    for _ in 0..ANSWERS {
                        answers.recv().await.expect("the test keeps the sender");
                        *received.borrow_mut() += 1;
                    }
                    HttpResponse::Ok().finish()
                }
            }),
        ))
        .await
    }

    #[actix_web::test]
    async fn a_request_that_waits_wakes_its_connection_once_when_it_is_answered() {
        let (handler, answers) = handler();
        let app = app(&handler).await;
        let mut answer = std::pin::pin!(app.call(TestRequest::get().uri("/").to_request()));
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut sent = 0;
        let response = loop {
            if let Poll::Ready(response) = answer.as_mut().poll(&mut cx) {
                break response.expect("answered");
            }
            assert!(sent <= ANSWERS, "still waiting after every answer");
            // The worker's other tasks run, then the next answer arrives.
            tokio::task::yield_now().await;
            if sent < ANSWERS {
                answers.send(()).expect("the handler waits");
                sent += 1;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key(X_REQUEST_ID));
        assert_eq!(*handler.received.borrow(), ANSWERS);
        assert_eq!(
            wakes.count(),
            1,
            "the connection is woken by the finished request only, not by each of its {ANSWERS} answers"
        );
    }

    #[actix_web::test]
    async fn a_request_given_up_midway_is_dropped_where_it_waits() {
        let (handler, answers) = handler();
        let app = app(&handler).await;
        let mut answer = Box::pin(app.call(TestRequest::get().uri("/").to_request()));
        let waker = Waker::from(Arc::new(Wakes::default()));
        let mut cx = Context::from_waker(&waker);
        assert!(answer.as_mut().poll(&mut cx).is_pending());
        answers.send(()).expect("the handler waits");
        tokio::task::yield_now().await;
        assert!(answer.as_mut().poll(&mut cx).is_pending());
        assert_eq!(*handler.received.borrow(), 1);
        // The client goes away: actix drops the request's future.
        drop(answer);
        tokio::task::yield_now().await;
        assert!(
            *handler.dropped.borrow(),
            "the handler's future is dropped, as it would be in place"
        );
        let _ = answers.send(());
        tokio::task::yield_now().await;
        assert_eq!(
            *handler.received.borrow(),
            1,
            "nothing runs after the request was given up"
        );
    }
}
