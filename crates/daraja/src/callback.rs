//! Parsing the STK callback Safaricom POSTs to the `CallBackURL` (reference §4).
//!
//! Quirks handled here:
//! - `ResultCode` is a number, or a string such as `"SFC_IC0003"`;
//! - metadata items are found by `Name`, never by position; unknown items are ignored;
//! - `Balance` may be absent, present without `Value`, or an odd string: it is never required;
//! - `Amount` may be `100` or `100.00`, but must be a whole number of shillings;
//! - `TransactionDate` (a 14-digit number, Nairobi time) becomes a datetime;
//! - `PhoneNumber` (a 12-digit number) becomes an [`Msisdn`].
//!
//! A malformed body is a [`CallbackError`] value, never a panic. Bodies over
//! [`MAX_CALLBACK_BYTES`] are refused before parsing.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use time::OffsetDateTime;

use crate::ids::{CheckoutRequestId, MerchantRequestId, ReceiptNumber};
use crate::msisdn::Msisdn;
use crate::result_code::ResultCode;
use crate::timestamp::Timestamp;

/// Real callbacks are well under 2 KiB; anything over this is refused unparsed.
pub const MAX_CALLBACK_BYTES: usize = 64 * 1024;

/// The acknowledgement body to answer a stored callback with.
pub const ACKNOWLEDGEMENT: &str = r#"{"ResultCode":0,"ResultDesc":"Accepted"}"#;

/// A parsed STK callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkCallback {
    /// `MerchantRequestID`.
    pub merchant_request_id: MerchantRequestId,
    /// `CheckoutRequestID`: which push this answers.
    pub checkout_request_id: CheckoutRequestId,
    /// The final result.
    pub result_code: ResultCode,
    /// `ResultDesc` as sent.
    pub result_desc: String,
    /// What was paid: present exactly when `result_code` is success.
    pub payment: Option<Payment>,
}

/// The `CallbackMetadata` of a successful payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Whole shillings paid.
    pub amount: u64,
    /// `MpesaReceiptNumber`: unique per transaction, also sent to the customer by SMS.
    pub receipt: ReceiptNumber,
    /// `TransactionDate`, in Nairobi time (offset +03:00).
    pub transaction_date: OffsetDateTime,
    /// `PhoneNumber`: the payer.
    pub phone: Msisdn,
}

/// Why a callback body could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackError {
    /// The body is larger than [`MAX_CALLBACK_BYTES`].
    TooLarge {
        /// The body's size in bytes.
        len: usize,
    },
    /// Not JSON, or not the callback's shape (missing field, wrong type, too deeply nested):
    /// what it is not, then why, e.g. `not an STK callback: missing field …`.
    Malformed(String),
    /// The shape is right but a value is not.
    InvalidField {
        /// The field or metadata item.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => {
                write!(f, "callback body is {len} bytes; the limit is {MAX_CALLBACK_BYTES}")
            }
            Self::Malformed(why) => write!(f, "callback body is {why}"),
            Self::InvalidField { field, reason } => write!(f, "callback field {field}: {reason}"),
        }
    }
}

impl std::error::Error for CallbackError {}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> CallbackError {
    CallbackError::InvalidField { field, reason: reason.into() }
}

/// Parses a callback body.
pub fn parse(body: &[u8]) -> Result<StkCallback, CallbackError> {
    if body.len() > MAX_CALLBACK_BYTES {
        return Err(CallbackError::TooLarge { len: body.len() });
    }
    let wire: Wire<'_> = serde_json::from_slice(body).map_err(|e| {
        // serde quotes offending values; keep the message short whatever the body held.
        CallbackError::Malformed(format!("not an STK callback: {}", crate::validation::excerpt_n(&e.to_string(), 200)))
    })?;
    let cb = wire.body.stk_callback;
    let result_code = ResultCode::from_wire(&cb.result_code);
    let payment = if result_code.is_success() {
        let items = cb
            .metadata
            .ok_or_else(|| invalid("CallbackMetadata", "missing from a successful (ResultCode 0) callback"))?
            .item;
        Some(payment(&items)?)
    } else {
        None
    };
    Ok(StkCallback {
        merchant_request_id: MerchantRequestId::parse(&cb.merchant_request_id)
            .map_err(|e| invalid("MerchantRequestID", e.reason))?,
        checkout_request_id: CheckoutRequestId::parse(&cb.checkout_request_id)
            .map_err(|e| invalid("CheckoutRequestID", e.reason))?,
        result_code,
        result_desc: cb.result_desc.into_owned(),
        payment,
    })
}

