//! Storage: one interface, named for intentions (`settle_from_callback`, not `update_row`).
//!
//! SQLite (WAL, one writer thread with group commit) is the embedded default. Every write
//! runs inside the writer's transaction and is acknowledged only after the commit is durable.
//! Unique constraints enforce what must be unique: idempotency key per API key,
//! CheckoutRequestID, receipt number, callback token.

/// The columns a payment is read with, in the order the row readers take them.
macro_rules! payment_columns {
    () => {
        "id, status, amount, phone, account_reference, description, metadata, webhook_url, customer_email, \
         merchant_request_id, checkout_request_id, receipt, transaction_date, failure_reason, result_code, \
         result_desc, settled_by, needs_review, created_at, updated_at, settled_at, callback_token_hash, api_key_id, \
         paybill_account, amount_received, refunded_amount"
    };
}

/// The columns a checkout session is read with.
macro_rules! session_columns {
    () => {
        "id, api_key_id, amount, account_reference, description, success_url, cancel_url, phone, customer_email, \
         webhook_url, metadata, created_at, expires_at, payment_id, attempts"
    };
}

/// The columns a stored callback is read with.
macro_rules! callback_columns {
    () => {
        "id, received_at, payment_id, outcome, note, source, body"
    };
}

pub mod admin;
mod c2b;
mod callbacks;
mod checks;
mod jobs;
mod keys;
mod postgres;
mod reads;
mod refunds;
mod settle;
pub mod sql;
mod sqlite;
mod tx;
mod types;
mod writes;

/// [`payment_columns!`] as a constant, for the backends' hot-path statements.
const PAYMENT_COLUMNS: &str = payment_columns!();
/// How many columns [`PAYMENT_COLUMNS`] names.
const PAYMENT_COLUMN_COUNT: usize = 26;

use crate::payment::{Payment, PaymentId};
use crate::settlement::Decision;

pub use c2b::{C2bTransaction, ConfirmationStored, IncomingConfirmation, Resolved};
use callbacks::{Kept, Settling, Tally, callback_decision, current, kept};
pub use checks::{CheckAnswer, ReceiptCheck};
pub use postgres::PostgresStore;
pub use refunds::{MessageKind, MessageStored, NewRefund, Parsed, RefundInserted, RefundMessage, SendOutcome};
pub use sqlite::SqliteStore;
pub use types::*;

/// Storage failures: what went wrong in words, and the database's own error behind it, if
/// any ([`std::error::Error::source`]), so that logs keep the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or written (disk full, locked, gone). Retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Detail),
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(#[source] Detail),
    /// The database holds something this version cannot read.
    #[error("unexpected data in the database: {0}")]
    Corrupt(#[source] Detail),
}

impl StoreError {
    /// The database is unavailable, for the reason given.
    pub(crate) fn unavailable(why: impl std::fmt::Display) -> Self {
        Self::Unavailable(why.to_string().into())
    }

    /// The database holds something this version cannot read, as said.
    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string().into())
    }
}

/// Re-parses an amount as it is read back.
pub(crate) fn stored_amount(shillings: i64) -> Result<daraja::Amount, StoreError> {
    u64::try_from(shillings)
        .ok()
        .and_then(|a| daraja::Amount::new(a).ok())
        .ok_or_else(|| StoreError::corrupt(format_args!("amount {shillings} is out of range")))
}

/// Re-parses the shillings received by hand as they are read back.
pub(crate) fn received(shillings: i64) -> Result<u64, StoreError> {
    u64::try_from(shillings).map_err(|_| StoreError::corrupt(format_args!("amount received {shillings} is negative")))
}

/// Re-parses an id Daraja gave (a CheckoutRequestID, a receipt…) as it is read back: what
/// was stored typed comes back typed, and a stored value that no longer parses is corruption.
pub(crate) fn daraja_id<T>(
    text: Option<&str>,
    parse: fn(&str) -> Result<T, daraja::InvalidField>,
) -> Result<Option<T>, StoreError> {
    text.map(|t| parse(t).map_err(|e| StoreError::corrupt(format_args!("{}: {}", e.field, e.reason)))).transpose()
}

