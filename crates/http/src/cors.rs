//! Cross-origin requests from the browser front-ends of
//! `CORS_ALLOWED_ORIGINS`, with actix-cors (actix-web's own middleware: the
//! preflight, `Vary: Origin` and the header lists are its job, not ours).
//!
//! The API authenticates with a bearer token, never a cookie, so no
//! credentials mode is offered. An origin that is not listed gets no CORS
//! headers (its browser then hides the answer); requests without `Origin`
//! (every non-browser client) are served as before.

use actix_cors::Cors;
use actix_web::http::{Method, header};

use crate::idempotency::IDEMPOTENT_REPLAYED;

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE_SECS: usize = 3600;

/// The CORS middleware for `origins` (each `scheme://host[:port]`).
pub(crate) fn middleware(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods([Method::GET, Method::POST])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            IDEMPOTENT_REPLAYED,
            header::RETRY_AFTER,
            header::LOCATION,
        ])
        .max_age(PREFLIGHT_MAX_AGE_SECS)
        // Not listed: no CORS headers, rather than an error for a request
        // the browser would block anyway.
        .block_on_origin_mismatch(false)
}

/// Whether `origin` is what a browser sends in `Origin`: `http` or `https`,
/// a host, an optional port, and nothing after it.
pub fn is_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && rest
            .rsplit_once(':')
            .is_none_or(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in [
            "https://shop.example.com",
            "http://localhost:5173",
            "https://127.0.0.1:8443",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "shop.example.com",
            "https://",
            "https://shop.example.com/",
            "https://shop.example.com/app",
            "https://shop.example.com:port",
            "*",
            "ftp://shop.example.com",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
