//! HS256 JSON Web Tokens, checked the way RFC 8725 asks.
//!
//! Keys rotate without logging anyone out: every token names its key in the
//! header's `kid` (an HMAC of a fixed label under the key, so it reveals
//! nothing of it); the current key signs, and previous keys still verify the
//! tokens they signed until they are removed from the settings.

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
    /// The HMAC key that signs; the configuration refuses keys under 32 bytes.
    pub secret: SecretString,
    /// Keys that signed before `secret` replaced them: they still verify
    /// (`JWT_PREVIOUS_SECRETS`), until the longest token life has passed.
    pub previous_secrets: Vec<SecretString>,
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

/// One verification key, the `kid` that names it, and the header segment
/// (base64url of the JSON header) of the tokens it signs.
struct VerificationKey {
    id: String,
    key: DecodingKey,
    header: String,
}

impl Claims {
    /// What is signed for `claims` by `issuer` for `audience`.
    fn of(claims: &TokenClaims, issuer: &str, audience: &str) -> Self {
        Self {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            sub: claims.user_id.as_uuid(),
            jti: claims.token_id.as_uuid(),
            sid: claims.session_id.as_uuid(),
            typ: claims.kind.as_str().to_owned(),
            iat: claims.issued_at.unix_timestamp(),
            exp: claims.expires_at.unix_timestamp(),
        }
    }
}

/// Signs with one symmetric key and verifies with it and the previous ones.
#[derive(Clone)]
pub struct JwtCodec {
    encoding: EncodingKey,
    key_id: String,
    verification: std::sync::Arc<[VerificationKey]>,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCodec")
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The `kid` of `secret`: 12 characters of base64url of an HMAC-SHA256 of
/// a fixed label under it. Every instance computes the same one.
pub fn key_id(secret: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 takes keys of any length"));
    mac.update(b"coffee/jwt-key-id/v1");
    let digest = mac.finalize().into_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..9])
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
        let verification = std::iter::once(&settings.secret)
            .chain(&settings.previous_secrets)
            .map(|secret| {
                let secret = secret.expose_secret().as_bytes();
                let id = key_id(secret);
                Ok(VerificationKey {
                    header: header_segment(&id, secret)?,
                    id,
                    key: DecodingKey::from_secret(secret)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret)?,
            key_id: key_id(secret),
            verification: verification.into(),
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    /// Checks `token`'s signature with the key its `kid` names; a token
    /// without one (signed before keys had ids) is tried with each key.
    fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if let Some(key) = self.key_by_header(token) {
            return self.verify_with(token, key).unwrap_or(Err(TokenError::Invalid));
        }
        let kid = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?.kid;
        let keys = self
            .verification
            .iter()
            .filter(|key| kid.as_deref().is_none_or(|kid| kid == key.id));
        for key in keys {
            if let Some(answer) = self.verify_with(token, key) {
                return answer;
            }
        }
        Err(TokenError::Invalid)
    }

    /// The key whose tokens start with `token`'s header segment, byte for
    /// byte: every token this service issues, found without decoding its
    /// header (a base64 and a JSON parse per request); any other header
    /// goes through [`jsonwebtoken::decode_header`].
    fn key_by_header(&self, token: &str) -> Option<&VerificationKey> {
        let (header, _) = token.split_once('.')?;
        self.verification.iter().find(|key| key.header == header)
    }

    /// Checks `token` with `key`: `None` when it is not that key's
    /// signature. The signature is checked before the claims: `Expired` is
    /// only ever said of a token this key signed.
    fn verify_with(&self, token: &str, key: &VerificationKey) -> Option<Result<Claims, TokenError>> {
        match decode::<Claims>(token, &key.key, &self.validation) {
            Ok(data) => Some(Ok(data.claims)),
            Err(e) if *e.kind() == ErrorKind::InvalidSignature => None,
            Err(e) if *e.kind() == ErrorKind::ExpiredSignature => Some(Err(TokenError::Expired)),
            Err(_) => Some(Err(TokenError::Invalid)),
        }
    }
}

/// The header every token signed with the key `kid` carries.
fn header_of(kid: &str) -> Header {
    Header {
        kid: Some(kid.to_owned()),
        ..Header::new(Algorithm::HS256)
    }
}

/// The header segment of the tokens signed with the key `kid` (`secret`),
/// as [`jsonwebtoken::encode`] writes it: what precedes the first `.` of a
/// token it signs.
fn header_segment(kid: &str, secret: &[u8]) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct NoClaims {}
    let token = encode(&header_of(kid), &NoClaims {}, &EncodingKey::from_secret(secret)?)?;
    let (header, _) = token
        .split_once('.')
        .ok_or_else(|| anyhow::anyhow!("a signed token without a header segment"))?;
    Ok(header.to_owned())
}

