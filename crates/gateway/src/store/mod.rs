//! Storage: one interface, named for intentions (`settle_from_callback`, not `update_row`).
//!
//! SQLite (WAL, one writer thread with group commit) is the embedded default. Every write
//! runs inside the writer's transaction and is acknowledged only after the commit is durable.
//! Unique constraints enforce what must be unique: idempotency key per API key,
//! CheckoutRequestID, receipt number, callback token.

pub mod admin;
mod postgres;
pub mod sql;
mod sqlite;

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

/// Whether a text holds a NUL character, which PostgreSQL cannot store or compare: a lookup
/// by such a text finds nothing, on either backend, rather than failing.
pub(crate) fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// The webhook event a settlement decision announces, if any: a new state, a receipt added
/// later, or something staff must review.
fn announcement(outcome: Outcome, before: Status, after: Status) -> Option<&'static str> {
    if after != before {
        return Some(match after {
            Status::Paid => "payment.paid",
            Status::Failed => "payment.failed",
            Status::Expired => "payment.expired",
            Status::Pending => return None,
        });
    }
    match outcome {
        Outcome::ReceiptAdded => Some("payment.receipt_added"),
        o if o.needs_review() => Some("payment.needs_review"),
        _ => None,
    }
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

/// A settlement's timeline entry: its kind (`callback_applied`, `query_duplicate`, …) and detail.
fn settlement_event(source: &str, decision: &Decision, status: Status) -> (String, serde_json::Value) {
    (
        format!("{source}_{}", decision.outcome.as_str()),
        serde_json::json!({"note": decision.note, "status": status.as_str()}),
    )
}

