//! Transaction Status: ask Daraja about any transaction of the shortcode, by receipt or by the
//! `OriginatorConversationID` of an initiator request (a reversal whose result never came).
//!
//! `POST /mpesa/transactionstatus/v1/query`; the answer arrives at the `ResultURL`
//! ([`crate::result::parse`], read with [`report`]).

use serde::Serialize;
use time::OffsetDateTime;

use crate::client::Client;
use crate::error::Error;
use crate::fields::CallbackUrl;
use crate::ids::ReceiptNumber;
use crate::initiator::Initiator;
use crate::merchant::ShortCode;
use crate::result::{Accepted, AsyncResult, ResultKind};
use crate::reversal::{Remarks, occasion, whole_shillings};
use crate::timestamp::Timestamp;

/// Which transaction to ask about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// By its receipt (`TransactionID`).
    Receipt(ReceiptNumber),
    /// By the `OriginatorConversationID` an initiator request was answered with.
    Conversation(String),
}

/// A Transaction Status query.
#[derive(Debug, Clone)]
pub struct StatusQuery {
    /// Who asks (needs the Transaction Status role).
    pub initiator: Initiator,
    /// What to look up.
    pub target: Target,
    /// The shortcode whose transaction it is (`PartyA`, identifier type 4).
    pub party_a: ShortCode,
    /// Where the answer goes.
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
    #[serde(rename = "TransactionID", skip_serializing_if = "Option::is_none")]
    transaction_id: Option<&'a str>,
    #[serde(rename = "OriginalConversationID", skip_serializing_if = "Option::is_none")]
    original_conversation_id: Option<&'a str>,
    party_a: u32,
    identifier_type: &'static str,
    #[serde(rename = "ResultURL")]
    result_url: &'a str,
    #[serde(rename = "QueueTimeOutURL")]
    queue_timeout_url: &'a str,
    remarks: &'a str,
    occasion: &'a str,
}

impl Client {
    /// Asks Daraja about a transaction. `Ok` means queued: the answer comes to the
    /// `ResultURL`.
    #[tracing::instrument(skip_all, fields(party_a = %query.party_a))]
    pub async fn transaction_status(&self, query: &StatusQuery) -> Result<Accepted, Error> {
        let (transaction_id, original_conversation_id) = match &query.target {
            Target::Receipt(r) => (Some(r.as_str()), None),
            Target::Conversation(id) => {
                let id = id.trim();
                if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(crate::validation::InvalidField::new(
                        "OriginalConversationID",
                        "must be the 1 to 64 character id Daraja answered the request with",
                    )
                    .into());
                }
                (None, Some(id))
            }
        };
        let body = Wire {
            initiator: query.initiator.name(),
            security_credential: query.initiator.credential().expose(),
            command_id: "TransactionStatusQuery",
            transaction_id,
            original_conversation_id,
            party_a: query.party_a.get(),
            identifier_type: "4",
            result_url: query.result_url.as_str(),
            queue_timeout_url: query.queue_timeout_url.as_str(),
            remarks: query.remarks.as_str(),
            occasion: occasion(query.occasion.as_deref())?,
        };
        let urls = (&query.result_url, &query.queue_timeout_url);
        self.queue_initiator_request("transaction_status", "mpesa/transactionstatus/v1/query", urls, &body).await
    }
}

/// What Transaction Status said about a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Daraja knows it.
    Found(Details),
    /// Daraja could not answer: its code and description (an unknown receipt, a missing role).
    Refused {
        /// What the code means.
        kind: ResultKind,
        /// `ResultCode`.
        code: String,
        /// `ResultDesc`.
        description: String,
    },
}

/// A transaction's details from its status result. Every field is optional: Daraja's set
/// varies by transaction type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    /// `ReceiptNo`.
    pub receipt: Option<ReceiptNumber>,
    /// `TransactionStatus`, e.g. `Completed`.
    pub status: Option<String>,
    /// `Amount`, when whole.
    pub amount: Option<u64>,
    /// `DebitPartyName`, e.g. `254712345678 - Jane Doe`.
    pub debit_party: Option<String>,
    /// `CreditPartyName`.
    pub credit_party: Option<String>,
    /// `FinalisedTime` (Nairobi time on the wire).
    pub finalised_at: Option<OffsetDateTime>,
    /// `ReasonType`, e.g. `Pay Bill Online` or `Reversal`.
    pub reason_type: Option<String>,
}

impl Details {
    /// Whether the status says the transaction went through.
    pub fn is_completed(&self) -> bool {
        self.status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("completed"))
    }
}

/// Reads a Transaction Status result.
pub fn report(result: &AsyncResult) -> Report {
    if !result.is_success() {
        return Report::Refused {
            kind: result.kind(),
            code: result.result_code.clone(),
            description: result.result_desc.clone(),
        };
    }
    let text = |key: &str| result.parameter(key).map(str::to_owned).filter(|v| !v.is_empty());
    Report::Found(Details {
        receipt: result.parameter("ReceiptNo").and_then(|r| ReceiptNumber::parse(r).ok()),
        status: text("TransactionStatus"),
        amount: result.parameter("Amount").and_then(whole_shillings),
        debit_party: text("DebitPartyName"),
        credit_party: text("CreditPartyName"),
        finalised_at: result
            .parameter("FinalisedTime")
            .and_then(|t| Timestamp::parse("FinalisedTime", t).ok())
            .map(Timestamp::instant),
        reason_type: text("ReasonType"),
    })
}
