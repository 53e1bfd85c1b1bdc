//! `/auth/*`: signup, login, logout, me, refresh.

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, web};
use coffee_application::{GetMeError, LogInCommand, LogInError, LogOutError, RefreshError, SignUpCommand, SignUpError};
use coffee_domain::{Email, Password, TokenPair, User, UserName};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::client_addr::ClientAddr;
use crate::extract::{ApiJson, OptionalJson};
use crate::json_time;
use crate::problem::{ApiError, FieldError, ProblemCode};
use crate::state::AppState;

/// Longest email or password login will even look at; anything longer cannot
/// match an account and is refused before any hashing.
const MAX_LOGIN_FIELD: usize = 1024;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    /// Trimmed and lower-cased before it is stored.
    #[schema(format = Email, max_length = 254, example = "kim@example.com")]
    pub email: String,
    /// 8 to 128 characters, not a commonly used password.
    #[schema(min_length = 8, max_length = 128, example = "correct horse battery staple")]
    pub password: String,
    /// 1 to 50 characters after trimming, no control characters.
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
        example = "Kim"
    )]
    pub name: String,
}

impl TryFrom<SignUpRequest> for SignUpCommand {
    type Error = ApiError;

    /// Reports every invalid field at once.
    fn try_from(body: SignUpRequest) -> Result<Self, Self::Error> {
        let email = Email::parse(&body.email);
        let password = Password::parse(&body.password);
        let name = UserName::parse(&body.name);
        match (email, password, name) {
            (Ok(email), Ok(password), Ok(name)) => Ok(SignUpCommand {
                email,
                password,
                name,
                client: None,
            }),
            (email, password, name) => {
                let mut errors = Vec::new();
                if let Err(e) = email {
                    errors.push(FieldError::new("email", e.to_string()));
                }
                if let Err(e) = password {
                    errors.push(FieldError::new("password", e.to_string()));
                }
                if let Err(e) = name {
                    errors.push(FieldError::new("name", e.to_string()));
                }
                Err(ApiError::validation(errors))
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogInRequest {
    #[schema(max_length = 1024, example = "kim@example.com")]
    pub email: String,
    #[schema(max_length = 1024, example = "correct horse battery staple")]
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogOutRequest {
    pub refresh_token: Option<String>,
}

/// An account as clients see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    pub id: Uuid,
    #[schema(format = Email)]
    pub email: String,
    pub name: String,
    #[schema(minimum = 0)]
    pub point: i64,
    #[serde(serialize_with = "json_time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(serialize_with = "json_time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            name: user.name.as_str().to_owned(),
            point: user.point.value(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPairResponse {
    pub access_token: String,
    pub refresh_token: String,
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
}

impl From<TokenPair> for TokenPairResponse {
    fn from(pair: TokenPair) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: "Bearer",
            expires_in: pair.access_expires_in.as_secs(),
            refresh_expires_in: pair.refresh_expires_in.as_secs(),
        }
    }
}

impl From<SignUpError> for ApiError {
    fn from(error: SignUpError) -> Self {
        match error {
            SignUpError::EmailTaken => {
                ApiError::new(ProblemCode::EmailTaken, "An account with this email already exists")
            }
            SignUpError::TooManyAttempts { retry_after } => too_many("signups from this address", retry_after),
            SignUpError::Infra(e) => e.into(),
        }
    }
}

/// `429 TOO_MANY_ATTEMPTS` with `Retry-After` (whole seconds, at least 1).
fn too_many(what: &str, retry_after: std::time::Duration) -> ApiError {
    let secs = retry_after.as_secs().max(1);
    ApiError::new(
        ProblemCode::TooManyAttempts,
        format!("Too many {what}; retry in {secs} seconds"),
    )
    .with_header(RETRY_AFTER, HeaderValue::from(secs))
}

impl From<LogInError> for ApiError {
    fn from(error: LogInError) -> Self {
        match error {
            LogInError::InvalidCredentials => {
                ApiError::new(ProblemCode::InvalidCredentials, "The email or password is incorrect")
            }
            LogInError::TooManyAttempts { retry_after } => too_many("login attempts", retry_after),
            LogInError::Infra(e) => e.into(),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(error: RefreshError) -> Self {
        match error {
            RefreshError::Expired => ApiError::new(ProblemCode::TokenExpired, "The refresh token has expired"),
            RefreshError::Invalid => ApiError::new(ProblemCode::Unauthorized, "The refresh token is not valid"),
            RefreshError::Reused => ApiError::new(
                ProblemCode::RefreshTokenReused,
                "This refresh token was already used; the session has been revoked, log in again",
            ),
            RefreshError::Infra(e) => e.into(),
        }
    }
}

impl From<LogOutError> for ApiError {
    fn from(error: LogOutError) -> Self {
        match error {
            LogOutError::Infra(e) => e.into(),
        }
    }
}

impl From<GetMeError> for ApiError {
    fn from(error: GetMeError) -> Self {
        match error {
            GetMeError::Gone => ApiError::new(ProblemCode::Unauthorized, "The account no longer exists"),
            GetMeError::Infra(e) => e.into(),
        }
    }
}

/// Sign up
///
/// Creates an account with an email and a password and answers `201` with
/// the new user.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", operation_id = "signUp", request_body = SignUpRequest,
    responses(
        (status = 201, description = "The account", body = UserResponse),
        crate::openapi::JsonBodyProblems,
        (status = 409, description = "EMAIL_TAKEN", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "TOO_MANY_ATTEMPTS: too many signups from this client address, with Retry-After", body = crate::openapi::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the window ends"))),
        crate::openapi::ServerProblems,
    )
)]
pub async fn sign_up(
    state: web::Data<AppState>,
    client: ClientAddr,
    body: ApiJson<SignUpRequest>,
) -> Result<HttpResponse, ApiError> {
    let command = SignUpCommand {
        client: client.0,
        ..SignUpCommand::try_from(body.0)?
    };
    let user = state.sign_up.execute(command).await?;
    Ok(HttpResponse::Created().json(UserResponse::from(user)))
}

/// Log in
///
/// Trades an email and a password for a token pair (an access token and a
/// refresh token). An unknown email and a wrong password answer alike;
/// repeated failures are throttled with `Retry-After`.
#[utoipa::path(post, path = "/auth/login", tag = "auth", operation_id = "logIn", request_body = LogInRequest,
    responses(
        (status = 200, description = "A token pair", body = TokenPairResponse),
        crate::openapi::JsonBodyProblems,
        (status = 401, description = "INVALID_CREDENTIALS (unknown email and wrong password alike)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 429, description = "TOO_MANY_ATTEMPTS (too many attempts for the account, or failures from the client address), with Retry-After", body = crate::openapi::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds until the window ends"))),
        crate::openapi::ServerProblems,
    )
)]
pub async fn log_in(
    state: web::Data<AppState>,
    client: ClientAddr,
    body: ApiJson<LogInRequest>,
) -> Result<HttpResponse, ApiError> {
    let LogInRequest { email, password } = body.0;
    let mut errors = Vec::new();
    if email.len() > MAX_LOGIN_FIELD {
        errors.push(FieldError::new("email", format!("at most {MAX_LOGIN_FIELD} bytes")));
    }
    if password.len() > MAX_LOGIN_FIELD {
        errors.push(FieldError::new("password", format!("at most {MAX_LOGIN_FIELD} bytes")));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let pair = state
        .log_in
        .execute(LogInCommand {
            email,
            password,
            client: client.0,
        })
        .await
        .inspect_err(|e| match e {
            LogInError::InvalidCredentials => crate::metrics::count(crate::metrics::LOGIN_FAILURES, 1),
            LogInError::TooManyAttempts { .. } => crate::metrics::count(crate::metrics::LOGINS_THROTTLED, 1),
            LogInError::Infra(_) => {}
        })?;
    Ok(HttpResponse::Ok().json(TokenPairResponse::from(pair)))
}

/// Log out
///
/// Revokes the access token and its session, answering `204`. The body may
/// name a refresh token of another session of yours to end it too.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", operation_id = "logOut", request_body(content = Option<LogOutRequest>, description = "Optional: a refresh token of another session of yours to end too"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The access token and its session are revoked"),
        crate::openapi::JsonBodyProblems,
        (status = 401, response = crate::openapi::Unauthorized),
        crate::openapi::ServerProblems,
    )
)]
pub async fn log_out(
    state: web::Data<AppState>,
    caller: Authenticated,
    body: OptionalJson<LogOutRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0.unwrap_or_default();
    state.log_out.execute(&caller.0, body.refresh_token.as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Who am I
///
/// The account the access token belongs to.
#[utoipa::path(get, path = "/auth/me", tag = "auth", operation_id = "me", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = UserResponse,
            links(
                ("getBalance" = (operation_id = "getBalance", parameters(("userId" = "$response.body#/id")))),
                ("chargePoints" = (operation_id = "chargePoints", parameters(("userId" = "$response.body#/id"))))
            )),
        (status = 401, response = crate::openapi::Unauthorized),
        crate::openapi::ServerProblems,
    )
)]
pub async fn me(state: web::Data<AppState>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let user = state.get_me.execute(&caller.0).await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

/// Refresh tokens
///
/// Trades a refresh token for a new token pair; the presented refresh token
/// stops working. Presenting a used refresh token again revokes its session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", operation_id = "refresh", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair; the presented refresh token stops working", body = TokenPairResponse),
        crate::openapi::JsonBodyProblems,
        (status = 401, description = "UNAUTHORIZED, TOKEN_EXPIRED, or REFRESH_TOKEN_REUSED (the session is revoked)", body = crate::openapi::Problem, content_type = "application/problem+json"),
        crate::openapi::ServerProblems,
    )
)]
pub async fn refresh(state: web::Data<AppState>, body: ApiJson<RefreshRequest>) -> Result<HttpResponse, ApiError> {
    let pair = state.refresh_tokens.execute(&body.0.refresh_token).await?;
    Ok(HttpResponse::Ok().json(TokenPairResponse::from(pair)))
}
