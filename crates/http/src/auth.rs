//! The `Authenticated` extractor every protected route takes.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use coffee_application::AuthenticateError;
use coffee_domain::Principal;
use futures_util::future::LocalBoxFuture;

use crate::problem::{ApiError, ProblemCode};
use crate::state::AppState;

/// The caller, proven by `Authorization: Bearer <access token>`: signature,
/// expiry, kind and revocation are all checked. Missing or bad tokens are
/// `401` with `WWW-Authenticate: Bearer`; an unreachable session store is
/// `503` (fail closed).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl From<AuthenticateError> for ApiError {
    fn from(error: AuthenticateError) -> Self {
        match error {
            AuthenticateError::Expired => ApiError::new(ProblemCode::TokenExpired, "The access token has expired"),
            AuthenticateError::Invalid => ApiError::new(ProblemCode::Unauthorized, "The access token is not valid"),
            AuthenticateError::Infra(e) => e.into(),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched
/// case-insensitively, as RFC 9110 says).
fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    let missing = || ApiError::new(ProblemCode::Unauthorized, "An Authorization: Bearer token is required");
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(missing());
    }
    Ok(token.to_owned())
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token?;
            let state = state.ok_or_else(|| ApiError::internal(&anyhow::anyhow!("AppState is not registered")))?;
            let principal = state.authenticate.execute(&token).await?;
            tracing::Span::current().record("user_id", tracing::field::display(principal.user_id));
            Ok(Authenticated(principal))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "bearer abc"))
            .to_http_request();
        assert_eq!(bearer_token(&req).ok(), Some("abc".to_owned()));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_refused() {
        for value in ["Basic abc", "Bearer", "Bearer   ", "abc"] {
            let req = TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request();
            assert_eq!(
                bearer_token(&req).map_err(|e| e.code()).err(),
                Some(ProblemCode::Unauthorized),
                "{value}"
            );
        }
        let req = TestRequest::default().to_http_request();
        assert!(bearer_token(&req).is_err());
    }
}
