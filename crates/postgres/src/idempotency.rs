//! The idempotency mechanism every idempotent operation shares.
//!
//! Inside the operation's own transaction, the statement that locks the
//! user's balance also claims the `(user, scope, key)` row, right after the
//! lock ([`lock_then_claim!`]). Every claim of a user's key is made holding
//! that user's row, so a claim never waits: a concurrent duplicate waits
//! for the row until the first transaction ends. If it committed, the
//! duplicate finds the stored outcome and replays it (or sees a different
//! fingerprint: `KeyReused`); if it rolled back (a failure), the duplicate
//! proceeds as the first. A wait that runs out is told apart by a probe
//! ([`ProbeKey`]): a duplicate still in flight is `KeyInUse`, a balance
//! busy with other requests a `503`. No lock service, no in-process lock:
//! correctness comes from the database, across any number of instances.
//! The effect then runs, and the operation's write stores its outcome
//! before the commit.

use std::time::Duration;

use coffee_domain::{IdempotencyContext, Idempotent};
use coffee_ports::{IdempotencyConflict, IdempotencyError, IdempotencyRecords, InfraError};
use diesel::OptionalExtension as _;
use diesel::QueryResult;
use diesel::connection::TransactionManagerStatus;
use diesel::sql_types::{Bool, Bytea, Interval, Jsonb, Text};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, TransactionManager};
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, try_join3};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connect::{Connection, WarningMark};
use crate::error;
use crate::pool::{PgConnection, PgPool};
use crate::sql::{Begin, Commit, Rollback, TakeTransactionId, statement};

/// The start of an idempotent write's first statement: `WITH` two CTEs.
/// `balance` is the user's row, locked until the transaction ends: every
/// change of one balance is serialised here, across all instances. `FOR NO
/// KEY UPDATE` is the lock an `UPDATE` of the balance takes, and does not
/// wait for the key-share locks that inserts referencing the user hold.
/// `claim` inserts the key's record with an empty outcome, a row when the
/// key is ours; it inserts from the locked row, so PostgreSQL runs it only
/// once the lock is held (and not at all when there is no such user).
///
/// The statement goes on with its reads and `EXISTS (SELECT FROM claim)`.
/// It reads the instant of the balance change, `clock_timestamp()`, in its
/// own select list, above `balance`: computed there, it is read after any
/// wait for the lock, so the clock orders a user's ledger exactly as the
/// locks serialised it. (Beside `point` in the locking query itself it
/// would be computed when the row is first scanned, before the wait, and a
/// holder that commits without changing the row does not make PostgreSQL
/// compute it again.) Binds: `$user`, `$scope`, `$key`, `$fingerprint`
/// ([`Claim`]).
macro_rules! lock_then_claim {
    () => {
        "WITH balance AS MATERIALIZED (SELECT point FROM users WHERE id = $user FOR NO KEY UPDATE), \
         claim AS (INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome) \
                   SELECT $user, $scope, $key, $fingerprint, 'null'::jsonb FROM balance \
                   ON CONFLICT DO NOTHING RETURNING true) "
    };
}
pub(crate) use lock_then_claim;

/// The key an operation's first statement claims ([`lock_then_claim!`]):
/// its `scope`, `key` and `fingerprint` binds (the `user` is the
/// operation's).
pub(crate) struct Claim {
    pub scope: String,
    pub key: String,
    pub fingerprint: Vec<u8>,
}

statement! {
    /// Whether a duplicate still in flight holds a key, asked once a lock
    /// wait has run out: the key inserted in a transaction of its own that
    /// is rolled back at once, waiting at most [`BriefWait`] for a holder.
    /// A wait that runs out again means a transaction that has not ended
    /// holds the key; a row (the key was free) or none (the key's outcome
    /// is stored) means the wait was for the balance.
    struct ProbeKey {
        user: uuid::Uuid = diesel::sql_types::Uuid,
        scope: String = Text,
        key: String = Text,
        fingerprint: Vec<u8> = Bytea,
    } returns Bool
        = "INSERT INTO idempotency_keys (user_id, scope, key, fingerprint, outcome) \
           VALUES ($user, $scope, $key, $fingerprint, 'null'::jsonb) ON CONFLICT DO NOTHING RETURNING true";
}

statement! {
    /// The probe's wait: a millisecond, for its transaction only.
    struct BriefWait {} returns Text = "SELECT set_config('lock_timeout', '1ms', true)";
}

