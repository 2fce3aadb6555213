//! The payment: its identity, state and how a Daraja result code becomes a failure reason.
//!
//! State machine: `pending → paid | failed | expired`. `paid` is final. A success callback
//! for a `failed` or `expired` payment still makes it `paid` (money moved) and flags it; the
//! rules live in `settlement`.

use serde::Serialize;

time_ordered_id!(
    /// A payment's public id, e.g. `pay_3f9c0a6b1d2e4f5a6b7c8d9e`.
    PaymentId,
    "pay_"
);

/// Where a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created; the prompt may be on the phone. Settled later by callback, query or expiry.
    Pending,
    /// Money moved. Final.
    Paid,
    /// Ended without payment.
    Failed,
    /// No conclusive answer arrived in time.
    Expired,
}

impl Status {
    /// The database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// Reads the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "paid" => Self::Paid,
            "failed" => Self::Failed,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// Why a payment failed, in words a merchant can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The customer cancelled the prompt (1032, 1031).
    Cancelled,
    /// Not enough M-Pesa balance (1).
    InsufficientFunds,
    /// Wrong PIN (2001).
    WrongPin,
    /// The customer's PIN is locked (8006).
    PinLocked,
    /// The phone could not be reached (1037).
    Unreachable,
    /// The prompt expired unanswered (1019).
    Timeout,
    /// An M-Pesa limit declined it (2, 3, 4, 8).
    LimitExceeded,
    /// Another M-Pesa session was open on the phone (1001).
    SubscriberBusy,
    /// The merchant's M-Pesa configuration is wrong (2028, SFC_IC0003).
    MerchantConfiguration,
    /// Daraja refused the push request itself.
    RejectedByDaraja,
    /// Safaricom's systems failed (17, 26, 1025, 9999, unknown codes).
    System,
}

impl FailureReason {
    /// The database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::InsufficientFunds => "insufficient_funds",
            Self::WrongPin => "wrong_pin",
            Self::PinLocked => "pin_locked",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::LimitExceeded => "limit_exceeded",
            Self::SubscriberBusy => "subscriber_busy",
            Self::MerchantConfiguration => "merchant_configuration",
            Self::RejectedByDaraja => "rejected_by_daraja",
            Self::System => "system",
        }
    }

    /// Reads the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Cancelled,
            Self::InsufficientFunds,
            Self::WrongPin,
            Self::PinLocked,
            Self::Unreachable,
            Self::Timeout,
            Self::LimitExceeded,
            Self::SubscriberBusy,
            Self::MerchantConfiguration,
            Self::RejectedByDaraja,
            Self::System,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// The one place result codes become reasons. Unknown codes are `System`.
    pub fn from_result_code(code: &daraja::ResultCode) -> Self {
        use daraja::ResultCode as C;
        match code {
            C::Cancelled | C::CancelledAlt => Self::Cancelled,
            C::InsufficientBalance => Self::InsufficientFunds,
            C::WrongPin => Self::WrongPin,
            C::CredentialLocked => Self::PinLocked,
            C::Unreachable => Self::Unreachable,
            C::Expired => Self::Timeout,
            C::BelowMinimum | C::AboveMaximum | C::DailyLimit | C::MerchantBalanceLimit => Self::LimitExceeded,
            C::SubscriberLocked => Self::SubscriberBusy,
            C::ProductMismatch | C::OperatorDoesNotExist => Self::MerchantConfiguration,
            C::Success | C::RuleLimited | C::SystemBusy | C::PushFailed | C::PushError | C::Other(_) => Self::System,
        }
    }
}

/// What settled a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettledBy {
    /// Safaricom's callback.
    Callback,
    /// An STK Query by reconciliation.
    Query,
    /// Daraja refused the push.
    Push,
    /// Nothing conclusive arrived in time.
    Expiry,
    /// The customer paid by hand (Paybill, C2B), once what arrived covered the amount.
    C2b,
}

impl SettledBy {
    /// The database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::Query => "query",
            Self::Push => "push",
            Self::Expiry => "expiry",
            Self::C2b => "c2b",
        }
    }

    /// Reads the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "callback" => Self::Callback,
            "query" => Self::Query,
            "push" => Self::Push,
            "expiry" => Self::Expiry,
            "c2b" => Self::C2b,
            _ => return None,
        })
    }
}

