//! Customer to business (C2B): customers who pay a paybill or till by hand from the M-PESA menu
//! ("Lipa na M-PESA → Pay Bill / Buy Goods"), and what Daraja sends the business about it.
//!
//! Daraja POSTs the same body twice in a payment's life: to the **validation URL** before the
//! money moves (only when Safaricom turned external validation on for the shortcode), and to
//! the **confirmation URL** after it moved. [`parse`] reads both; [`Validation`] is the answer
//! to the first and [`CONFIRMATION_ACK`] the answer to the second.
//!
//! Quirks handled here:
//! - `TransAmount` is a string such as `"5.00"` (sometimes a number); it must be whole shillings;
//! - `TransTime` is 14 digits of Nairobi time, as a string or a number;
//! - `MSISDN` is plain (`254712345678`), masked (`2547 ***** 126`, `25470****149`) or a 64-hex
//!   SHA-256 of the number: see [`Payer`];
//! - `BillRefNumber`, `InvoiceNumber`, `OrgAccountBalance`, `ThirdPartyTransID` and the names may
//!   be empty or missing; `null` counts as empty;
//! - `TransactionType` is `Pay Bill`, `Buy Goods`, `CustomerPayBillOnline` or
//!   `CustomerBuyGoodsOnline` (kept as [`TransactionType::Other`] when it is something else).
//!
//! A malformed body is a [`CallbackError`] value, never a panic; bodies over
//! [`MAX_CALLBACK_BYTES`] are refused unparsed.

pub(crate) mod api;
mod pull;
mod wire;

use std::fmt;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::callback::{CallbackError, MAX_CALLBACK_BYTES, invalid};
use crate::ids::ReceiptNumber;
use crate::merchant::ShortCode;
use crate::msisdn::Msisdn;
use crate::timestamp::Timestamp;

pub use api::{C2bSimulate, DefaultAction, RegisterAccepted, RegisterUrls, RegisterVersion, SimulateAccepted};
pub use pull::{PullPage, PullQuery, PullRegister, PulledTransaction};

/// The answer to a stored confirmation (Daraja does not retry a confirmation it got this for).
pub const CONFIRMATION_ACK: &str = r#"{"ResultCode":0,"ResultDesc":"Success"}"#;

/// Text fields longer than this are refused: real ones are well under it.
const MAX_TEXT: usize = 100;

/// A customer's payment as Daraja describes it to the validation and confirmation URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2bPayment {
    /// `TransactionType`: paybill or till.
    pub transaction_type: TransactionType,
    /// `TransID`: the M-Pesa receipt number, the same the customer gets by SMS. For a shortcode
    /// that also hears of its STK payments this way, it equals the STK callback's receipt.
    pub trans_id: ReceiptNumber,
    /// `TransTime`, in Nairobi time (offset +03:00).
    pub trans_time: OffsetDateTime,
    /// `TransAmount` in whole shillings.
    pub amount: u64,
    /// `BusinessShortCode`: the paybill or till paid.
    pub business_short_code: ShortCode,
    /// `BillRefNumber`: the account number the customer typed (trimmed; empty for a till).
    pub bill_ref_number: String,
    /// `InvoiceNumber` (usually empty).
    pub invoice_number: String,
    /// `OrgAccountBalance`: the business's balance after the payment (empty in validation).
    pub org_account_balance: String,
    /// `ThirdPartyTransID`: echoed from the validation answer, else empty.
    pub third_party_trans_id: String,
    /// `MSISDN`: who paid, as far as Daraja says.
    pub payer: Payer,
    /// `FirstName`, `MiddleName`, `LastName` (any may be empty).
    pub names: [String; 3],
}

impl C2bPayment {
    /// The payer's name as one line, empty parts left out.
    pub fn payer_name(&self) -> String {
        self.names.iter().filter(|n| !n.is_empty()).map(String::as_str).collect::<Vec<_>>().join(" ")
    }
}