statement! {
    /// How long a request may wait for a duplicate in flight: the session's
    /// `lock_timeout`, set once per connection (before `BEGIN`, so that it
    /// stays), and again only when a store with another wait uses it. Every
    /// lock wait of the session is bounded by it; one that runs out on a
    /// balance busy with other requests is a `503` like a statement timeout.
    struct SessionLockTimeout { wait: String = Text } returns Text = "SELECT set_config('lock_timeout', $wait, false)";
}

statement! {
    /// The record of a key the claim found taken: its fingerprint and
    /// stored outcome (none when it was purged meanwhile).
    struct StoredOutcome {
        user: uuid::Uuid = diesel::sql_types::Uuid,
        scope: String = Text,
        key: String = Text,
    } returns (Bytea, Jsonb)
        = "SELECT fingerprint, outcome FROM idempotency_keys WHERE user_id = $user AND scope = $scope AND key = $key";
}

statement! {
    /// Stores the outcome of a fresh claim, in the same transaction, when
    /// the outcome changes nothing else ([`Written::Unchanged`]). A write
    /// that changes something stores it in its own statement, with the same
    /// fields ([`Record::storing`]).
    pub(crate) struct StoreOutcome {
        user: uuid::Uuid = diesel::sql_types::Uuid,
        scope: String = Text,
        key: String = Text,
        outcome: serde_json::Value = Jsonb,
    } = "UPDATE idempotency_keys SET outcome = $outcome WHERE user_id = $user AND scope = $scope AND key = $key";
}

/// The record of a fresh claim, where its outcome is stored.
pub(crate) struct Record<'a> {
    context: &'a IdempotencyContext,
}

impl Record<'_> {
    /// The fields that store `outcome` in this record: a write's statement
    /// takes `scope`, `key` and `outcome` from them and ends with
    /// `UPDATE idempotency_keys SET outcome = $outcome WHERE user_id = $user
    /// AND scope = $scope AND key = $key` (its `user` is the record's).
    pub(crate) fn storing(&self, outcome: &impl Serialize) -> Result<StoreOutcome, InfraError> {
        let outcome = serde_json::to_value(outcome)
            .map_err(|e| InfraError::Unexpected(anyhow::Error::new(e).context("serialising an outcome")))?;
        let (user, scope, key) = record_of(self.context);
        Ok(StoreOutcome {
            user,
            scope,
            key,
            outcome,
        })
    }
}

/// What a fresh claim's operation came to.
pub(crate) enum Written<'c, O> {
    /// An outcome that changes nothing: it is stored on its own.
    Unchanged(O),
    /// An outcome, and the one statement that makes it so and stores it in
    /// the key's record ([`Record::storing`]): one statement, so the server
    /// answers it in one message and the request waits for one response.
    Changed(O, BoxFuture<'c, QueryResult<usize>>),
}

/// An operation made idempotent by [`run`], in two round trips: one
/// statement that locks the user's balance, claims the key and reads what
/// the operation needs (sent with `BEGIN`), then what it writes with the
/// stored outcome (sent with `COMMIT`). Between the two the adapter applies
/// the domain's rules to what it read, holding the locks its reads took.
pub(crate) trait IdempotentWrite: Send + Sync {
    /// What the first round trip reads.
    type Reads: Send;
    /// What the operation came to; stored and replayed.
    type Outcome: Serialize + DeserializeOwned + Send + Sync;

    /// The reads, in one statement that starts with [`lock_then_claim!`]
    /// (binds from `claim`), and whether the key is now this request's:
    /// `EXISTS (SELECT FROM claim)`, or true when there is no such user
    /// (nothing to claim for; [`IdempotentWrite::write`] decides what that
    /// comes to).
    fn read<'c>(&self, conn: &'c AsyncPgConnection, claim: Claim) -> BoxFuture<'c, QueryResult<(Self::Reads, bool)>>;

    /// Decides the outcome from the reads and returns the statement that
    /// makes it so and stores it in `record` (none for an outcome that
    /// changes nothing).
    fn write<'c>(
        &self,
        conn: &'c AsyncPgConnection,
        reads: Self::Reads,
        record: Record<'_>,
    ) -> Result<Written<'c, Self::Outcome>, InfraError>;
}

