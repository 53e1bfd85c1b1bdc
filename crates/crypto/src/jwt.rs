//! HS256 JSON Web Tokens, checked the way RFC 8725 asks.

use std::time::Duration;

use coffee_domain::{SessionId, TokenClaims, TokenId, TokenKind, UserId};
use coffee_ports::{InfraError, TokenCodec, TokenError};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// What the codec signs with and checks for.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The HMAC key; the configuration refuses keys under 32 bytes.
    pub secret: SecretString,
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp`.
    pub leeway: Duration,
}

/// The registered claims plus `sid` (session) and `typ` (access or refresh).
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: Uuid,
    jti: Uuid,
    sid: Uuid,
    typ: String,
    iat: i64,
    exp: i64,
}

/// Signs and verifies tokens with one symmetric key.
#[derive(Clone)]
pub struct JwtCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCodec")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtCodec {
    pub fn new(settings: &JwtSettings) -> anyhow::Result<Self> {
        let secret = settings.secret.expose_secret().as_bytes();
        // Only HS256 is ever accepted: a token claiming `none` or any other
        // algorithm fails before its signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = settings.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = false;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret)?,
            decoding: DecodingKey::from_secret(secret)?,
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }
}

impl TokenCodec for JwtCodec {
    fn encode(&self, claims: &TokenClaims) -> Result<String, InfraError> {
        let body = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: claims.user_id.as_uuid(),
            jti: claims.token_id.as_uuid(),
            sid: claims.session_id.as_uuid(),
            typ: claims.kind.as_str().to_owned(),
            iat: claims.issued_at.unix_timestamp(),
            exp: claims.expires_at.unix_timestamp(),
        };
        encode(&Header::new(Algorithm::HS256), &body, &self.encoding)
            .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("signing a token")))
    }

    fn decode(&self, token: &str, kind: TokenKind) -> Result<TokenClaims, TokenError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        let claims = data.claims;
        if claims.typ != kind.as_str() {
            return Err(TokenError::Invalid);
        }
        let time = |secs| OffsetDateTime::from_unix_timestamp(secs).map_err(|_| TokenError::Invalid);
        Ok(TokenClaims {
            user_id: UserId::from_uuid(claims.sub),
            session_id: SessionId::from_uuid(claims.sid),
            token_id: TokenId::from_uuid(claims.jti),
            kind,
            issued_at: time(claims.iat)?,
            expires_at: time(claims.exp)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

    fn codec_with(secret: &str, issuer: &str, audience: &str) -> JwtCodec {
        JwtCodec::new(&JwtSettings {
            secret: SecretString::from(secret.to_owned()),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: Duration::from_secs(5),
        })
        .expect("codec")
    }

    fn codec() -> JwtCodec {
        codec_with(SECRET, "coffee", "coffee-api")
    }

    fn claims(kind: TokenKind, expires_in: i64) -> TokenClaims {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("whole second");
        TokenClaims {
            user_id: UserId::from_uuid(Uuid::new_v4()),
            session_id: SessionId::from_uuid(Uuid::new_v4()),
            token_id: TokenId::from_uuid(Uuid::new_v4()),
            kind,
            issued_at: now,
            expires_at: now + time::Duration::seconds(expires_in),
        }
    }

    fn b64(value: &serde_json::Value) -> String {
        base64url(value.to_string().as_bytes())
    }

    /// Unpadded base64url, written out to keep the test free of extra crates.
    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    #[test]
    fn a_token_round_trips() {
        let original = claims(TokenKind::Access, 900);
        let token = codec().encode(&original).expect("signed");
        assert_eq!(codec().decode(&token, TokenKind::Access), Ok(original));
    }

    #[test]
    fn access_and_refresh_tokens_are_not_interchangeable() {
        let access = codec().encode(&claims(TokenKind::Access, 900)).expect("signed");
        let refresh = codec().encode(&claims(TokenKind::Refresh, 900)).expect("signed");
        assert_eq!(codec().decode(&access, TokenKind::Refresh), Err(TokenError::Invalid));
        assert_eq!(codec().decode(&refresh, TokenKind::Access), Err(TokenError::Invalid));
    }

    #[test]
    fn an_expired_token_is_expired_beyond_the_leeway_only() {
        let expired = codec().encode(&claims(TokenKind::Access, -60)).expect("signed");
        let within_leeway = codec().encode(&claims(TokenKind::Access, -2)).expect("signed");
        assert_eq!(codec().decode(&expired, TokenKind::Access), Err(TokenError::Expired));
        assert!(codec().decode(&within_leeway, TokenKind::Access).is_ok());
    }

    #[test]
    fn a_token_signed_with_another_key_is_invalid() {
        let forged = codec_with("another-secret-that-is-also-32-bytes-long!", "coffee", "coffee-api")
            .encode(&claims(TokenKind::Access, 900))
            .expect("signed");
        assert_eq!(codec().decode(&forged, TokenKind::Access), Err(TokenError::Invalid));
    }

    #[test]
    fn another_issuer_or_audience_is_invalid() {
        for other in [
            codec_with(SECRET, "someone-else", "coffee-api"),
            codec_with(SECRET, "coffee", "other-api"),
        ] {
            let token = other.encode(&claims(TokenKind::Access, 900)).expect("signed");
            assert_eq!(codec().decode(&token, TokenKind::Access), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let original = claims(TokenKind::Access, 900);
        let body = json!({
            "iss": "coffee", "aud": "coffee-api", "sub": original.user_id.as_uuid(),
            "jti": original.token_id.as_uuid(), "sid": original.session_id.as_uuid(), "typ": "access",
            "iat": original.issued_at.unix_timestamp(), "exp": original.expires_at.unix_timestamp(),
        });
        for token in [
            format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&body)),
            format!("{}.{}", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&body)),
        ] {
            assert_eq!(
                codec().decode(&token, TokenKind::Access),
                Err(TokenError::Invalid),
                "{token}"
            );
        }
    }

    #[test]
    fn another_hmac_algorithm_is_refused() {
        let original = claims(TokenKind::Access, 900);
        let body = Claims {
            iss: "coffee".into(),
            aud: "coffee-api".into(),
            sub: original.user_id.as_uuid(),
            jti: original.token_id.as_uuid(),
            sid: original.session_id.as_uuid(),
            typ: "access".into(),
            iat: original.issued_at.unix_timestamp(),
            exp: original.expires_at.unix_timestamp(),
        };
        let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
        let hs512 = encode(&Header::new(Algorithm::HS512), &body, &key).expect("signed");
        assert_eq!(codec().decode(&hs512, TokenKind::Access), Err(TokenError::Invalid));
    }

    #[test]
    fn garbage_is_invalid() {
        for token in ["", "abc", "a.b.c", "Bearer x"] {
            assert_eq!(codec().decode(token, TokenKind::Access), Err(TokenError::Invalid));
        }
    }
}