/// `TransactionType` of a C2B payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionType {
    /// `Pay Bill` or `CustomerPayBillOnline`: to a paybill, with an account number.
    PayBill,
    /// `Buy Goods` or `CustomerBuyGoodsOnline`: to a till, without an account number.
    BuyGoods,
    /// Anything else, as sent.
    Other(String),
}

impl TransactionType {
    fn from_wire(text: &str) -> Self {
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        match squeezed.as_str() {
            "paybill" | "customerpaybillonline" => Self::PayBill,
            "buygoods" | "customerbuygoodsonline" => Self::BuyGoods,
            _ => Self::Other(text.to_owned()),
        }
    }
}

/// Who paid: Daraja sends the `MSISDN` in one of three forms, depending on the shortcode's
/// data-protection settings.
#[derive(Clone, PartialEq, Eq)]
pub enum Payer {
    /// The number itself.
    Plain(Msisdn),
    /// Some digits hidden, e.g. `2547 ***** 126` or `25470****149`; kept as sent.
    Masked(String),
    /// The SHA-256 of the 12-digit number (`2547…`) as 64 lowercase hex digits.
    Hashed(String),
    /// `MSISDN` empty or missing.
    Unknown,
}

impl Payer {
    /// Reads the `MSISDN` field; `None` when it is none of the known forms.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Some(Self::Unknown);
        }
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(Self::Hashed(text.to_ascii_lowercase()));
        }
        if text.contains('*') {
            let shape = text.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b' ');
            let digits = text.bytes().filter(u8::is_ascii_digit).count();
            return (shape && text.len() <= 20 && digits >= 3).then(|| Self::Masked(text.to_owned()));
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Msisdn::parse(text).ok().map(Self::Plain)
    }

    /// Whether this payer is certainly `phone`: the number itself, or its hash. A masked number
    /// never is (too many phones share the visible digits).
    pub fn is(&self, phone: Msisdn) -> bool {
        match self {
            Self::Plain(p) => *p == phone,
            Self::Hashed(h) => *h == hash(phone),
            Self::Masked(_) | Self::Unknown => false,
        }
    }

    /// A form safe to show to staff: plain numbers masked as `07•• ••• 678`, masked ones as
    /// sent, hashes as "hidden by Safaricom".
    pub fn display(&self) -> String {
        match self {
            Self::Plain(p) => p.masked(),
            Self::Masked(m) => m.clone(),
            Self::Hashed(_) => "hidden by Safaricom".to_owned(),
            Self::Unknown => "not given".to_owned(),
        }
    }
}

impl fmt::Debug for Payer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(p) => write!(f, "Plain({p})"),
            Self::Masked(m) => write!(f, "Masked({m})"),
            Self::Hashed(h) => write!(f, "Hashed({}…)", &h[..8]),
            Self::Unknown => f.write_str("Unknown"),
        }
    }
}