/// Reads the record of a key the claim found taken.
fn interpret<T: DeserializeOwned>(
    context: &IdempotencyContext,
    stored: Option<(Vec<u8>, serde_json::Value)>,
) -> Result<T, IdempotencyError> {
    match stored {
        Some((fingerprint, _)) if fingerprint.as_slice() != context.fingerprint.as_bytes().as_slice() => {
            Err(IdempotencyConflict::KeyReused.into())
        }
        Some((_, outcome)) => serde_json::from_value(outcome).map_err(|e| {
            InfraError::Unexpected(anyhow::Error::new(e).context("stored idempotent outcome is unreadable")).into()
        }),
        // Purged between the claim and the read: try again later.
        None => Err(IdempotencyConflict::KeyInUse.into()),
    }
}

/// Runs `operation` idempotently in one transaction of two round trips:
/// `BEGIN`, the claim of the key and the operation's reads; then its write
/// with the stored outcome, and `COMMIT` (or a `ROLLBACK` when the key replays a
/// stored outcome or is in conflict). Both idempotent adapters go through
/// here.
///
/// The transaction is driven by hand, not by diesel's transaction manager
/// (which spends a round trip on each of `BEGIN` and `COMMIT`). Its
/// connection goes back to the pool only once its end is confirmed: if the
/// request is cancelled midway (a client reset), or the end is unknown,
/// [`OpenTransaction`] closes the connection at once and cancels what the
/// server still runs for it, so the server rolls back now and no row stays
/// locked for a connection that sits in the pool.
pub(crate) async fn run<W: IdempotentWrite>(
    pool: &PgPool,
    context: &IdempotencyContext,
    wait: Duration,
    operation: W,
) -> Result<Idempotent<W::Outcome>, IdempotencyError> {
    let mut open = OpenTransaction::begin(pool, pool.get().await?);
    let mark = open.warning_mark();
    // The claim's wait, when this connection's session has another.
    let wait_ms = u64::try_from(wait.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, i32::MAX as u64);
    let set_wait = (open.connection_ref().lock_timeout_ms() != Some(wait_ms)).then_some(wait_ms);
    let (result, ended, wait_set) =
        transact(open.connection(), context, set_wait, pool.commit_deadline(), &operation).await;
    if wait_set {
        open.connection_ref().note_lock_timeout_ms(wait_ms);
    }
    if result.is_ok() && !open.replicated_since(mark) {
        // The commit's wait for the synchronous standby was cancelled.
        return Err(error::unreplicated_commit().into());
    }
    let result = match result {
        Err(IdempotencyError::Infra(e)) => Err(IdempotencyError::Infra(error::settle(open.connection_ref(), e).await)),
        other => other,
    };
    if ended {
        open.ended();
    }
    result
}

/// A pooled connection whose transaction is driven by hand. Dropped before
/// [`OpenTransaction::ended`] (the request's future was cancelled, or the
/// transaction's end was not confirmed), it discards the connection
/// ([`PgPool::discard`]) instead of returning it to the pool.
struct OpenTransaction<'p> {
    pool: &'p PgPool,
    conn: Option<PgConnection>,
}

impl<'p> OpenTransaction<'p> {
    fn begin(pool: &'p PgPool, mut conn: PgConnection) -> Self {
        // Also marked broken for the pool, so that it could never be handed
        // out again mid-transaction even if it were returned.
        AnsiTransactionManager::transaction_manager_status_mut(&mut **conn).set_in_error();
        Self { pool, conn: Some(conn) }
    }

    fn connection(&mut self) -> &mut AsyncPgConnection {
        match self.conn.as_mut() {
            Some(conn) => conn,
            None => unreachable!("the connection is only taken by `ended` or on drop"),
        }
    }

    fn connection_ref(&self) -> &Connection {
        match self.conn.as_ref() {
            Some(conn) => conn,
            None => unreachable!("the connection is only taken by `ended` or on drop"),
        }
    }

    fn warning_mark(&self) -> WarningMark {
        match self.conn.as_ref() {
            Some(conn) => conn.warning_mark(),
            None => unreachable!("the connection is only taken by `ended` or on drop"),
        }
    }

    fn replicated_since(&self, mark: WarningMark) -> bool {
        self.conn.as_ref().is_some_and(|conn| conn.replicated_since(mark))
    }

    /// The transaction committed or rolled back: the connection is clean and
    /// goes back to the pool.
    fn ended(mut self) {
        if let Some(mut conn) = self.conn.take() {
            *AnsiTransactionManager::transaction_manager_status_mut(&mut **conn) = TransactionManagerStatus::default();
        }
    }
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.discard(conn);
        }
    }
}

