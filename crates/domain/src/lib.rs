//! Pure business types and rules of the coffee order service.
//!
//! Nothing here performs I/O, awaits, or knows about HTTP, SQL or Redis: values
//! are validated when they are built (`Points::new`, `Email::parse`, ...) so
//! that every other layer can trust them.

pub mod auth;
pub mod idempotency;
pub mod menu;
pub mod order;
pub mod outbox;
pub mod page;
pub mod points;
pub mod popular;
pub mod user;

pub use auth::{Principal, SessionId, TOKEN_LEEWAY, TokenClaims, TokenId, TokenKind, TokenPair};
pub use idempotency::{
    Fingerprint, IdempotencyContext, IdempotencyKey, IdempotencyKeyError, IdempotencyScope, Idempotent,
};
pub use menu::{Menu, MenuId, MenuName};
pub use order::{
    MAX_ORDER_LINES, MAX_QUANTITY, OrderDraft, OrderLine, OrderPlacedEvent, OrderPlacedItem, OrderRequest,
    OrderRequestError, PlaceOrderOutcome, PlacedOrder, PopularMenu, PricingError,
};
pub use outbox::{DeadEvent, DeliveryResult, OutboxMessage, OutboxStats, RetryPolicy};
pub use page::{Cursor, Page, PageSize};
pub use points::{
    Charge, ChargeAmount, ChargeLimits, ChargeOutcome, PointTransaction, Points, PointsError, TransactionKind,
};
pub use user::{Email, EmailError, Password, PasswordError, PasswordHash, User, UserId, UserName, UserNameError};
