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
         result_desc, settled_by, needs_review, created_at, updated_at, settled_at, callback_token_hash, api_key_id"
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
mod jobs;
mod keys;
mod postgres;
mod reads;
pub mod sql;
mod sqlite;
mod tx;
mod writes;

/// [`payment_columns!`] as a constant, for the backends' hot-path statements.
const PAYMENT_COLUMNS: &str = payment_columns!();
/// How many columns [`PAYMENT_COLUMNS`] names.
const PAYMENT_COLUMN_COUNT: usize = 23;

use crate::payment::{Payment, PaymentId, Status};
use crate::settlement::{Current, Decision, Outcome};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or written (disk full, locked, gone). Retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was broken.
    #[error("{0}")]
    Conflict(String),
    /// The database holds something this version cannot read.
    #[error("unexpected data in the database: {0}")]
    Corrupt(String),
}

/// The columns settlement needs, read on the callback hot path instead of the whole row.
#[derive(Debug)]
struct Settling {
    id: PaymentId,
    status: Status,
    amount: u32,
    phone: String,
    checkout_request_id: Option<String>,
    receipt: Option<String>,
    result_code: Option<String>,
    settled_by: Option<crate::payment::SettledBy>,
}

impl Settling {
    /// From `SELECT id, status, amount, phone, checkout_request_id, receipt, result_code,
    /// settled_by`.
    fn from_cells(row: &[sql::Cell]) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(what.to_owned());
        let [id, status, amount, phone, checkout_request_id, receipt, result_code, settled_by] = row else {
            return Err(corrupt("a settling row has the wrong columns"));
        };
        Ok(Self {
            id: PaymentId::from_db(id.text()),
            status: Status::parse(&status.text()).ok_or_else(|| corrupt("unknown status"))?,
            amount: u32::try_from(amount.int()).map_err(|_| corrupt("amount out of range"))?,
            phone: phone.text(),
            checkout_request_id: checkout_request_id.opt_text(),
            receipt: receipt.opt_text(),
            result_code: result_code.opt_text(),
            settled_by: settled_by
                .opt_text()
                .map(|s| crate::payment::SettledBy::parse(&s).ok_or_else(|| corrupt("unknown settled_by")))
                .transpose()?,
        })
    }

    fn current(&self) -> Current<'_> {
        Current {
            status: self.status,
            amount: self.amount,
            phone: &self.phone,
            checkout_request_id: self.checkout_request_id.as_deref(),
            // Callbacks are matched by CheckoutRequestID alone.
            merchant_request_id: None,
            receipt: self.receipt.as_deref(),
            result_code: self.result_code.as_deref(),
            settled_by: self.settled_by,
        }
    }
}

/// A payment that cannot be written as JSON (for its webhook) is not what this version stored.
fn unserialisable(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("a payment cannot be serialised: {e}"))
}

/// Whether a text holds a NUL character, which PostgreSQL cannot store or compare: a lookup
/// by such a text finds nothing, on either backend, rather than failing.
pub(crate) fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// What a callback is, before anything is written: malformed, an orphan (no payment has its
/// token), or the settlement rules' decision for its payment.
fn callback_decision(
    parsed: &Result<daraja::StkCallback, daraja::CallbackError>,
    payment: Option<Current<'_>>,
) -> Decision {
    match (parsed, payment) {
        (Err(e), _) => Decision { outcome: Outcome::Malformed, change: None, note: e.to_string() },
        (Ok(_), None) => {
            Decision { outcome: Outcome::Orphan, change: None, note: "no payment has this callback token".into() }
        }
        (Ok(cb), Some(p)) => crate::settlement::on_callback(&p, cb),
    }
}

/// Each schema version's SQL and what it brought, in order. Versions 1, 2 and 6 differ by
/// backend (6 is a no-op on PostgreSQL); the others are one text for both. Every version has
/// a text for each backend, so one cannot be applied to one backend only.
fn migrations(v1: &'static str, v2: &'static str, v6: &'static str) -> [(&'static str, &'static str); 7] {
    [
        (v1, "created"),
        (v2, "webhooks"),
        (include_str!("schema_v3.sql"), "emails, checkout sessions"),
        (include_str!("schema_v4.sql"), "admin"),
        (include_str!("schema_v5.sql"), "one index fewer on callbacks"),
        (v6, "CHECK constraints SQLite evaluates without a temporary table"),
        (include_str!("schema_v7.sql"), "review index, unmatched callback counts, sign-in attempts"),
    ]
}

