//! The fingerprint of an idempotent request: SHA-256 of its canonical form.

use coffee_domain::{Fingerprint, IdempotencyScope};
use sha2::{Digest, Sha256};

/// Hashes the scope and a canonical rendering of the validated request, so
/// two requests that mean the same thing get the same fingerprint however
/// their JSON was spelled (spacing, key order, merged duplicate lines).
pub fn fingerprint(scope: IdempotencyScope, canonical: &str) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(canonical.as_bytes());
    Fingerprint::from_bytes(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_and_the_request_both_count() {
        let a = fingerprint(IdempotencyScope::PointsCharge, "100");
        assert_eq!(a, fingerprint(IdempotencyScope::PointsCharge, "100"));
        assert_ne!(a, fingerprint(IdempotencyScope::PointsCharge, "101"));
        assert_ne!(a, fingerprint(IdempotencyScope::OrdersPlace, "100"));
    }
}