/// What a [`StoreError`] says, and the error that caused it.
#[derive(Debug)]
pub struct Detail {
    message: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Detail {
    /// `message`, caused by `cause`.
    pub fn caused_by(message: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { message: message.into(), cause: Some(Box::new(cause)) }
    }

    /// Whether the message says `text`.
    pub fn contains(&self, text: &str) -> bool {
        self.message.contains(text)
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Detail {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for Detail {
    fn from(message: String) -> Self {
        Self { message, cause: None }
    }
}

impl From<&str> for Detail {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

/// A payment that cannot be written as JSON (for its webhook) is not what this version stored.
fn unserialisable(e: serde_json::Error) -> StoreError {
    StoreError::corrupt(format_args!("a payment cannot be serialised: {e}"))
}

/// Whether a text holds a NUL character, which PostgreSQL cannot store or compare: a lookup
/// by such a text finds nothing, on either backend, rather than failing.
pub(crate) fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// Each schema version's SQL and what it brought, in order. Versions 1, 2 and 6 differ by
/// backend (6 is a no-op on PostgreSQL); the others are one text for both. Every version has
/// a text for each backend, so one cannot be applied to one backend only.
fn migrations(v1: &'static str, v2: &'static str, v6: &'static str) -> [(&'static str, &'static str); 10] {
    [
        (v1, "created"),
        (v2, "webhooks"),
        (include_str!("schema_v3.sql"), "emails, checkout sessions"),
        (include_str!("schema_v4.sql"), "admin"),
        (include_str!("schema_v5.sql"), "one index fewer on callbacks"),
        (v6, "CHECK constraints SQLite evaluates without a temporary table"),
        (include_str!("schema_v7.sql"), "review index, unmatched callback counts, sign-in attempts"),
        (include_str!("schema_v8.sql"), "Paybill and Till payments"),
        (include_str!("schema_v9.sql"), "refunds"),
        (include_str!("schema_v10.sql"), "merchant display names"),
    ]
}

/// The storage backend.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PostgresStore),
}

macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(s) => s.$method($($arg),*).await,
            Store::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Opens (and migrates) the database named by `url`: `sqlite:<path>` (or `sqlite::memory:`)
    /// or `postgres://user@host/db`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            return Ok(Self::Sqlite(SqliteStore::open(path).await?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PostgresStore::open(url).await?));
        }
        // Never echo the URL whole: it may hold a password.
        let scheme = url.split(':').next().unwrap_or("");
        Err(StoreError::Unavailable(format!(
            "DATABASE_URL with scheme {scheme:?} is not supported; use sqlite:<file> (e.g. sqlite:lipa.db) or postgres://…"
        ).into()))
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        delegate!(self.ping())
    }

    /// Completes, with the reason, once the store can no longer promise that what it commits
    /// reaches the disk (a failed flush of SQLite's files). It then takes no writes; the
    /// process should stop at once, without closing the store, so that a restart lets the
    /// database's recovery decide what is on disk. Never completes for PostgreSQL, whose
    /// server does this itself.
    pub async fn durability_lost(&self) -> String {
        match self {
            Store::Sqlite(s) => s.durability_lost().await,
            Store::Postgres(_) => std::future::pending().await,
        }
    }

    /// Inserts a pending payment, or returns the one with the same idempotency key.
    pub async fn insert_payment(&self, new: NewPayment) -> Result<Inserted, StoreError> {
        delegate!(self.insert_payment(new))
    }

    /// Records how the push went.
    pub async fn record_push(&self, id: &PaymentId, result: PushResult, now: i64) -> Result<Payment, StoreError> {
        delegate!(self.record_push(id.clone(), result, now))
    }

    /// Stores a callback and applies it, in one commit.
    pub async fn settle_from_callback(&self, incoming: IncomingCallback) -> Result<CallbackStored, StoreError> {
        delegate!(self.settle_from_callback(incoming))
    }

    /// Applies a query's final answer.
    pub async fn settle_from_query(
        &self,
        id: &PaymentId,
        result: daraja::QueryResult,
        now: i64,
    ) -> Result<Decision, StoreError> {
        delegate!(self.settle_from_query(id.clone(), result, now))
    }

    /// Expires pending payments created before `created_before`, except those with a
    /// CheckoutRequestID that were never queried or whose last STK Query failed (Daraja could
    /// not be asked), unless they were created before `failing_before`; returns their ids.
    pub async fn expire_overdue(
        &self,
        created_before: i64,
        failing_before: i64,
        now: i64,
    ) -> Result<Vec<PaymentId>, StoreError> {
        delegate!(self.expire_overdue(created_before, failing_before, now))
    }

    /// Records a customer's payment by hand (once per TransID) and applies it to the payment
    /// its account number names, in one commit.
    pub async fn settle_from_confirmation(
        &self,
        incoming: IncomingConfirmation,
    ) -> Result<ConfirmationStored, StoreError> {
        delegate!(self.settle_from_confirmation(incoming))
    }

    /// Which of these TransIDs are recorded already.
    pub async fn c2b_known(&self, trans_ids: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut known = std::collections::HashSet::new();
        for id in trans_ids {
            let rows =
                self.query("SELECT 1 FROM c2b_transactions WHERE trans_id = $1", vec![id.as_str().into()]).await?;
            if !rows.is_empty() {
                known.insert(id.clone());
            }
        }
        Ok(known)
    }

    /// The payment with this (normalised) Paybill account number.
    pub async fn payment_by_paybill_account(&self, account: &str) -> Result<Option<Payment>, StoreError> {
        let sql = concat!("SELECT ", payment_columns!(), " FROM payments WHERE paybill_account = $1");
        let rows = self.query(sql, vec![account.into()]).await?;
        rows.first().map(|r| reads::payment_from(r)).transpose()
    }

    /// Gives an unmatched C2B transaction to a payment (an operator's decision, audited).
    pub async fn assign_c2b(
        &self,
        trans_id: &str,
        payment_id: &PaymentId,
        actor: &str,
        note: &str,
        now: i64,
    ) -> Result<Resolved, StoreError> {
        let (trans_id, actor, note) = (trans_id.to_owned(), actor.to_owned(), note.to_owned());
        delegate!(self.assign_c2b(trans_id, payment_id.clone(), actor, note, now))
    }

    /// Marks an unmatched C2B transaction refunded outside Lipa (an operator's decision,
    /// audited).
    pub async fn c2b_refunded_outside(
        &self,
        trans_id: &str,
        actor: &str,
        note: &str,
        now: i64,
    ) -> Result<Resolved, StoreError> {
        let (trans_id, actor, note) = (trans_id.to_owned(), actor.to_owned(), note.to_owned());
        delegate!(self.c2b_refunded_outside(trans_id, actor, note, now))
    }

    /// Links unmatched C2B transactions to the STK payments they turned out to be, and
    /// announces (webhook `c2b.unmatched`) those received before `announce_before` that are
    /// still unmatched; returns how many of each.
    pub async fn sweep_unmatched(&self, announce_before: i64, now: i64) -> Result<(u64, u64), StoreError> {
        delegate!(self.sweep_unmatched(announce_before, now))
    }

    /// C2B transactions, newest first: all, or those with `status` (`unmatched`, …), at most
    /// `limit`, after the page that ended with `after` (received at, TransID) when given.
    pub async fn c2b_transactions(
        &self,
        status: Option<&str>,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<C2bTransaction>, StoreError> {
        let sql = format!(
            "SELECT {} FROM c2b_transactions WHERE ($1 = '' OR status = $1)
               AND (received_at < $2 OR (received_at = $2 AND trans_id < $3))
             ORDER BY received_at DESC, trans_id DESC LIMIT {limit}",
            c2b::C2B_COLUMNS
        );
        let (at, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = self.query(sql, vec![status.unwrap_or("").into(), at.into(), id.into()]).await?;
        rows.iter().map(|r| c2b::c2b_from(r)).collect()
    }

    /// A value chosen once per installation: the one stored under `key`, or `candidate`,
    /// stored now (by whichever process gets there first).
    pub async fn installation_value(&self, key: &str, candidate: &str) -> Result<String, StoreError> {
        self.execute_all(vec![(
            "INSERT INTO installation (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            vec![key.into(), candidate.into()],
        )])
        .await?;
        let rows = self.query("SELECT value FROM installation WHERE key = $1", vec![key.into()]).await?;
        rows.first()
            .map(|r| r[0].text())
            .ok_or_else(|| StoreError::corrupt(format_args!("installation value {key} vanished")))
    }

    /// Inserts a checkout session, or finds the one made earlier with the same idempotency key.
    pub async fn insert_checkout_session(&self, new: NewCheckoutSession) -> Result<SessionInserted, StoreError> {
        delegate!(self.insert_checkout_session(new))
    }

    /// Runs a read-only statement (`$1` placeholders) and returns its rows.
    pub async fn query(
        &self,
        sql: impl Into<std::borrow::Cow<'static, str>>,
        args: Vec<sql::Arg>,
    ) -> Result<sql::Rows, StoreError> {
        delegate!(self.query(sql.into(), args))
    }

    /// Runs one writing statement (`UPDATE … RETURNING`, see [`sql`]) in its own transaction
    /// and returns its rows.
    pub async fn execute_returning(&self, sql: &'static str, args: Vec<sql::Arg>) -> Result<sql::Rows, StoreError> {
        delegate!(self.execute_returning(sql, args))
    }

    /// Completes once everything committed so far is durable. A SQLite reader may see a
    /// commit before its flush ends; PostgreSQL shows only what is durable already.
    pub async fn wait_until_durable(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.wait_until_durable().await,
            Store::Postgres(_) => Ok(()),
        }
    }

    /// Runs statements in one transaction; returns the rows each changed.
    pub async fn execute_all(&self, statements: Vec<sql::Statement>) -> Result<Vec<u64>, StoreError> {
        delegate!(self.execute_all(statements))
    }
}
