//! `/users/{userId}/points*`: charge, balance, ledger.

use actix_web::{HttpResponse, web};
use coffee_application::{ChargeCommand, ChargeError, PointQueryError};
use coffee_domain::{Charge, ChargeOutcome, PointTransaction, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::extract::ApiJson;
use crate::idempotency::{IdempotencyKeyHeader, mark_replayed, mark_replayed_problem};
use crate::json_time;
use crate::pagination::{CursorScope, PageQuery};
use crate::problem::{ApiError, FieldError, ProblemCode};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// JSON integers only: `1.5`, `"100"`, `1e9` and `null` fail to parse.
    #[schema(minimum = 1, maximum = 1_000_000, example = 10_000)]
    #[serde(deserialize_with = "crate::extract::whole_number")]
    pub amount: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargeResponse {
    pub user_id: Uuid,
    pub amount: i64,
    pub balance: i64,
    pub transaction_id: Uuid,
    #[serde(serialize_with = "json_time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub charged_at: OffsetDateTime,
}

impl From<Charge> for ChargeResponse {
    fn from(charge: Charge) -> Self {
        Self {
            user_id: charge.user_id.as_uuid(),
            amount: charge.amount.value(),
            balance: charge.balance.value(),
            transaction_id: charge.transaction_id,
            charged_at: charge.charged_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceResponse {
    pub user_id: Uuid,
    pub balance: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionResponse {
    pub id: Uuid,
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^(ADD|DEDUCT)$")]
    pub kind: &'static str,
    pub amount: i64,
    pub balance_after: i64,
    pub order_id: Option<Uuid>,
    #[serde(serialize_with = "json_time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<PointTransaction> for TransactionResponse {
    fn from(t: PointTransaction) -> Self {
        Self {
            id: t.id,
            kind: t.kind.as_str(),
            amount: t.amount.value(),
            balance_after: t.balance_after.value(),
            order_id: t.order_id,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionPageResponse {
    pub items: Vec<TransactionResponse>,
    pub next_cursor: Option<String>,
}

fn forbidden() -> ApiError {
    ApiError::new(ProblemCode::Forbidden, "You can only access your own points")
}

impl From<ChargeError> for ApiError {
    fn from(error: ChargeError) -> Self {
        match error {
            ChargeError::Forbidden => forbidden(),
            ChargeError::InvalidAmount { max } => ApiError::validation(vec![FieldError::new(
                "amount",
                format!("must be a whole number from 1 to {max}"),
            )]),
            ChargeError::Conflict(conflict) => conflict.into(),
            ChargeError::Infra(e) => e.into(),
        }
    }
}

impl From<PointQueryError> for ApiError {
    fn from(error: PointQueryError) -> Self {
        match error {
            PointQueryError::Forbidden => forbidden(),
            PointQueryError::NotFound => ApiError::new(ProblemCode::NotFound, "No such user"),
            PointQueryError::Infra(e) => e.into(),
        }
    }
}

/// Charge points
///
/// Adds points to the caller's own balance, answering `200` with the new
/// balance. Retrying with the same `Idempotency-Key` and body replays the
/// first response, including a stored `422` when the charge would take the
/// balance over its limit.
#[utoipa::path(post, path = "/users/{userId}/points/charge", tag = "points", operation_id = "chargePoints", request_body = ChargeRequest,
    security(("bearer" = [])),
    params(("userId" = uuid::Uuid, Path, description = "Must be the caller's own id"),
        IdempotencyKeyHeader),
    responses(
        (status = 200, description = "Charged (or the replay of the first response, with Idempotent-Replayed: true)", body = ChargeResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed response")),
            links(
                ("getBalance" = (operation_id = "getBalance", parameters(("userId" = "$response.body#/userId")))),
                ("listPointTransactions" = (operation_id = "listPointTransactions", parameters(("userId" = "$response.body#/userId"))))
            )),
        crate::openapi::JsonBodyProblems,
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::NotYourAccount),
        (status = 409, description = "IDEMPOTENCY_KEY_IN_USE", body = crate::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "BALANCE_LIMIT_EXCEEDED (stored and replayed) or IDEMPOTENCY_KEY_REUSED", body = crate::openapi::Problem, content_type = "application/problem+json"),
        crate::openapi::ServerProblems,
    )
)]
pub async fn charge(
    state: web::Data<AppState>,
    caller: Authenticated,
    user_id: web::Path<Uuid>,
    key: IdempotencyKeyHeader,
    body: ApiJson<ChargeRequest>,
) -> Result<HttpResponse, ApiError> {
    let command = ChargeCommand {
        user_id: UserId::from_uuid(user_id.into_inner()),
        amount: body.0.amount,
        key: key.0,
    };
    let outcome = state.charge_points.execute(&caller.0, command).await?;
    if outcome.is_replayed() {
        crate::metrics::record_replay("points.charge");
    }
    match outcome.as_inner() {
        ChargeOutcome::Charged(charge) => {
            if !outcome.is_replayed() {
                crate::metrics::count(crate::metrics::CHARGES, 1);
                crate::metrics::count(
                    crate::metrics::POINTS_CHARGED,
                    u64::try_from(charge.amount.value()).unwrap_or_default(),
                );
            }
            let mut response = HttpResponse::Ok().json(ChargeResponse::from(charge.clone()));
            mark_replayed(&outcome, &mut response);
            Ok(response)
        }
        ChargeOutcome::BalanceLimitExceeded {
            balance,
            amount,
            max_balance,
        } => {
            let problem = ApiError::new(
                ProblemCode::BalanceLimitExceeded,
                format!("Charging {amount} would take the balance of {balance} over the limit of {max_balance}"),
            )
            .with_extension("balance", balance.value())
            .with_extension("amount", amount.value())
            .with_extension("maxBalance", max_balance.value());
            Err(mark_replayed_problem(&outcome, problem))
        }
    }
}

/// Point balance
///
/// The caller's own point balance, as `userId` and `balance`.
#[utoipa::path(get, path = "/users/{userId}/points", tag = "points", operation_id = "getBalance",
    security(("bearer" = [])),
    params(("userId" = uuid::Uuid, Path, description = "Must be the caller's own id")),
    responses(
        (status = 200, description = "The balance", body = BalanceResponse),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::NotYourAccount),
        (status = 404, description = "NOT_FOUND: the account no longer exists", body = crate::openapi::Problem, content_type = "application/problem+json"),
        crate::openapi::ServerProblems,
    )
)]
pub async fn balance(
    state: web::Data<AppState>,
    caller: Authenticated,
    user_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId::from_uuid(user_id.into_inner());
    let balance = state.get_balance.execute(&caller.0, user).await?;
    Ok(HttpResponse::Ok().json(BalanceResponse {
        user_id: user.as_uuid(),
        balance: balance.value(),
    }))
}

/// Point history
///
/// The caller's own point ledger, newest first, a page at a time (`limit`
/// and `cursor`).
#[utoipa::path(get, path = "/users/{userId}/points/transactions", tag = "points", operation_id = "listPointTransactions",
    security(("bearer" = [])),
    params(("userId" = uuid::Uuid, Path, description = "Must be the caller's own id"), crate::pagination::PageQuery),
    responses(
        (status = 200, description = "The ledger, newest first", body = TransactionPageResponse),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::NotYourAccount),
        crate::openapi::ServerProblems,
    )
)]
pub async fn transactions(
    state: web::Data<AppState>,
    caller: Authenticated,
    user_id: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (size, cursor) = query.parse(&state.cursors, CursorScope::PointTransactions, caller.0.user_id)?;
    let user = UserId::from_uuid(user_id.into_inner());
    let page = state
        .list_point_transactions
        .execute(&caller.0, user, size, cursor)
        .await?;
    Ok(HttpResponse::Ok().json(TransactionPageResponse {
        items: page.items.into_iter().map(TransactionResponse::from).collect(),
        next_cursor: page.next.as_ref().map(|next| {
            state
                .cursors
                .seal(CursorScope::PointTransactions, caller.0.user_id, next)
        }),
    }))
}
