//! What the simulator remembers and shows through its control API: transactions, every push
//! and query request, every callback attempt, and phones' wallets.

use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;

use crate::config::Faults;
use crate::rules::Answer;

pub(crate) fn rfc3339<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    let text = t.format(&time::format_description::well_known::Rfc3339).map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

fn rfc3339_opt<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The prompt is on the phone.
    Open,
    /// It ended with a result code.
    Completed,
}

/// One accepted STK push and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct Transaction {
    /// `CheckoutRequestID`.
    pub checkout_request_id: String,
    /// `MerchantRequestID`.
    pub merchant_request_id: String,
    /// `BusinessShortCode`.
    pub shortcode: u32,
    /// `PartyB`.
    pub party_b: u32,
    /// `TransactionType`.
    pub transaction_type: String,
    /// The business name shown in the prompt.
    pub business_name: String,
    /// `PhoneNumber`.
    pub phone: u64,
    /// KES.
    pub amount: u64,
    /// `AccountReference`.
    pub account_reference: String,
    /// `TransactionDesc`.
    pub description: String,
    /// `CallBackURL`.
    pub callback_url: String,
    /// When the push was accepted.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: OffsetDateTime,
    /// Open or completed.
    pub status: Status,
    /// The final result code.
    pub result_code: Option<String>,
    /// The final result description.
    pub result_desc: Option<String>,
    /// The receipt, when paid.
    pub receipt: Option<String>,
    /// When it ended.
    #[serde(serialize_with = "rfc3339_opt")]
    pub completed_at: Option<OffsetDateTime>,
    /// The faults its callback is delivered with.
    pub faults: Faults,
}

/// One request to the push or query endpoint, accepted or not.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// `stk_push` or `stk_query`.
    pub endpoint: &'static str,
    /// When it arrived.
    #[serde(serialize_with = "rfc3339")]
    pub at: OffsetDateTime,
    /// The JSON body (or the raw text when it was not JSON).
    pub request: serde_json::Value,
    /// Fields Daraja does not document, which were ignored (or refused in strict mode).
    pub unknown_fields: Vec<String>,
    /// HTTP status answered.
    pub status: u16,
    /// The answer's body.
    pub response: serde_json::Value,
}

/// One attempt to deliver one copy of a callback.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackAttempt {
    /// What was sent: `stk_callback`, `c2b_validation` or `c2b_confirmation`.
    pub kind: &'static str,
    /// Which transaction: the `CheckoutRequestID` of an STK callback, the `TransID` of a C2B
    /// validation or confirmation.
    pub checkout_request_id: String,
    /// Which copy (1-based; more than one with the `copies` fault).
    pub copy: u32,
    /// Which attempt of that copy (1-based; more than one with retries).
    pub attempt: u32,
    /// When it was sent.
    #[serde(serialize_with = "rfc3339")]
    pub at: OffsetDateTime,
    /// Where.
    pub url: String,
    /// The body sent.
    pub body: String,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// The start of the answer's body.
    pub response_body: String,
    /// Transport error, if no answer came.
    pub error: Option<String>,
    /// Time to the answer.
    pub latency_ms: u64,
}

impl CallbackAttempt {
    /// Whether the receiver acknowledged with 2xx.
    pub fn acknowledged(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// A phone's wallet and prompt, as the control API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PhoneView {
    /// The 12-digit MSISDN.
    pub msisdn: u64,
    /// Balance in KES.
    pub balance: u64,
    /// Spent today in KES (against the daily limit).
    pub spent_today: u64,
    /// Wrong PINs in a row.
    pub wrong_pins: u32,
    /// Whether the PIN is locked (every payment fails with 8006).
    pub pin_locked: bool,
    /// The open prompt, if any.
    pub open_prompt: Option<Transaction>,
    /// The last completed transaction, if any.
    pub last: Option<Transaction>,
}

/// A scripted outcome for the next push to a phone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scripted {
    /// What the customer does: `"0"` to approve, a result code, or `"virtual_phone"`.
    pub result: Answer,
    /// When (default: the configured automatic delay).
    #[serde(default)]
    pub after_ms: Option<u64>,
    /// Faults for this push's callback (default: the global ones).
    #[serde(default)]
    pub faults: Option<Faults>,
}
