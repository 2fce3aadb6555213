//! The asynchronous results of Reversal and Transaction Status (and Daraja's other
//! initiator APIs): what Safaricom POSTs to the `ResultURL`, or to the `QueueTimeOutURL` when
//! the request waited too long in its queue.
//!
//! Quirks handled here:
//! - `ResultCode` is a number (`0`, `21`) or a string (`"R000001"`, `"0"`);
//! - `ResultParameters.ResultParameter` and `ReferenceData.ReferenceItem` are a list, a single
//!   object when there is one item, or absent; `Value` is a string, a number or missing;
//! - `TransactionID` may be absent or empty (a refused request moved nothing).
//!
//! A malformed body is a [`CallbackError`], never a panic; bodies over
//! [`MAX_CALLBACK_BYTES`] are refused unparsed.

use serde::Deserialize;
use serde_json::Value;

use crate::callback::{CallbackError, MAX_CALLBACK_BYTES};
use crate::validation::excerpt_n;

/// The acknowledgement to answer a stored result or timeout with.
pub const ACKNOWLEDGEMENT: &str = r#"{"ResultCode":0,"ResultDesc":"Accepted"}"#;

/// Longest text kept from any field; longer values are cut (marked with `…`).
const MAX_TEXT: usize = 512;
/// Most parameters or reference items kept; real results carry about ten.
const MAX_ITEMS: usize = 64;

/// A parsed `Result` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncResult {
    /// `ResultType` (`0` for a completed request), when sent.
    pub result_type: Option<i64>,
    /// `ResultCode`, as text.
    pub result_code: String,
    /// `ResultDesc` as sent.
    pub result_desc: String,
    /// `OriginatorConversationID`: the id the synchronous answer gave.
    pub originator_conversation_id: String,
    /// `ConversationID`: Daraja's id for the request.
    pub conversation_id: String,
    /// `TransactionID`: the receipt of what this request did (a reversal's own receipt), when
    /// any.
    pub transaction_id: Option<String>,
    /// `ResultParameters`, in order, values as text.
    pub parameters: Vec<(String, String)>,
    /// `ReferenceData`, in order, values as text.
    pub reference: Vec<(String, String)>,
}

/// What a result's code means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// `0`: done.
    Success,
    /// `R000001`: the transaction was reversed before.
    AlreadyReversed,
    /// `R000002`: Daraja does not know the transaction (`OriginalTransactionID` invalid).
    UnknownTransaction,
    /// `21`: the initiator lacks the role this API needs.
    InitiatorLacksRole,
    /// `2001`: the initiator's name or credential is wrong.
    InvalidInitiator,
    /// `8006`: the initiator's security credential is locked.
    CredentialLocked,
    /// Any other code: refused, with Daraja's description.
    Other,
}

impl ResultKind {
    /// Classifies a `ResultCode`.
    pub fn of(code: &str) -> Self {
        match code.trim() {
            "0" | "00000000" => Self::Success,
            "R000001" => Self::AlreadyReversed,
            "R000002" => Self::UnknownTransaction,
            "21" => Self::InitiatorLacksRole,
            "2001" => Self::InvalidInitiator,
            "8006" => Self::CredentialLocked,
            _ => Self::Other,
        }
    }

    /// What an operator should do about it, in one sentence (`None` for success and codes
    /// without a known remedy).
    pub fn remedy(self) -> Option<&'static str> {
        match self {
            Self::Success | Self::Other => None,
            Self::AlreadyReversed => Some("The transaction was reversed before; nothing more can move back."),
            Self::UnknownTransaction => {
                Some("Daraja does not know this receipt for this shortcode; check the receipt and the shortcode.")
            }
            Self::InitiatorLacksRole => {
                Some("Give the initiator the needed role (for refunds: Reversal) in the M-PESA org portal.")
            }
            Self::InvalidInitiator => {
                Some("Check the initiator name and password, and the certificate they were encrypted with.")
            }
            Self::CredentialLocked => {
                Some("The initiator is locked after wrong passwords; unlock it in the M-PESA org portal.")
            }
        }
    }
}

impl AsyncResult {
    /// Whether the request succeeded (`ResultCode` 0).
    pub fn is_success(&self) -> bool {
        self.kind() == ResultKind::Success
    }

    /// What the code means.
    pub fn kind(&self) -> ResultKind {
        ResultKind::of(&self.result_code)
    }

    /// A result parameter by key (the first with that key).
    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A reference item by key.
    pub fn reference(&self, key: &str) -> Option<&str> {
        self.reference.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Result")]
    result: Option<Body>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "ResultType", default)]
    result_type: Value,
    #[serde(rename = "ResultCode", default)]
    result_code: Value,
    #[serde(rename = "ResultDesc", default)]
    result_desc: Value,
    #[serde(rename = "OriginatorConversationID", default)]
    originator_conversation_id: Value,
    #[serde(rename = "ConversationID", default)]
    conversation_id: Value,
    #[serde(rename = "TransactionID", default)]
    transaction_id: Value,
    #[serde(rename = "ResultParameters", default)]
    result_parameters: Value,
    #[serde(rename = "ReferenceData", default)]
    reference_data: Value,
}