/// What the settlement rules look at, from a whole payment.
fn current(p: &Payment) -> Current<'_> {
    Current {
        status: p.status,
        amount: p.amount,
        phone: &p.phone,
        checkout_request_id: p.checkout_request_id.as_deref(),
        merchant_request_id: p.merchant_request_id.as_deref(),
        receipt: p.receipt.as_deref(),
        result_code: p.result_code.as_deref(),
        settled_by: p.settled_by,
    }
}

/// A new payment row, written `pending` before the push.
#[derive(Debug, Clone)]
pub struct NewPayment {
    /// Its id.
    pub id: PaymentId,
    /// The API key that asked for it.
    pub api_key_id: String,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the validated request, to tell a retry from a different request.
    pub request_hash: String,
    /// Shillings.
    pub amount: u32,
    /// 12 digits.
    pub phone: String,
    /// AccountReference.
    pub account_reference: String,
    /// TransactionDesc.
    pub description: String,
    /// Merchant data.
    pub metadata: serde_json::Value,
    /// Webhook override.
    pub webhook_url: Option<String>,
    /// Receipt email.
    pub customer_email: Option<String>,
    /// SHA-256 of the callback token (the token itself is never stored).
    pub callback_token_hash: String,
    /// Creation time, ms.
    pub now: i64,
    /// A pending payment for the phone created since this time (ms) means a live prompt.
    pub live_prompt_since: i64,
    /// Count the phone's payments created since this time (ms) against `per_phone_limit`.
    pub per_phone_since: i64,
    /// Most payments per phone in the window.
    pub per_phone_limit: u32,
    /// The checkout session attempt it is made for: the session learns of it in the same
    /// commit that stores it, before any push or event about it.
    pub checkout: Option<CheckoutAttempt>,
}

/// A checkout session and which of its attempts a payment is.
#[derive(Debug, Clone)]
pub struct CheckoutAttempt {
    /// The session.
    pub session_id: String,
    /// 1 for the session's first payment, then one more for each.
    pub attempt: u32,
}

/// What inserting a payment did.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// A new row.
    Created(Payment),
    /// The idempotency key was used before; the stored payment and its request hash.
    Existing(Payment, String),
    /// The phone has a live prompt: nothing was written.
    PhoneBusy,
    /// The phone had this many payments in the window: nothing was written.
    TooManyForPhone(u32),
}

/// How the push went, recorded on the payment.
#[derive(Debug, Clone)]
pub enum PushResult {
    /// Daraja accepted it: the ids to match the callback and to query.
    Accepted {
        /// MerchantRequestID.
        merchant_request_id: String,
        /// CheckoutRequestID.
        checkout_request_id: String,
        /// When to first query if no callback arrives (ms).
        first_check_at: i64,
    },
    /// Daraja refused it: the payment fails with Daraja's code and message.
    Refused {
        /// Daraja's errorCode (or a local code).
        code: String,
        /// Daraja's errorMessage.
        message: String,
    },
    /// The request may or may not have reached Safaricom: stays pending for the callback or
    /// reconciliation.
    Unknown {
        /// What went wrong.
        error: String,
        /// When to first query (ms).
        first_check_at: i64,
    },
}

/// A callback as received, before anything is known about it.
#[derive(Debug, Clone)]
pub struct IncomingCallback {
    /// SHA-256 of the token in the URL.
    pub token_hash: String,
    /// The raw body, stored whatever it holds.
    pub body: Vec<u8>,
    /// The sender's address.
    pub source: Option<String>,
    /// Receive time, ms.
    pub received_at: i64,
    /// The body parsed (or why not).
    pub parsed: Result<daraja::StkCallback, daraja::CallbackError>,
    /// If no payment takes it: whether an excerpt of it is stored (within the budget for such
    /// callbacks), or it is only counted (see [`UNMATCHED_EXCERPT_BYTES`]).
    pub keep_if_unmatched: bool,
}

/// What is stored of a callback no payment took: its first bytes. Every real STK callback is
/// smaller; beyond this a body is junk, and the note gives its size and SHA-256.
pub const UNMATCHED_EXCERPT_BYTES: usize = 4096;

/// What is stored of the body of a callback no payment took: at most
/// [`UNMATCHED_EXCERPT_BYTES`], with its size and SHA-256 added to `note` when cut.
fn unmatched_excerpt<'b>(body: &'b [u8], note: &mut String) -> &'b [u8] {
    if body.len() <= UNMATCHED_EXCERPT_BYTES {
        return body;
    }
    note.push_str(&format!(
        " (the first {UNMATCHED_EXCERPT_BYTES} of {} bytes kept; SHA-256 {})",
        body.len(),
        crate::ids::sha256_hex(body)
    ));
    &body[..UNMATCHED_EXCERPT_BYTES]
}

/// What a settlement keeps of a callback, decided here for every backend.
enum Kept<'a> {
    /// Its row.
    Row(CallbackRow<'a>),
    /// Only a count: no payment took it, and the budget for storing such callbacks is spent.
    Counted(Tally),
}