/// The hashed form of a phone, as Daraja sends it: SHA-256 of the 12 digits, lowercase hex.
pub fn hash(phone: Msisdn) -> String {
    let digest = Sha256::digest(phone.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a validation or confirmation body.
pub fn parse(body: &[u8]) -> Result<C2bPayment, CallbackError> {
    if body.len() > MAX_CALLBACK_BYTES {
        return Err(CallbackError::TooLarge { len: body.len() });
    }
    let w: wire::Payment<'_> = serde_json::from_slice(body).map_err(|e| {
        CallbackError::Malformed(format!(
            "not a C2B validation or confirmation: {}",
            crate::validation::excerpt_n(&e.to_string(), 200)
        ))
    })?;
    let text = |field: &'static str, value: &str| -> Result<String, CallbackError> {
        let value = value.trim();
        if value.chars().count() > MAX_TEXT || value.chars().any(char::is_control) {
            return Err(invalid(field, format!("is over {MAX_TEXT} characters or holds control characters")));
        }
        Ok(value.to_owned())
    };
    let amount = crate::callback::whole_number(&w.amount)
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid("TransAmount", "is not a positive whole number of shillings such as \"5.00\""))?;
    let payer = Payer::parse(&w.msisdn).ok_or_else(|| {
        invalid("MSISDN", "is neither a Kenyan number, a masked number (2547 ***** 126) nor a 64-hex SHA-256")
    })?;
    Ok(C2bPayment {
        transaction_type: TransactionType::from_wire(&text("TransactionType", &w.transaction_type)?),
        trans_id: ReceiptNumber::parse(w.trans_id.trim()).map_err(|e| invalid("TransID", e.reason))?,
        trans_time: Timestamp::parse("TransTime", w.trans_time.trim())
            .map_err(|e| invalid("TransTime", e.reason))?
            .instant(),
        amount,
        business_short_code: ShortCode::parse(&w.business_short_code)
            .map_err(|e| invalid("BusinessShortCode", e.reason))?,
        bill_ref_number: text("BillRefNumber", &w.bill_ref_number)?,
        invoice_number: text("InvoiceNumber", &w.invoice_number)?,
        org_account_balance: text("OrgAccountBalance", &w.org_account_balance)?,
        third_party_trans_id: text("ThirdPartyTransID", &w.third_party_trans_id)?,
        payer,
        names: [
            text("FirstName", &w.first_name)?,
            text("MiddleName", &w.middle_name)?,
            text("LastName", &w.last_name)?,
        ],
    })
}

/// Why a validation rejects a payment: Daraja's `C2B000xx` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// `C2B00011` invalid MSISDN.
    InvalidMsisdn,
    /// `C2B00012` invalid account number.
    InvalidAccountNumber,
    /// `C2B00013` invalid amount.
    InvalidAmount,
    /// `C2B00014` invalid KYC details.
    InvalidKycDetails,
    /// `C2B00015` invalid shortcode.
    InvalidShortcode,
    /// `C2B00016` other error.
    OtherError,
}

impl RejectCode {
    /// Every code, in order.
    pub const ALL: [Self; 6] = [
        Self::InvalidMsisdn,
        Self::InvalidAccountNumber,
        Self::InvalidAmount,
        Self::InvalidKycDetails,
        Self::InvalidShortcode,
        Self::OtherError,
    ];

    /// The wire code, e.g. `C2B00012`.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidMsisdn => "C2B00011",
            Self::InvalidAccountNumber => "C2B00012",
            Self::InvalidAmount => "C2B00013",
            Self::InvalidKycDetails => "C2B00014",
            Self::InvalidShortcode => "C2B00015",
            Self::OtherError => "C2B00016",
        }
    }

    /// The code for a wire value (case and surrounding spaces ignored).
    pub fn from_code(code: &str) -> Option<Self> {
        let code = code.trim();
        Self::ALL.into_iter().find(|c| c.code().eq_ignore_ascii_case(code))
    }
}

/// The answer to a validation request: let the payment through, or stop it before the
/// customer's money moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// `{"ResultCode":"0","ResultDesc":"Accepted"}`.
    Accept,
    /// `{"ResultCode":"C2B000xx","ResultDesc":"Rejected"}`.
    Reject(RejectCode),
}

impl Validation {
    /// The JSON body to answer with.
    pub fn to_json(self) -> String {
        match self {
            Self::Accept => r#"{"ResultCode":"0","ResultDesc":"Accepted"}"#.to_owned(),
            Self::Reject(code) => format!(r#"{{"ResultCode":"{}","ResultDesc":"Rejected"}}"#, code.code()),
        }
    }

    /// Reads a validation answer, as Daraja does: `ResultCode` `0` (number or string) accepts,
    /// a `C2B000xx` code rejects; anything else is `None` (Daraja then applies the shortcode's
    /// default action, as for no answer).
    pub fn parse_answer(body: &[u8]) -> Option<Self> {
        let answer: wire::Answer = serde_json::from_slice(body).ok()?;
        match answer.result_code.trim() {
            "0" => Some(Self::Accept),
            other => RejectCode::from_code(other).map(Self::Reject),
        }
    }
}

#[cfg(test)]
mod tests;