/// The transaction of [`run`]; also says whether it ended (committed or
/// rolled back), which makes the connection reusable, and whether it set
/// the session's `lock_timeout` to `set_wait`. The round trip that
/// commits is bounded by `commit_deadline`: `statement_timeout` does not end
/// a commit's wait for a synchronous standby, so without the bound a request
/// would hang for as long as the standby is away. Past it the connection is
/// discarded, which cancels the wait: the transaction is then kept on the
/// primary, unreplicated, and the request answered `503`.
async fn transact<W: IdempotentWrite>(
    conn: &AsyncPgConnection,
    context: &IdempotencyContext,
    set_wait: Option<u64>,
    commit_deadline: Duration,
    operation: &W,
) -> (Result<Idempotent<W::Outcome>, IdempotencyError>, bool, bool) {
    let mut q = conn;
    // Sent together, in this order: one round trip.
    let set_wait = set_wait.map(|ms| SessionLockTimeout { wait: ms.to_string() }.get_result::<String>(&mut q));
    let set_wait = async move {
        match set_wait {
            Some(set) => set.await.map(|_| true),
            None => Ok(false),
        }
    };
    let begin = Begin {}.execute(&mut q);
    let reads = operation.read(conn, claim_of(context));
    let (wait_set, began, reads) = futures_util::future::join3(set_wait, begin, reads).await;
    let (wait_set, decided) = match wait_set {
        Ok(wait_set) => (wait_set, decide(conn, operation, context, began, reads)),
        Err(e) => (false, Decided::Failed(IdempotencyError::from(error::from_diesel(e)))),
    };
    let (result, ended) = end(conn, context, commit_deadline, decided).await;
    (result, ended, wait_set)
}

/// The key of `context`'s record in `idempotency_keys`: user, scope, key.
fn record_of(context: &IdempotencyContext) -> (uuid::Uuid, String, String) {
    (
        context.user_id.as_uuid(),
        context.scope.as_str().to_owned(),
        context.key.as_str().to_owned(),
    )
}

/// What an operation's first statement claims for `context`.
fn claim_of(context: &IdempotencyContext) -> Claim {
    let (_, scope, key) = record_of(context);
    Claim {
        scope,
        key,
        fingerprint: context.fingerprint.as_bytes().to_vec(),
    }
}

/// What the first round trip came to.
enum Decided<'c, O> {
    /// The key is this request's: the operation's write.
    Fresh(Written<'c, O>),
    /// The key's outcome is stored: it is read and replayed.
    Taken,
    /// The wait for the user's row ran out: a duplicate in flight holds it,
    /// or other requests keep the balance busy ([`ProbeKey`] tells which).
    WaitRanOut(diesel::result::Error),
    /// Neither: the request fails with this.
    Failed(IdempotencyError),
}

fn decide<'c, W: IdempotentWrite>(
    conn: &'c AsyncPgConnection,
    operation: &W,
    context: &IdempotencyContext,
    began: QueryResult<usize>,
    reads: QueryResult<(W::Reads, bool)>,
) -> Decided<'c, W::Outcome> {
    match (began, reads) {
        (Ok(_), Err(e)) if error::is_lock_timeout(&e) => Decided::WaitRanOut(e),
        (Err(e), _) | (_, Err(e)) => Decided::Failed(IdempotencyError::from(error::from_diesel(e))),
        (Ok(_), Ok((reads, true))) => match operation.write(conn, reads, Record { context }) {
            Ok(written) => Decided::Fresh(written),
            Err(e) => Decided::Failed(e.into()),
        },
        (Ok(_), Ok((_, false))) => Decided::Taken,
    }
}

