//! The store's data types: what goes in (new payments, callbacks as received, filters) and
//! what comes out (payments' timelines, jobs due, stored callbacks, sessions, keys).

use crate::payment::{Payment, PaymentId};
use crate::settlement::Outcome;

use crate::payment::Status;

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
    pub amount: daraja::Amount,
    /// The phone to prompt.
    pub phone: daraja::Msisdn,
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
        merchant_request_id: daraja::MerchantRequestId,
        /// CheckoutRequestID.
        checkout_request_id: daraja::CheckoutRequestId,
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
    /// The lease this claim holds (its `lease_until`): only the holder settles the event.
    pub lease: i64,
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
    /// The refund it tells of, when it is a refund notice.
    pub refund_id: Option<crate::refund::RefundId>,
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
    /// Phone.
    pub phone: Option<daraja::Msisdn>,
    /// Account reference.
    pub reference: Option<String>,
    /// Receipt.
    pub receipt: Option<String>,
    /// A receipt or an account reference as someone typed it, in any case (the dashboard's
    /// search box).
    pub text: Option<String>,
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
    /// The name customers see (checkout pages, receipts); `None`: the business name.
    pub display_name: Option<String>,
}
