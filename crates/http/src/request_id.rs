//! Request ids: the client's `x-request-id` when it is a sane token, a new
//! UUID otherwise, echoed on every response.
//!
//! Every request that arrives without one gets a new one, so making it is
//! on every request's path. A new id is a version 4 UUID whose random bits
//! come from a generator of the worker's own thread (rand's `SmallRng`,
//! Xoshiro256++, seeded once per thread from rand's thread generator, which
//! the operating system seeds), written as text by uuid. A request id is a
//! correlation token, not a secret (a client may send its own), so a fast
//! generator serves: 122 random bits per id from 256 bits of state, and no
//! ChaCha block per few ids (uuid's `fast-rng`).

use std::cell::RefCell;

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{HeaderName, HeaderValue};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

thread_local! {
    /// This thread's source of new ids.
    static IDS: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// The client's `x-request-id` when it is a sane token (1 to 128 visible
/// ASCII characters; anything else could pollute logs), a new UUID
/// otherwise.
pub fn of(req: &ServiceRequest) -> HeaderValue {
    if let Some(value) = req.headers().get(X_REQUEST_ID)
        && (1..=128).contains(&value.len())
        && value.as_bytes().iter().all(u8::is_ascii_graphic)
    {
        return value.clone();
    }
    fresh()
}

/// A new id: a random (version 4) UUID in its hyphenated lowercase form.
fn fresh() -> HeaderValue {
    let random: u128 = IDS.with_borrow_mut(|ids| ids.random());
    let uuid = uuid::Builder::from_random_bytes(random.to_be_bytes()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(uuid.hyphenated().encode_lower(&mut text)).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_new_id_is_a_random_uuid_and_differs_from_the_last() {
        let ids: Vec<HeaderValue> = (0..1_000)
            .map(|_| of(&TestRequest::default().to_srv_request()))
            .collect();
        for id in &ids {
            let uuid: uuid::Uuid = id.to_str().expect("ascii").parse().expect("a uuid");
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random));
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        }
        let distinct: std::collections::HashSet<&HeaderValue> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn a_sane_client_id_is_kept_and_any_other_replaced() {
        let with = |id: &str| {
            of(&TestRequest::default()
                .insert_header((X_REQUEST_ID, id))
                .to_srv_request())
        };
        assert_eq!(with("abc-123"), "abc-123");
        let long = "x".repeat(129);
        for insane in ["has space", long.as_str()] {
            assert!(
                with(insane).to_str().expect("ascii").parse::<uuid::Uuid>().is_ok(),
                "{insane:?}"
            );
        }
    }
}