/// The second round trip: the write with the stored outcome, and `COMMIT`; or
/// the stored record of a taken key and `COMMIT`; or `ROLLBACK` (and the
/// probe, when a wait ran out). Also says whether the transaction ended.
async fn end<O: Serialize + DeserializeOwned>(
    conn: &AsyncPgConnection,
    context: &IdempotencyContext,
    commit_deadline: Duration,
    decided: Decided<'_, O>,
) -> (Result<Idempotent<O>, IdempotencyError>, bool) {
    let mut q = conn;
    match decided {
        Decided::Fresh(written) => {
            let (outcome, write) = match written {
                Written::Changed(outcome, write) => (outcome, write),
                Written::Unchanged(outcome) => match (Record { context }).storing(&outcome) {
                    Ok(store) => (outcome, store.execute(&mut q)),
                    Err(error) => return (Err(error.into()), Rollback {}.execute(&mut q).await.is_ok()),
                },
            };
            let last = futures_util::future::try_join(write, Commit {}.execute(&mut q));
            match tokio::time::timeout(commit_deadline, last).await {
                Ok(Ok(_)) => (Ok(Idempotent::Fresh(outcome)), true),
                // Whether COMMIT ran is unknown: the connection is dropped.
                Ok(Err(e)) => (Err(error::from_diesel(e).into()), false),
                Err(_) => (Err(error::commit_wait_exceeded(commit_deadline).into()), false),
            }
        }
        // Taken, by a request that has ended: its record is read in a
        // statement of its own, which sees the commit a duplicate waited
        // for. The transaction (which wrote nothing) commits with an id, so
        // that the commit waits for the synchronous standby like any write:
        // a stored outcome is answered only once the standby has everything
        // up to it, even when the first answer was a `503` because that wait
        // was cancelled ([`run`]).
        Decided::Taken => {
            let (user, scope, key) = record_of(context);
            let ended = try_join3(
                StoredOutcome { user, scope, key }
                    .get_result::<(Vec<u8>, serde_json::Value)>(&mut q)
                    .map(|read| read.optional()),
                TakeTransactionId {}.execute(&mut q),
                Commit {}.execute(&mut q),
            );
            match tokio::time::timeout(commit_deadline, ended).await {
                Ok(Ok((stored, _, _))) => (interpret(context, stored).map(Idempotent::Replayed), true),
                Ok(Err(e)) => (Err(error::from_diesel(e).into()), false),
                Err(_) => (Err(error::commit_wait_exceeded(commit_deadline).into()), false),
            }
        }
        Decided::WaitRanOut(waited) => probe(conn, context, waited).await,
        Decided::Failed(e) => (Err(e), Rollback {}.execute(&mut q).await.is_ok()),
    }
}

/// After a wait for the user's row ran out: rolls back, and asks whether a
/// duplicate in flight holds the key ([`ProbeKey`], in a transaction of its
/// own, rolled back too; one round trip). If one does the answer is
/// `KeyInUse`, as when the first request is still running; otherwise the
/// balance was busy with other requests, and the wait is a `503`. Only this
/// path costs the probe; a duplicate whose first request ends within the
/// wait replays its outcome as usual.
async fn probe<O>(
    conn: &AsyncPgConnection,
    context: &IdempotencyContext,
    waited: diesel::result::Error,
) -> (Result<Idempotent<O>, IdempotencyError>, bool) {
    let mut q = conn;
    let Claim {
        scope,
        key,
        fingerprint,
    } = claim_of(context);
    let user = context.user_id.as_uuid();
    let (_, _, _, probed, ended) = futures_util::future::join5(
        Rollback {}.execute(&mut q),
        Begin {}.execute(&mut q),
        BriefWait {}.get_result::<String>(&mut q),
        ProbeKey {
            user,
            scope,
            key,
            fingerprint,
        }
        .load::<bool>(&mut q),
        Rollback {}.execute(&mut q),
    )
    .await;
    let result = match probed {
        Err(e) if error::is_lock_timeout(&e) => Err(IdempotencyConflict::KeyInUse.into()),
        _ => Err(IdempotencyError::from(error::from_diesel(waited))),
    };
    (result, ended.is_ok())
}

/// [`IdempotencyRecords`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgIdempotencyRecords {
    pool: PgPool,
}

impl PgIdempotencyRecords {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl IdempotencyRecords for PgIdempotencyRecords {
    /// Deletes in short batches ([`crate::sql::purge_in_batches`]).
    async fn purge_older_than(&self, retention: Duration) -> Result<u64, InfraError> {
        crate::sql::purge_in_batches(&self.pool, || {
            crate::sql::query!(
                "WITH gone AS (DELETE FROM idempotency_keys WHERE ctid IN \
                 (SELECT ctid FROM idempotency_keys WHERE created_at < now() - $1::interval LIMIT $2) RETURNING 1) \
                 SELECT count(*) AS n FROM gone",
            )
            .into_boxed()
            .bind::<Interval, _>(crate::sql::interval(retention))
        })
        .await
    }
}
