//! Outbound adapter for cryptography.
//!
//! - [`Argon2Hasher`]: argon2id password hashing (OWASP parameters) on tokio's
//!   blocking pool, bounded by a semaphore so a login storm keeps at least one
//!   core free for every other route.
//! - [`JwtCodec`]: HS256 JSON Web Tokens following RFC 8725: the algorithm is
//!   pinned on decode, `iss`, `aud`, `exp` are checked, and a `typ` claim keeps
//!   access and refresh tokens apart.

mod hasher;
mod jwt;

pub use hasher::Argon2Hasher;
pub use jwt::{JwtCodec, JwtSettings, key_id};
