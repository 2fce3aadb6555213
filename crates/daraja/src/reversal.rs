//! Reversal: move a whole M-Pesa payment (STK or C2B) back to the customer.
//!
//! `POST /mpesa/reversal/v1/request`, answered at once with ids; the result arrives later at
//! the `ResultURL` ([`crate::result::parse`], read with [`outcome`]) or, if the request waited
//! too long, a notice at the `QueueTimeOutURL`. A timed-out reversal may still happen: ask
//! about it with Transaction Status, never send it again blindly (a second reversal could move
//! money twice; Daraja answers `R000001` only once the first is done).
//!
//! Reversal moves the whole transaction: no partial reversal is documented (a partial refund
//! is a B2C payment).

use serde::Serialize;

use crate::amount::Amount;
use crate::client::Client;
use crate::error::Error;
use crate::fields::CallbackUrl;
use crate::ids::ReceiptNumber;
use crate::initiator::Initiator;
use crate::merchant::ShortCode;
use crate::result::{Accepted, AsyncResult, ResultKind};
use crate::validation::{InvalidField, excerpt};

/// The `RecieverIdentifierType` (Daraja's spelling) of a reversal: what kind of party
/// `ReceiverParty` is. Sources disagree: the portal says `11`, Safaricom's Postman collection
/// `4`. The default is `11`; set it when Daraja refuses that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifierType(u8);

impl IdentifierType {
    /// `11`, as Safaricom's portal documents for reversals.
    pub const PORTAL: Self = Self(11);
    /// `4` (an organisation shortcode), as Safaricom's Postman collection sends.
    pub const SHORTCODE: Self = Self(4);

    /// Reads a number from 1 to 99.
    pub fn parse(text: &str) -> Result<Self, InvalidField> {
        match text.trim().parse::<u8>() {
            Ok(n @ 1..=99) => Ok(Self(n)),
            _ => Err(InvalidField::new(
                "RecieverIdentifierType",
                format!(
                    "\"{}\" is not an identifier type; use 11 (the portal's) or 4 (the Postman collection's)",
                    excerpt(text)
                ),
            )),
        }
    }

    /// The number.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for IdentifierType {
    fn default() -> Self {
        Self::PORTAL
    }
}

/// `Remarks` (2 to 100 characters) and `Occasion` (up to 100) of initiator requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remarks(String);

impl Remarks {
    /// Trims, then checks the length and that there are no control characters.
    pub fn parse(text: &str) -> Result<Self, InvalidField> {
        let t = text.trim();
        let n = t.chars().count();
        if !(2..=100).contains(&n) || t.chars().any(char::is_control) {
            return Err(InvalidField::new(
                "Remarks",
                format!("\"{}\" must be 2 to 100 characters on one line", excerpt(t)),
            ));
        }
        Ok(Self(t.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A reversal request.
#[derive(Debug, Clone)]
pub struct Reversal {
    /// Who asks (needs the Reversal role in the org portal).
    pub initiator: Initiator,
    /// The receipt of the payment to reverse.
    pub transaction_id: ReceiptNumber,
    /// The payment's whole amount.
    pub amount: Amount,
    /// The shortcode that received the payment.
    pub receiver_party: ShortCode,
    /// See [`IdentifierType`].
    pub receiver_identifier_type: IdentifierType,
    /// Where the result goes.
    pub result_url: CallbackUrl,
    /// Where a queue timeout goes.
    pub queue_timeout_url: CallbackUrl,
    /// Why, for the statement.
    pub remarks: Remarks,
    /// Optional further text (up to 100 characters).
    pub occasion: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Wire<'a> {
    initiator: &'a str,
    security_credential: &'a str,
    #[serde(rename = "CommandID")]
    command_id: &'static str,
    #[serde(rename = "TransactionID")]
    transaction_id: &'a str,
    amount: u32,
    receiver_party: u32,
    // Daraja's spelling: the correct one is refused.
    #[serde(rename = "RecieverIdentifierType")]
    reciever_identifier_type: String,
    #[serde(rename = "ResultURL")]
    result_url: &'a str,
    #[serde(rename = "QueueTimeOutURL")]
    queue_timeout_url: &'a str,
    remarks: &'a str,
    occasion: &'a str,
}

/// Checks `Occasion`: up to 100 characters on one line.
pub(crate) fn occasion(text: Option<&str>) -> Result<&str, InvalidField> {
    let t = text.map_or("", str::trim);
    if t.chars().count() > 100 || t.chars().any(char::is_control) {
        return Err(InvalidField::new("Occasion", "must be at most 100 characters on one line"));
    }
    Ok(t)
}

impl Client {
    /// Asks Daraja to reverse a payment. `Ok` means queued: the result comes to the
    /// `ResultURL`.
    #[tracing::instrument(skip_all, fields(transaction_id = %request.transaction_id))]
    pub async fn reversal(&self, request: &Reversal) -> Result<Accepted, Error> {
        let body = Wire {
            initiator: request.initiator.name(),
            security_credential: request.initiator.credential().expose(),
            command_id: "TransactionReversal",
            transaction_id: request.transaction_id.as_str(),
            amount: request.amount.shillings(),
            receiver_party: request.receiver_party.get(),
            reciever_identifier_type: request.receiver_identifier_type.get().to_string(),
            result_url: request.result_url.as_str(),
            queue_timeout_url: request.queue_timeout_url.as_str(),
            remarks: request.remarks.as_str(),
            occasion: occasion(request.occasion.as_deref())?,
        };
        let urls = (&request.result_url, &request.queue_timeout_url);
        self.queue_initiator_request("reversal", "mpesa/reversal/v1/request", urls, &body).await
    }
}

/// What a reversal's result says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The money went back.
    Reversed {
        /// The reversal's own receipt (`TransactionID`), when sent.
        receipt: Option<ReceiptNumber>,
        /// `OriginalTransactionID`, when sent.
        original: Option<ReceiptNumber>,
        /// `Amount`, when sent and whole.
        amount: Option<u64>,
    },
    /// `R000001`: it had been reversed before. The money is back, once.
    AlreadyReversed,
    /// Nothing moved: Daraja's code and description.
    Refused {
        /// What the code means.
        kind: ResultKind,
        /// `ResultCode`.
        code: String,
        /// `ResultDesc`.
        description: String,
    },
}

/// Reads a reversal's result.
pub fn outcome(result: &AsyncResult) -> Outcome {
    match result.kind() {
        ResultKind::Success => Outcome::Reversed {
            receipt: result.transaction_id.as_deref().and_then(|r| ReceiptNumber::parse(r).ok()),
            original: result.parameter("OriginalTransactionID").and_then(|r| ReceiptNumber::parse(r).ok()),
            amount: result.parameter("Amount").and_then(whole_shillings),
        },
        ResultKind::AlreadyReversed => Outcome::AlreadyReversed,
        kind => Outcome::Refused { kind, code: result.result_code.clone(), description: result.result_desc.clone() },
    }
}

/// `"10"`, `"10.00"` or `10.0` as whole shillings.
pub(crate) fn whole_shillings(text: &str) -> Option<u64> {
    text.trim().parse::<f64>().ok().and_then(Amount::whole_shillings)
}