/// A stored payment, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payment {
    /// Public id.
    pub id: PaymentId,
    /// Current state.
    pub status: Status,
    /// Whole shillings.
    pub amount: daraja::Amount,
    /// The paying phone.
    pub phone: daraja::Msisdn,
    /// `AccountReference` sent to Daraja.
    pub account_reference: String,
    /// `TransactionDesc` sent to Daraja.
    pub description: String,
    /// The merchant's own data, returned as given.
    pub metadata: serde_json::Value,
    /// Where this payment's webhooks go (overrides the default); shown by the one redaction
    /// rule ([`crate::redact`]).
    #[serde(serialize_with = "crate::redact::serialize_opt")]
    pub webhook_url: Option<String>,
    /// Where the receipt email goes.
    pub customer_email: Option<String>,
    /// Daraja's `MerchantRequestID`, once the push was accepted.
    pub merchant_request_id: Option<daraja::MerchantRequestId>,
    /// Daraja's `CheckoutRequestID`, once the push was accepted.
    pub checkout_request_id: Option<daraja::CheckoutRequestId>,
    /// The M-Pesa receipt, when paid (absent when only a query confirmed the payment).
    pub receipt: Option<daraja::ReceiptNumber>,
    /// When M-Pesa says the payment happened (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::opt_millis")]
    pub transaction_date: Option<i64>,
    /// Why it failed.
    pub failure_reason: Option<FailureReason>,
    /// Daraja's result code (or error code for a refused push), verbatim.
    pub result_code: Option<String>,
    /// Daraja's description, verbatim.
    pub result_desc: Option<String>,
    /// What settled it.
    pub settled_by: Option<SettledBy>,
    /// Whether staff should look at it (late settlement, mismatch, conflict).
    pub needs_review: bool,
    /// Created (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub created_at: i64,
    /// Last changed (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub updated_at: i64,
    /// Settled (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::opt_millis")]
    pub settled_at: Option<i64>,
    /// Shillings paid by hand (Paybill) so far: such payments add up until they cover
    /// `amount`, which pays the payment.
    pub amount_received: u64,
    /// Shillings refunded to the customer (a succeeded refund moves the whole amount).
    pub refunded_amount: u64,
    /// How to pay by hand, while the payment can still be paid that way (see
    /// [`Payment::paybill_account`]); `None` otherwise.
    pub paybill: Option<Paybill>,
    /// The account number this payment is paid by hand with (`paybill.account_number`).
    #[serde(skip)]
    pub(crate) paybill_account: Option<String>,
    #[serde(skip)]
    pub(crate) callback_token_hash: String,
    #[serde(skip)]
    pub(crate) api_key_id: String,
}

/// Paying a payment by hand: "Lipa na M-PESA → Pay Bill", this business number, this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paybill {
    /// The paybill to pay.
    pub business_number: String,
    /// The account number that names this payment.
    pub account_number: String,
}

/// The characters of account numbers: no 0/O or 1/I, which customers confuse.
const ACCOUNT_ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// How many characters an account number has: 32^7 (3.4e10) numbers, typed in seconds.
pub const ACCOUNT_LEN: usize = 7;

/// A new random account number, e.g. `K7Q2ZPM`.
pub fn new_paybill_account() -> String {
    let mut bytes = [0u8; ACCOUNT_LEN];
    // The OS generator failing is unrecoverable, as for every other id.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes.iter().map(|b| char::from(ACCOUNT_ALPHABET[usize::from(b % 32)])).collect()
}

/// The account number a customer typed, as stored: capitals, without spaces, dashes or dots.
/// `None` when it cannot be one (wrong length, or a character no account number has).
pub fn normalize_paybill_account(typed: &str) -> Option<String> {
    let squeezed: String =
        typed.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '_')).map(|c| c.to_ascii_uppercase()).collect();
    (squeezed.len() == ACCOUNT_LEN && squeezed.bytes().all(|b| ACCOUNT_ALPHABET.contains(&b))).then_some(squeezed)
}

/// A pending payment of KES 100 for tests.
#[cfg(test)]
pub(crate) fn example() -> Payment {
    Payment {
        id: PaymentId::generate(),
        status: Status::Pending,
        amount: daraja::Amount::new(100).unwrap(),
        phone: daraja::Msisdn::parse("254712345678").unwrap(),
        account_reference: "ref".into(),
        description: "desc".into(),
        metadata: serde_json::json!({"order": 7}),
        webhook_url: Some("https://shop.example/hook".into()),
        customer_email: Some("a@example.com".into()),
        merchant_request_id: Some(daraja::MerchantRequestId::parse("m-1").unwrap()),
        checkout_request_id: Some(daraja::CheckoutRequestId::parse("ws_CO_1").unwrap()),
        receipt: None,
        transaction_date: None,
        failure_reason: None,
        result_code: None,
        result_desc: None,
        settled_by: None,
        needs_review: false,
        created_at: 1,
        updated_at: 1,
        settled_at: None,
        callback_token_hash: "hash".into(),
        api_key_id: "key_1".into(),
        amount_received: 0,
        refunded_amount: 0,
        paybill: None,
        paybill_account: Some("K7Q2ZPM".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_shapes() {
        let id = PaymentId::generate();
        assert_eq!(PaymentId::parse(id.as_str()), Some(id));
        for bad in [
            "",
            "pay_",
            "pay_XYZ",
            "pay_../../etc/passwd",
            "pay_0123456789abcdef0123456G",
            "key_0123456789abcdef01234567",
        ] {
            assert!(PaymentId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn account_numbers_avoid_look_alikes_and_match_however_typed() {
        for _ in 0..200 {
            let account = new_paybill_account();
            assert_eq!(account.len(), ACCOUNT_LEN);
            assert!(!account.contains(['0', 'O', '1', 'I']), "{account}");
            let typed = format!(" {}-{} ", account[..3].to_ascii_lowercase(), &account[3..]);
            assert_eq!(normalize_paybill_account(&typed).as_deref(), Some(account.as_str()));
        }
        for bad in ["", "ABC", "K7Q2ZP0", "K7Q2ZPMX", "K7Q2ZP\u{e9}"] {
            assert_eq!(normalize_paybill_account(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_catalogued_failure_code_has_a_reason() {
        for info in daraja::ResultCode::catalogue() {
            let code = daraja::ResultCode::from_wire(info.code);
            let reason = FailureReason::from_result_code(&code);
            assert_eq!(FailureReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(FailureReason::from_result_code(&daraja::ResultCode::Cancelled), FailureReason::Cancelled);
        assert_eq!(FailureReason::from_result_code(&daraja::ResultCode::from_wire("77")), FailureReason::System);
    }
}
