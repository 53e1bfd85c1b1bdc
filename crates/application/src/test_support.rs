//! Fixtures shared by the use cases' unit tests: a fixed clock, a caller, a
//! token codec and issuer. Compiled only for tests.

use std::sync::Arc;
use std::time::Duration;

use coffee_domain::{Principal, SessionId, TokenId, UserId};
use coffee_ports::Clock;
use coffee_ports::auth::MockTokenCodec;
use coffee_ports::clock::MockClock;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::TokenIssuer;

pub const ACCESS_TTL: Duration = Duration::from_secs(900);
pub const REFRESH_TTL: Duration = Duration::from_secs(1_209_600);

pub fn fixed_now() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub fn clock() -> Arc<dyn Clock> {
    let mut clock = MockClock::new();
    clock.expect_now().returning(fixed_now);
    Arc::new(clock)
}

/// A codec whose tokens are `"<kind>:<jti>"`, decoding nothing.
pub fn encoding_codec() -> MockTokenCodec {
    let mut codec = MockTokenCodec::new();
    codec
        .expect_encode()
        .returning(|c| Ok(format!("{}:{}", c.kind.as_str(), c.token_id)));
    codec
}

pub fn issuer(codec: MockTokenCodec) -> TokenIssuer {
    TokenIssuer::new(Arc::new(codec), clock(), ACCESS_TTL, REFRESH_TTL)
}

/// The authenticated caller of a use case: user 1, session 2, token 3.
pub fn caller() -> Principal {
    caller_of(UserId::from_uuid(Uuid::from_u128(1)))
}

/// [`caller`] as another user.
pub fn caller_of(user_id: UserId) -> Principal {
    Principal {
        user_id,
        session_id: SessionId::from_uuid(Uuid::from_u128(2)),
        token_id: TokenId::from_uuid(Uuid::from_u128(3)),
        expires_at: OffsetDateTime::UNIX_EPOCH,
    }
}