/// A callback's row: the body (cut to an excerpt when no payment took it), its outcome and
/// the decision's note.
struct CallbackRow<'a> {
    received_at: i64,
    payment_id: Option<&'a str>,
    token_hash: &'a str,
    source: Option<&'a str>,
    checkout_request_id: Option<&'a str>,
    outcome: &'static str,
    note: String,
    body: &'a [u8],
}

/// A callback counted instead of stored: tallied under its minute (ms, the minute's start).
#[derive(Debug, Clone, Copy)]
struct Tally {
    minute: i64,
    bytes: i64,
    at: i64,
}

/// What to keep of `incoming`, given the payment that took it (if any), its outcome and its
/// decision's note.
fn kept<'a>(
    incoming: &'a IncomingCallback,
    payment_id: Option<&'a PaymentId>,
    outcome: Outcome,
    note: String,
) -> Kept<'a> {
    let (note, body) = if payment_id.is_some() {
        (note, incoming.body.as_slice())
    } else if incoming.keep_if_unmatched {
        let mut note = note;
        let body = unmatched_excerpt(&incoming.body, &mut note);
        (note, body)
    } else {
        let at = incoming.received_at;
        let bytes = i64::try_from(incoming.body.len()).unwrap_or(i64::MAX);
        return Kept::Counted(Tally { minute: at - at.rem_euclid(60_000), bytes, at });
    };
    Kept::Row(CallbackRow {
        received_at: incoming.received_at,
        payment_id: payment_id.map(PaymentId::as_str),
        token_hash: &incoming.token_hash,
        source: incoming.source.as_deref(),
        checkout_request_id: incoming.parsed.as_ref().ok().map(|cb| cb.checkout_request_id.as_str()),
        outcome: outcome.as_str(),
        note,
        body,
    })
}

/// What storing a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackStored {
    /// Classification.
    pub outcome: Outcome,
    /// False when no payment took it and it was only counted, beyond the storage budget.
    pub stored: bool,
    /// The payment it belongs to, if found.
    pub payment_id: Option<PaymentId>,
    /// The payment's status after it.
    pub status: Option<Status>,
}

/// One entry of a payment's timeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    /// Time (RFC 3339).
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub at: i64,
    /// What kind (`created`, `push_accepted`, `callback_applied`, …).
    pub kind: String,
    /// Details.
    pub detail: serde_json::Value,
}

/// A stored callback body with its classification.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredCallback {
    /// Row id.
    pub id: i64,
    /// Receive time.
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub received_at: i64,
    /// Payment, if matched.
    pub payment_id: Option<String>,
    /// Classification.
    pub outcome: String,
    /// Why.
    pub note: String,
    /// Sender address.
    pub source: Option<String>,
    /// Raw body (lossy UTF-8).
    pub body: String,
}

/// A pending payment due for an STK Query, leased to one worker.
#[derive(Debug, Clone)]
pub struct DueCheck {
    /// The payment.
    pub id: PaymentId,
    /// Its CheckoutRequestID.
    pub checkout_request_id: String,
    /// Queries made so far.
    pub attempts: u32,
    /// Creation time, ms.
    pub created_at: i64,
}

/// A webhook event due for delivery, leased to one worker.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    /// Event id (`evt_…`), stable across retries.
    pub id: String,
    /// The payment it is about.
    pub payment_id: String,
    /// The API key whose secret signs it.
    pub api_key_id: String,
    /// `payment.paid`, …
    pub event_type: String,
    /// The payment's own webhook URL, if it gave one.
    pub url: Option<String>,
    /// The exact body to send.
    pub payload: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Created, ms.
    pub created_at: i64,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WebhookAttempt {
    /// The event.
    #[serde(skip)]
    pub event_id: String,
    /// When.
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub at: i64,
    /// Where (shown by the one redaction rule, [`crate::redact`]).
    #[serde(serialize_with = "crate::redact::serialize")]
    pub url: String,
    /// HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Time to the answer.
    pub latency_ms: i64,
    /// Transport error, if no answer came.
    pub error: Option<String>,
    /// The start of the answer's body.
    pub response: String,
}

/// What happens to an event after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookNext {
    /// Acknowledged with 2xx.
    Delivered,
    /// Try again at this time (ms).
    RetryAt(i64),
    /// Given up: older than the maximum age.
    Dead,
    /// No URL to send it to.
    NoEndpoint,
}