/// Reads what arrived at a `ResultURL`.
pub fn parse(body: &[u8]) -> Result<AsyncResult, CallbackError> {
    let b = envelope(body)?.ok_or_else(|| malformed("has no \"Result\" object"))?;
    let result_code = text(&b.result_code).ok_or_else(|| malformed("has no Result.ResultCode"))?;
    if result_code.is_empty() {
        return Err(malformed("has an empty Result.ResultCode"));
    }
    Ok(AsyncResult {
        result_type: b.result_type.as_i64().or_else(|| text(&b.result_type).and_then(|t| t.parse().ok())),
        result_code,
        result_desc: text(&b.result_desc).unwrap_or_default(),
        originator_conversation_id: text(&b.originator_conversation_id).unwrap_or_default(),
        conversation_id: text(&b.conversation_id).unwrap_or_default(),
        transaction_id: text(&b.transaction_id).filter(|t| !t.is_empty()),
        parameters: items(&b.result_parameters, "ResultParameter"),
        reference: items(&b.reference_data, "ReferenceItem"),
    })
}

/// What arrived at a `QueueTimeOutURL`: the request waited too long and Daraja gave up on it
/// (or will still carry it out: the result may follow). The body's shape is not documented;
/// whatever ids it holds are read, and only its size and JSON-ness are required.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueTimeout {
    /// `OriginatorConversationID`, when the body had one.
    pub originator_conversation_id: Option<String>,
    /// `ConversationID`, when the body had one.
    pub conversation_id: Option<String>,
    /// `ResultDesc` or `errorMessage`, when the body had one.
    pub description: Option<String>,
}

/// Reads what arrived at a `QueueTimeOutURL`.
pub fn parse_timeout(body: &[u8]) -> Result<QueueTimeout, CallbackError> {
    if body.len() > MAX_CALLBACK_BYTES {
        return Err(CallbackError::TooLarge { len: body.len() });
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(QueueTimeout::default());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| malformed(&format!("not JSON: {}", excerpt_n(&e.to_string(), 200))))?;
    let inner = value.get("Result").unwrap_or(&value);
    let field = |names: &[&str]| names.iter().find_map(|n| inner.get(*n).and_then(text)).filter(|t| !t.is_empty());
    Ok(QueueTimeout {
        originator_conversation_id: field(&["OriginatorConversationID"]),
        conversation_id: field(&["ConversationID"]),
        description: field(&["ResultDesc", "errorMessage"]),
    })
}

fn envelope(body: &[u8]) -> Result<Option<Body>, CallbackError> {
    if body.len() > MAX_CALLBACK_BYTES {
        return Err(CallbackError::TooLarge { len: body.len() });
    }
    let e: Envelope = serde_json::from_slice(body)
        .map_err(|e| malformed(&format!("not JSON of that shape: {}", excerpt_n(&e.to_string(), 200))))?;
    Ok(e.result)
}

fn malformed(why: &str) -> CallbackError {
    CallbackError::Malformed(format!("not a Daraja result ({why})"))
}

/// A scalar as text: strings trimmed, numbers as written, `null` and containers as `None`.
fn text(value: &Value) -> Option<String> {
    let t = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    let t: String = t.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    Some(excerpt_n(&t, MAX_TEXT))
}

/// `{"<inner>": [{"Key": …, "Value": …}, …]}` or one object in place of the list.
fn items(value: &Value, inner: &str) -> Vec<(String, String)> {
    let list = match value.get(inner) {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    list.into_iter()
        .filter_map(|item| {
            let key = item.get("Key").and_then(text).filter(|k| !k.is_empty())?;
            let value = item.get("Value").and_then(text).unwrap_or_default();
            Some((key, value))
        })
        .take(MAX_ITEMS)
        .collect()
}

/// The synchronous answer of an initiator API: Daraja queued the request, and its result will
/// arrive at the `ResultURL` (or the `QueueTimeOutURL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `OriginatorConversationID`: also in the result, to match it.
    pub originator_conversation_id: String,
    /// `ConversationID`: also in the result.
    pub conversation_id: String,
    /// `ResponseDescription`.
    pub response_description: String,
}

impl crate::client::Client {
    /// Sends an initiator request (`body`, built around its result URLs) to `path`: the URLs
    /// checked as Daraja would, the answer read as an acceptance.
    pub(crate) async fn queue_initiator_request<T: serde::Serialize>(
        &self,
        operation: &'static str,
        path: &str,
        urls: (&crate::fields::CallbackUrl, &crate::fields::CallbackUrl),
        body: &T,
    ) -> Result<Accepted, crate::error::Error> {
        use crate::c2b::api::{ack, check_url, encode};
        check_url(self, "ResultURL", urls.0)?;
        check_url(self, "QueueTimeOutURL", urls.1)?;
        let answer = self.call(operation, path, encode(operation, body)?).await?;
        let ack = ack(operation, &answer, &["0"])?;
        Ok(Accepted {
            originator_conversation_id: ack.originator_conversation_id,
            conversation_id: ack.conversation_id,
            response_description: ack.response_description,
        })
    }
}

#[cfg(test)]
mod tests;
