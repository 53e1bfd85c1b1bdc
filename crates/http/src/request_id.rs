//! Request ids: the client's `x-request-id` when it is a sane token, a new
//! UUID otherwise, echoed on every response.
//!
//! Every request that arrives without one gets a new one, so making it is
//! on every request's path. A new id is a version 4 UUID whose random bits
//! come from a generator of the worker's own thread (rand's `SmallRng`,
//! Xoshiro256++, seeded once per thread from rand's thread generator, which
//! the operating system seeds), written as text a word at a time. A request
//! id is a correlation token, not a secret (a client may send its own), so a
//! fast generator serves: 122 random bits per id from 256 bits of state, no
//! ChaCha block per few ids (uuid's `fast-rng`), and no table lookup per
//! byte of its text.

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
    HeaderValue::from_bytes(&hyphenated(uuid.as_u128())).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// `value` as a UUID's text: 32 lowercase hex digits, most significant
/// first, in groups of 8, 4, 4, 4 and 12 joined by hyphens.
fn hyphenated(value: u128) -> [u8; 36] {
    let high = hex_digits((value >> 64) as u64);
    let low = hex_digits(value as u64);
    let mut text = [b'-'; 36];
    text[..8].copy_from_slice(&high[..8]);
    text[9..13].copy_from_slice(&high[8..12]);
    text[14..18].copy_from_slice(&high[12..]);
    text[19..23].copy_from_slice(&low[..4]);
    text[24..].copy_from_slice(&low[4..]);
    text
}

/// Sixteen bytes of the value 1.
const ONES: u128 = u128::from_ne_bytes([1; 16]);

/// The 16 lowercase hex digits of `word`, most significant first: its
/// nibbles spread one to a byte (halving the width of each group at each
/// step), then each turned into its digit in every byte at once.
fn hex_digits(word: u64) -> [u8; 16] {
    let mut v = u128::from(word);
    v = (v | (v << 32)) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    v = (v | (v << 16)) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f_0f0f;
    // 1 in the bytes that hold 10 or more (a letter): adding 6 carries into
    // their fifth bit. No byte ever exceeds 255 here, so nothing carries
    // from one byte into the next.
    let letters = ((v + ONES * 6) >> 4) & ONES;
    (v + ONES * u128::from(b'0') + letters * u128::from(b'a' - b'0' - 10)).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn the_text_is_the_uuid_crates(value: u128) {
            let text = hyphenated(value);
            prop_assert_eq!(
                std::str::from_utf8(&text).expect("ascii"),
                uuid::Uuid::from_u128(value).hyphenated().to_string()
            );
        }
    }

    #[test]
    fn edges_are_written_as_uuid_writes_them() {
        for value in [
            0,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
            0x9999_aaaa << 60,
        ] {
            assert_eq!(
                std::str::from_utf8(&hyphenated(value)).expect("ascii"),
                uuid::Uuid::from_u128(value).hyphenated().to_string()
            );
        }
    }

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