fn payment(items: &[Item<'_>]) -> Result<Payment, CallbackError> {
    let find = |name: &'static str| {
        items
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.value.as_ref())
            .ok_or_else(|| invalid(name, "missing from CallbackMetadata"))
    };
    let amount = match find("Amount")? {
        Value::Unsigned(n) => Some(*n),
        Value::Float(f) => crate::Amount::whole_shillings(*f),
        Value::Text(s) => whole_number(s),
        _ => None,
    }
    .filter(|n| *n > 0)
    .ok_or_else(|| invalid("Amount", "is not a positive whole number of shillings"))?;

    let receipt = match find("MpesaReceiptNumber")? {
        Value::Text(s) => ReceiptNumber::parse(s).map_err(|e| invalid("MpesaReceiptNumber", e.reason))?,
        _ => return Err(invalid("MpesaReceiptNumber", "is not a string")),
    };
    let digits = |name: &'static str| -> Result<String, CallbackError> {
        match find(name)? {
            Value::Unsigned(n) => Ok(n.to_string()),
            Value::Text(s) => Ok(s.trim().to_owned()),
            _ => Err(invalid(name, "is not a number")),
        }
    };
    let transaction_date = Timestamp::parse("TransactionDate", &digits("TransactionDate")?)
        .map_err(|e| invalid("TransactionDate", e.reason))?
        .instant();
    let phone = Msisdn::parse(&digits("PhoneNumber")?).map_err(|e| invalid("PhoneNumber", e.reason))?;
    Ok(Payment { amount, receipt, transaction_date, phone })
}

/// `"100"` or `"100.00"` → 100; fractions and anything else → `None`.
pub(crate) fn whole_number(text: &str) -> Option<u64> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) || fraction.bytes().any(|b| b != b'0') {
        return None;
    }
    whole.parse().ok()
}

// ---- wire shapes (private) ----

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "Body", borrow)]
    body: WireBody<'a>,
}

#[derive(Deserialize)]
struct WireBody<'a> {
    #[serde(rename = "stkCallback", borrow)]
    stk_callback: WireCallback<'a>,
}

#[derive(Deserialize)]
struct WireCallback<'a> {
    #[serde(rename = "MerchantRequestID", borrow)]
    merchant_request_id: Cow<'a, str>,
    #[serde(rename = "CheckoutRequestID", borrow)]
    checkout_request_id: Cow<'a, str>,
    #[serde(rename = "ResultCode")]
    result_code: Code,
    #[serde(rename = "ResultDesc", borrow, default)]
    result_desc: Cow<'a, str>,
    #[serde(rename = "CallbackMetadata", borrow, default)]
    metadata: Option<WireMetadata<'a>>,
}

#[derive(Deserialize)]
struct WireMetadata<'a> {
    #[serde(rename = "Item", borrow, default)]
    item: Vec<Item<'a>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "Name", borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "Value", borrow, default)]
    value: Option<Value<'a>>,
}

/// `ResultCode`: an integer or a string, kept as text.
struct Code(String);

impl std::ops::Deref for Code {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Code;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a result code (number or string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Code, E> {
                Ok(Code(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Code, E> {
                Ok(Code(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Code, E> {
                if v.trim().is_empty() || v.len() > 32 {
                    return Err(E::custom("ResultCode must be 1 to 32 characters"));
                }
                Ok(Code(v.trim().to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A metadata item's `Value`: scalars are kept, anything else is accepted and ignored, so an
/// odd `Balance` never breaks a payment.
enum Value<'a> {
    Unsigned(u64),
    Float(f64),
    Text(Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Value<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Value<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value<'a>, E> {
                Ok(Value::Unsigned(v))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Value<'a>, E> {
                Ok(Value::Other)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value<'a>, E> {
                Ok(Value::Float(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value<'a>, E> {
                Ok(Value::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value<'a>, E> {
                Ok(Value::Other)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value<'a>, E> {
                Ok(Value::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value<'a>, E> {
                Ok(Value::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Value::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}