/// The timeline note of an expiry. When the push's answer never came (the request timed out,
/// or the process died while sending it) Daraja may still have prompted the customer, and
/// without its CheckoutRequestID it cannot be asked: such a payment is also flagged for review.
fn expiry_note(push_unheard: bool) -> serde_json::Value {
    let note = if push_unheard {
        "no conclusive answer in time; the push's answer was lost, so Daraja may have prompted the customer \
         and cannot be asked: check the M-Pesa statement for this phone and amount"
    } else {
        "no conclusive answer in time"
    };
    serde_json::json!({"note": note, "needs_review": push_unheard})
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

/// A pending payment may expire once Daraja has been asked about it (or cannot be: no
/// CheckoutRequestID) and its last query did not fail: one never queried, say behind a busy
/// reconciler, or one whose queries fail, may have been paid.
const ASKABLE_NO_LONGER: &str = "(query_failed_at IS NULL AND (checkout_request_id IS NULL OR check_attempts > 0))";

/// Payments in these push states may have reached Daraja without Lipa hearing its answer.
const PUSH_UNHEARD: &str = "push_state IN ('sending', 'unknown')";

/// A new webhook event's id. Ids begin with their creation time, so the events a burst of
/// callbacks writes share index pages (see [`crate::ids::time_ordered_hex`]).
fn new_event_id() -> String {
    format!("evt_{}", crate::ids::time_ordered_hex())
}

/// A new receipt email's id, time-ordered like [`new_event_id`].
fn new_email_id() -> String {
    format!("eml_{}", crate::ids::time_ordered_hex())
}

/// Whether an announcement sends the customer a receipt email.
fn sends_receipt(event_type: &str, payment: &Payment) -> bool {
    event_type == "payment.paid" && payment.customer_email.is_some()
}

/// The emails row for an attempt's outcome: status, next attempt, error, attempts added.
pub(super) fn email_columns(next: &EmailNext) -> (&'static str, Option<i64>, Option<&str>, i32) {
    match next {
        EmailNext::Sent => ("sent", None, None, 1),
        EmailNext::RetryAt(at, error) => ("pending", Some(*at), Some(error), 1),
        EmailNext::Dead(error) => ("dead", None, Some(error), 1),
        EmailNext::Skipped(reason) => ("skipped", None, Some(reason), 0),
    }
}

/// The timeline entry for an email attempt.
fn email_event(job: &EmailJob, next: &EmailNext) -> (&'static str, serde_json::Value) {
    let to = &job.recipient;
    match next {
        EmailNext::Sent => ("email_sent", serde_json::json!({"to": to, "attempt": job.attempts + 1})),
        EmailNext::RetryAt(at, error) => (
            "email_failed",
            serde_json::json!({"to": to, "attempt": job.attempts + 1, "error": error, "retry_at": crate::time_fmt::rfc3339(*at)}),
        ),
        EmailNext::Dead(error) => {
            ("email_dead", serde_json::json!({"to": to, "attempt": job.attempts + 1, "error": error}))
        }
        EmailNext::Skipped(reason) => ("email_skipped", serde_json::json!({"to": to, "reason": reason})),
    }
}

/// The webhook body for a payment: `{id, type, created_at, data}`; fixed when written.
fn webhook_payload(event_id: &str, event_type: &str, now: i64, payment: &Payment) -> Result<String, StoreError> {
    /// The envelope every webhook event has; the payment as the API shows it is its `data`.
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        event_type: &'a str,
        #[serde(serialize_with = "crate::time_fmt::millis")]
        created_at: i64,
        data: &'a Payment,
    }
    let envelope = Envelope { id: event_id, event_type, created_at: now, data: payment };
    serde_json::to_string(&envelope)
        .map_err(|e| StoreError::Corrupt(format!("payment {} cannot be serialised: {e}", payment.id)))
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
    /// Its row: the decision's note and the body, cut to an excerpt when no payment took it.
    Row { note: String, body: &'a [u8] },
    /// Only a count: no payment took it, and the budget for storing such callbacks is spent.
    Counted(Tally),
}

/// A callback counted instead of stored: tallied under its minute (ms, the minute's start).
#[derive(Debug, Clone, Copy)]
struct Tally {
    minute: i64,
    bytes: i64,
    at: i64,
}

/// What to keep of `incoming`, given whether a payment took it and its decision's note.
fn kept(incoming: &IncomingCallback, matched: bool, mut note: String) -> Kept<'_> {
    if matched {
        return Kept::Row { note, body: &incoming.body };
    }
    if !incoming.keep_if_unmatched {
        let at = incoming.received_at;
        let bytes = i64::try_from(incoming.body.len()).unwrap_or(i64::MAX);
        return Kept::Counted(Tally { minute: at - at.rem_euclid(60_000), bytes, at });
    }
    let body = unmatched_excerpt(&incoming.body, &mut note);
    Kept::Row { note, body }
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

    /// Stores a new API key's hash.
    pub async fn insert_api_key(&self, key: ApiKey, key_hash: String) -> Result<(), StoreError> {
        delegate!(self.insert_api_key(key, key_hash))
    }

    /// The live (not revoked) key with this hash.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        delegate!(self.api_key_by_hash(key_hash.to_owned()))
    }

    /// Revokes a key by id or name; false if none was live.
    pub async fn revoke_api_key(&self, id_or_name: &str, now: i64) -> Result<bool, StoreError> {
        if has_nul(id_or_name) {
            return Ok(false);
        }
        delegate!(self.revoke_api_key(id_or_name.to_owned(), now))
    }

    /// All keys.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        delegate!(self.api_keys())
    }

    /// Inserts a pending payment, or returns the one with the same idempotency key.
    pub async fn insert_payment(&self, new: NewPayment) -> Result<Inserted, StoreError> {
        delegate!(self.insert_payment(new))
    }

    /// The payment an API key created with an idempotency key, and its request hash.
    pub async fn payment_by_idempotency_key(
        &self,
        api_key_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<(Payment, String)>, StoreError> {
        delegate!(self.payment_by_idempotency_key(api_key_id.to_owned(), idempotency_key.to_owned()))
    }

    /// Records how the push went.
    pub async fn record_push(&self, id: &PaymentId, result: PushResult, now: i64) -> Result<Payment, StoreError> {
        delegate!(self.record_push(id.clone(), result, now))
    }

    /// One payment (optionally only if it belongs to `api_key_id`).
    pub async fn payment(&self, id: &PaymentId, api_key_id: Option<&str>) -> Result<Option<Payment>, StoreError> {
        delegate!(self.payment(id.clone(), api_key_id.map(str::to_owned)))
    }

    /// Payments matching `filter`, newest first.
    pub async fn payments(&self, filter: PaymentFilter) -> Result<Vec<Payment>, StoreError> {
        let texts = [&filter.phone, &filter.reference, &filter.receipt, &filter.id];
        if texts.iter().any(|t| t.as_deref().is_some_and(has_nul)) {
            return Ok(Vec::new());
        }
        delegate!(self.payments(filter))
    }

    /// How many payments are in each status.
    pub async fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        delegate!(self.count_by_status())
    }

    /// Stores a callback and applies it, in one commit.
    pub async fn settle_from_callback(&self, incoming: IncomingCallback) -> Result<CallbackStored, StoreError> {
        delegate!(self.settle_from_callback(incoming))
    }

    /// Leases up to `limit` pending payments due for a query until `lease_until`.
    pub async fn claim_due_checks(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<DueCheck>, StoreError> {
        delegate!(self.claim_due_checks(now, lease_until, limit))
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

    /// Records a query that gave no final answer and when to ask again.
    pub async fn reschedule_check(
        &self,
        id: &PaymentId,
        note: String,
        next_at: i64,
        query_failed: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        delegate!(self.reschedule_check(id.clone(), note, next_at, query_failed.then_some(now), now))
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

    /// A checkout session by id.
    pub async fn checkout_session(&self, id: &str) -> Result<Option<CheckoutSession>, StoreError> {
        if has_nul(id) {
            return Ok(None);
        }
        delegate!(self.checkout_session(id.to_owned()))
    }

    /// Leases up to `limit` receipt emails due at `now` until `lease_until`.
    pub async fn claim_due_emails(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<EmailJob>, StoreError> {
        delegate!(self.claim_due_emails(now, lease_until, limit))
    }

    /// Records an email attempt's outcome, and puts it on the payment's timeline.
    pub async fn finish_email(&self, job: &EmailJob, next: EmailNext, now: i64) -> Result<(), StoreError> {
        delegate!(self.finish_email(job.clone(), next, now))
    }

    /// Runs a read-only statement (`$1` placeholders) and returns its rows.
    pub async fn query(&self, sql: &'static str, args: Vec<sql::Arg>) -> Result<sql::Rows, StoreError> {
        delegate!(self.query(sql, args))
    }

    /// Runs statements in one transaction; returns the rows each changed.
    pub async fn execute_all(&self, statements: Vec<sql::Statement>) -> Result<Vec<u64>, StoreError> {
        delegate!(self.execute_all(statements))
    }

    /// The webhook signing secret of an API key, if it has one.
    pub async fn webhook_secret(&self, api_key_id: &str) -> Result<Option<String>, StoreError> {
        delegate!(self.webhook_secret(api_key_id.to_owned()))
    }

    /// Gives an API key `secret` as its webhook secret unless it already has one (then kept).
    pub async fn init_webhook_secret(&self, api_key_id: &str, secret: &str) -> Result<(), StoreError> {
        delegate!(self.init_webhook_secret(api_key_id.to_owned(), secret.to_owned()))
    }

    /// Sets (or rotates) an API key's webhook secret, by key id or name; false if no live key.
    pub async fn set_webhook_secret(&self, id_or_name: &str, secret: &str) -> Result<bool, StoreError> {
        if has_nul(id_or_name) {
            return Ok(false);
        }
        delegate!(self.set_webhook_secret(id_or_name.to_owned(), secret.to_owned()))
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

    /// Records an attempt and what happens next, in one commit.
    pub async fn finish_webhook_attempt(
        &self,
        attempt: Option<WebhookAttempt>,
        event_id: &str,
        next: WebhookNext,
    ) -> Result<(), StoreError> {
        delegate!(self.finish_webhook_attempt(attempt, event_id.to_owned(), next))
    }

    /// Queues an event for delivery again now (optionally only if it belongs to `api_key_id`).
    pub async fn redeliver_webhook(
        &self,
        event_id: &str,
        api_key_id: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        if has_nul(event_id) {
            return Ok(false);
        }
        delegate!(self.redeliver_webhook(event_id.to_owned(), api_key_id.map(str::to_owned), now))
    }

    /// A payment's webhook events with their attempts.
    pub async fn webhook_events(&self, id: &PaymentId) -> Result<Vec<WebhookEvent>, StoreError> {
        delegate!(self.webhook_events(id.clone()))
    }

    /// A payment's timeline, oldest first.
    pub async fn events(&self, id: &PaymentId) -> Result<Vec<Event>, StoreError> {
        delegate!(self.events(id.clone()))
    }

    /// Callbacks stored for a payment, oldest first.
    pub async fn callbacks_for(&self, id: &PaymentId) -> Result<Vec<StoredCallback>, StoreError> {
        delegate!(self.callbacks_for(id.clone()))
    }

    /// Callbacks that matched no payment or could not be parsed, for review.
    pub async fn unmatched_callbacks(&self) -> Result<Vec<StoredCallback>, StoreError> {
        delegate!(self.unmatched_callbacks())
    }
}