impl TokenCodec for JwtCodec {
    fn encode(&self, claims: &TokenClaims) -> Result<String, InfraError> {
        let body = Claims::of(claims, &self.issuer, &self.audience);
        encode(&header_of(&self.key_id), &body, &self.encoding)
            .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("signing a token")))
    }

    fn decode(&self, token: &str, kind: TokenKind) -> Result<TokenClaims, TokenError> {
        let claims = self.verify(token)?;
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
            previous_secrets: Vec::new(),
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

    /// The claims the codec would sign for `claims`, to sign another way.
    fn body_of(claims: &TokenClaims) -> Claims {
        Claims::of(claims, "coffee", "coffee-api")
    }

    fn b64(value: &serde_json::Value) -> String {
        base64url(value.to_string().as_bytes())
    }

    fn base64url(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
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

    fn rotated(current: &str, previous: &[&str]) -> JwtCodec {
        JwtCodec::new(&JwtSettings {
            secret: SecretString::from(current.to_owned()),
            previous_secrets: previous.iter().map(|s| SecretString::from((*s).to_owned())).collect(),
            issuer: "coffee".into(),
            audience: "coffee-api".into(),
            leeway: Duration::from_secs(5),
        })
        .expect("codec")
    }

    fn header_of(token: &str) -> jsonwebtoken::Header {
        jsonwebtoken::decode_header(token).expect("header")
    }

    #[test]
    fn tokens_name_their_key_and_previous_keys_verify_until_removed() {
        const NEW: &str = "the-new-signing-key-of-at-least-32-bytes";
        let original = claims(TokenKind::Access, 900);
        let before = codec().encode(&original).expect("signed");
        assert_eq!(
            header_of(&before).kid.as_deref(),
            Some(key_id(SECRET.as_bytes()).as_str())
        );

        let during = rotated(NEW, &[SECRET]);
        assert_eq!(during.decode(&before, TokenKind::Access), Ok(original.clone()));
        let after = during.encode(&original).expect("signed");
        assert_eq!(header_of(&after).kid.as_deref(), Some(key_id(NEW.as_bytes()).as_str()));
        assert_ne!(key_id(NEW.as_bytes()), key_id(SECRET.as_bytes()));
        assert_eq!(
            codec().decode(&after, TokenKind::Access),
            Err(TokenError::Invalid),
            "the old key never verifies the new key's tokens"
        );

        let finished = rotated(NEW, &[]);
        assert_eq!(finished.decode(&before, TokenKind::Access), Err(TokenError::Invalid));
        assert_eq!(finished.decode(&after, TokenKind::Access), Ok(original));
    }

    /// Tokens of the current key and of a previous one are matched to
    /// their key by their header segment alone; any other header is not.
    #[test]
    fn issued_tokens_find_their_key_by_their_header_segment() {
        const NEW: &str = "the-new-signing-key-of-at-least-32-bytes";
        let during = rotated(NEW, &[SECRET]);
        let old = codec().encode(&claims(TokenKind::Access, 900)).expect("signed");
        let new = during.encode(&claims(TokenKind::Access, 900)).expect("signed");

        let key_of = |token: &str| during.key_by_header(token).map(|key| key.id.clone());
        assert_eq!(key_of(&new), Some(key_id(NEW.as_bytes())));
        assert_eq!(key_of(&old), Some(key_id(SECRET.as_bytes())));
        let unnamed = encode(
            &Header::new(Algorithm::HS256),
            &body_of(&claims(TokenKind::Access, 900)),
            &EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
        )
        .expect("signed");
        assert_eq!(key_of(&unnamed), None, "decoded the slow way");
        assert_eq!(key_of("no-dots"), None);
    }

    #[test]
    fn a_token_without_kid_is_tried_with_every_key_and_an_unknown_kid_with_none() {
        const NEW: &str = "the-new-signing-key-of-at-least-32-bytes";
        let original = claims(TokenKind::Refresh, 900);
        let body = body_of(&original);
        let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
        let unnamed = encode(&Header::new(Algorithm::HS256), &body, &key).expect("signed");
        assert_eq!(
            rotated(NEW, &[SECRET]).decode(&unnamed, TokenKind::Refresh),
            Ok(original)
        );
        let misnamed = Header {
            kid: Some(key_id(NEW.as_bytes())),
            ..Header::new(Algorithm::HS256)
        };
        let misnamed = encode(&misnamed, &body, &key).expect("signed");
        assert_eq!(
            rotated(NEW, &[SECRET]).decode(&misnamed, TokenKind::Refresh),
            Err(TokenError::Invalid),
            "only the key the kid names is tried"
        );
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
        let body = body_of(&original);
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
