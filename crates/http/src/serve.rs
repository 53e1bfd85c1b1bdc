//! The HTTP server: actix-web's `HttpServer` set-up, written out so that
//! every connection is a [`TimedIo`] (which `HttpServer` has no hook for).
//! Otherwise the same: actix-server's workers and graceful stop (which also
//! tells every connection, through its worker's [`WorkerStop`], so idle
//! keep-alive ones close at once), actix-http's HTTP/1.1 with the
//! application of [`build_app`].

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::HttpService;
use actix_server::Server;
use actix_service::{IntoServiceFactory as _, ServiceFactoryExt as _, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::web;

use crate::app::{AppOptions, Listener, build_app_with, build_app_without_cors};
use crate::graceful_stop::WorkerStop;
use crate::state::AppState;
use crate::timed_io::TimedIo;

/// How the server listens and stops.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// HTTP worker threads (`None`: one per core).
    pub workers: Option<usize>,
    /// How long in-flight requests get once the server stops accepting.
    pub shutdown_timeout: Duration,
    /// The bound on a request's headers (every request's, see
    /// [`crate::timed_io`]) and on its body (see [`crate::extract`]).
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive: Duration,
    /// Origins a browser front-end may call the API from (empty: no CORS).
    pub cors_allowed_origins: Vec<String>,
    /// Runs on each worker's thread as it starts, before it serves (the
    /// connection pools give it pools of its own there).
    pub on_worker_start: WorkerStart,
}

/// What [`ServeSettings::on_worker_start`] runs (nothing by default).
#[derive(Clone, Default)]
pub struct WorkerStart(Option<Arc<dyn Fn() + Send + Sync>>);

impl WorkerStart {
    pub fn new(start: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(start)))
    }

    fn run(&self) {
        if let Some(start) = &self.0 {
            start();
        }
    }
}

impl std::fmt::Debug for WorkerStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "WorkerStart(set)"
        } else {
            "WorkerStart(none)"
        })
    }
}

/// A server on `listener` serving [`build_app_with`] over `state`, and when
/// `admin` is given, the admin routes there (metrics then leave `listener`);
/// not yet running; signals are left to the caller. Both listeners share the
/// workers and the graceful stop.
pub fn server(
    listener: TcpListener,
    admin: Option<TcpListener>,
    state: web::Data<AppState>,
    settings: &ServeSettings,
) -> std::io::Result<Server> {
    let mut builder = Server::build()
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs());
    if let Some(workers) = settings.workers {
        builder = builder.workers(workers);
    }
    let public = if admin.is_some() {
        Listener::Public
    } else {
        Listener::All
    };
    let listeners = std::iter::once(("coffee-http", listener, public))
        .chain(admin.map(|admin| ("coffee-admin", admin, Listener::Admin)));
    for (name, listener, kind) in listeners {
        let addr = listener.local_addr()?;
        let shutdown = builder.graceful_shutdown_signal();
        let (keep_alive, request_timeout) = (settings.keep_alive, settings.request_timeout);
        let options = AppOptions {
            listener: kind,
            cors_allowed_origins: settings.cors_allowed_origins.clone(),
        };
        let state = state.clone();
        let on_worker_start = settings.on_worker_start.clone();
        // actix-server calls the factory on each worker's thread as the
        // worker starts; one of two, as the listener has CORS or not (the
        // applications' types differ).
        macro_rules! listen {
            ($app:expr) => {
                builder.listen(name, listener, move || {
                    on_worker_start.run();
                    // The graceful stop as this worker's connections poll
                    // it, at every request (`graceful_stop.rs`).
                    let stop = WorkerStop::follow(shutdown.clone());
                    let app = $app.into_factory();
                    let http = HttpService::build()
                        .graceful_shutdown_signal(move || stop.started())
                        .keep_alive(keep_alive)
                        .client_request_timeout(request_timeout)
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .local_addr(addr)
                        .h1(map_config(app, |()| AppConfig::default()));
                    fn_service(move |io: actix_web::rt::net::TcpStream| {
                        let peer = io.peer_addr().ok();
                        std::future::ready(Ok((TimedIo::new(io, request_timeout), peer)))
                    })
                    .and_then(http)
                })?
            };
        }
        builder = if options.cors() {
            listen!(build_app_with(state.clone(), options.clone()))
        } else {
            listen!(build_app_without_cors(state.clone(), options.listener))
        };
    }
    Ok(builder.run())
}