/// A webhook event with its attempts, for the API and the CLI.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WebhookEvent {
    /// Event id.
    pub id: String,
    /// Payment.
    pub payment_id: String,
    /// Type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// `pending`, `delivered`, `dead` or `no_endpoint`.
    pub status: String,
    /// Created.
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub created_at: i64,
    /// Delivered.
    #[serde(serialize_with = "crate::time_fmt::opt_millis")]
    pub delivered_at: Option<i64>,
    /// Every attempt, oldest first.
    pub attempts: Vec<WebhookAttempt>,
}

/// A hosted checkout session: what the customer is asked to pay, and where to send them after.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckoutSession {
    /// `cs_…`, unguessable: it is the customer's only credential.
    pub id: String,
    /// The merchant's API key.
    #[serde(skip)]
    pub api_key_id: String,
    /// Shillings.
    pub amount: u32,
    /// AccountReference for the push.
    pub account_reference: String,
    /// TransactionDesc for the push; shown to the customer.
    pub description: String,
    /// Where "Return to shop" goes after payment (with `session_id`).
    pub success_url: String,
    /// Where "Back to shop" goes without payment.
    pub cancel_url: String,
    /// The phone, if the merchant knew it (12 digits).
    pub phone: Option<String>,
    /// Receipt email address.
    pub customer_email: Option<String>,
    /// Webhook URL for its payments (shown by the one redaction rule, [`crate::redact`]).
    #[serde(serialize_with = "crate::redact::serialize_opt")]
    pub webhook_url: Option<String>,
    /// Merchant data, copied to its payments.
    pub metadata: serde_json::Value,
    /// Created.
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub created_at: i64,
    /// After this the page is gone and no payment can start.
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub expires_at: i64,
    /// The latest payment attempt.
    pub payment_id: Option<String>,
    /// Payment attempts so far.
    pub attempts: u32,
}

/// A session to insert, with the idempotency data of the request that made it.
#[derive(Debug, Clone)]
pub struct NewCheckoutSession {
    /// The session.
    pub session: CheckoutSession,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the validated request.
    pub request_hash: String,
}

/// The result of inserting a session.
#[derive(Debug, Clone)]
pub enum SessionInserted {
    /// Newly created.
    Created(CheckoutSession),
    /// The idempotency key was used before, for the request with this hash.
    Existing(CheckoutSession, String),
}

/// A receipt email due to be sent, leased to one worker.
#[derive(Debug, Clone)]
pub struct EmailJob {
    /// `eml_…`.
    pub id: String,
    /// The payment it is the receipt of.
    pub payment_id: PaymentId,
    /// Address.
    pub recipient: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Created, ms.
    pub created_at: i64,
}

/// What happens to an email after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailNext {
    /// The SMTP server accepted it.
    Sent,
    /// Failed with this error; try again at this time (ms).
    RetryAt(i64, String),
    /// Failed with this error and too old to retry.
    Dead(String),
    /// Not sent, for this reason (no SMTP server configured).
    Skipped(String),
}

/// Filters for listing payments; all optional.
#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    /// Only this API key's payments.
    pub api_key_id: Option<String>,
    /// Status.
    pub status: Option<Status>,
    /// Phone (12 digits).
    pub phone: Option<String>,
    /// Account reference.
    pub reference: Option<String>,
    /// Receipt.
    pub receipt: Option<String>,
    /// Created at or after (ms).
    pub created_from: Option<i64>,
    /// Created before (ms).
    pub created_to: Option<i64>,
    /// This payment id.
    pub id: Option<String>,
    /// Amount at least (KES).
    pub min_amount: Option<u32>,
    /// Amount at most (KES).
    pub max_amount: Option<u32>,
    /// Only flagged (true) or unflagged (false) payments.
    pub needs_review: Option<bool>,
    /// Continue after this `(created_at, id)` (newest first).
    pub after: Option<(i64, String)>,
    /// Page size.
    pub limit: u32,
}

/// An API key as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApiKey {
    /// Id.
    pub id: String,
    /// Name given at creation.
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// Created.
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub created_at: i64,
    /// Revoked, if so.
    #[serde(serialize_with = "crate::time_fmt::opt_millis")]
    pub revoked_at: Option<i64>,
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
        )))
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

    /// Leases up to `limit` webhook events due at `now` until `lease_until`, oldest due first:
    /// at most `per_endpoint` for one URL (an event's own, or `""` for the default one), and
    /// none for the endpoints in `busy`: origins (`https://host:port`) whose URLs, whatever
    /// their path or query, are all left out (and `""` for the default URL). So one slow
    /// endpoint's backlog cannot fill a claim and keep the others' events waiting behind it.
    pub async fn claim_due_webhooks(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
        per_endpoint: u32,
        busy: Vec<String>,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        delegate!(self.claim_due_webhooks(now, lease_until, limit, per_endpoint, busy))
    }
}
