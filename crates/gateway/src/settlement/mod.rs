//! The settlement rules, as pure functions: given a payment as stored and a callback (or a
//! query answer), decide what happens. Both storage backends call these inside the
//! transaction that holds the payment's row, so the rules exist once and are tested here.
//!
//! - A callback is applied once; duplicates are recorded, never re-applied.
//! - `paid` is final: nothing moves a payment out of it.
//! - A success callback (with a receipt) for a `failed` or `expired` payment means money moved:
//!   the payment becomes `paid` and is flagged for review.
//! - Every other conflict (a CheckoutRequestID, amount or phone that does not match, a
//!   contradiction between callback and query) is recorded and flagged, and marks nothing paid.
//! - A query settles only a `pending` payment and never overrides a callback; a later callback
//!   may add the receipt to a payment a query settled.

pub mod c2b;
pub mod plan;
pub mod receipt;
pub mod refund;

use daraja::{CheckoutRequestId, MerchantRequestId, QueryResult, ReceiptNumber, StkCallback};

use crate::payment::{FailureReason, SettledBy, Status};

/// The parts of a stored payment the rules look at.
#[derive(Debug, Clone)]
pub struct Current<'a> {
    /// State.
    pub status: Status,
    /// Amount requested.
    pub amount: daraja::Amount,
    /// Phone prompted.
    pub phone: daraja::Msisdn,
    /// The CheckoutRequestID Daraja gave the push, if its answer was stored.
    pub checkout_request_id: Option<&'a CheckoutRequestId>,
    /// The MerchantRequestID Daraja gave the push, if its answer was stored.
    pub merchant_request_id: Option<&'a MerchantRequestId>,
    /// Receipt, if known.
    pub receipt: Option<&'a ReceiptNumber>,
    /// Result code, if settled.
    pub result_code: Option<&'a str>,
    /// What settled it.
    pub settled_by: Option<SettledBy>,
}

/// How a callback was classified. Stored with the raw body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It settled the payment.
    Applied,
    /// It repeated what is already recorded.
    Duplicate,
    /// It added the receipt to a payment a query had settled.
    ReceiptAdded,
    /// A success after the payment had failed or expired: now paid and flagged.
    LateSuccess,
    /// A failure after the payment had expired: recorded only.
    LateFailure,
    /// Its CheckoutRequestID, amount or phone does not match the payment: flagged, not applied.
    Mismatch,
    /// It contradicts how the payment was settled: flagged, not applied.
    Conflict,
    /// No payment has its token.
    Orphan,
    /// It could not be parsed.
    Malformed,
    /// A payment by hand for less than what is still due: counted, not yet paid.
    Partial,
    /// A payment by hand for more than what was due: paid, and the excess flagged for refund.
    Overpaid,
    /// A payment by hand that no open payment takes: for staff.
    Unmatched,
    /// A payment by hand that is the payment's own STK transaction, heard of again.
    SameTransaction,
}

impl Outcome {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::ReceiptAdded => "receipt_added",
            Self::LateSuccess => "late_success",
            Self::LateFailure => "late_failure",
            Self::Mismatch => "mismatch",
            Self::Conflict => "conflict",
            Self::Orphan => "orphan",
            Self::Malformed => "malformed",
            Self::Partial => "partial",
            Self::Overpaid => "overpaid",
            Self::Unmatched => "unmatched",
            Self::SameTransaction => "same_transaction",
        }
    }

    /// Whether staff should review it.
    pub fn needs_review(self) -> bool {
        matches!(
            self,
            Self::LateSuccess
                | Self::Mismatch
                | Self::Conflict
                | Self::Orphan
                | Self::Malformed
                | Self::Overpaid
                | Self::Unmatched
        )
    }
}

/// A change to write to the payment row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// New state.
    pub status: Status,
    /// Failure reason (for `failed`).
    pub failure_reason: Option<FailureReason>,
    /// Result code to record.
    pub result_code: String,
    /// Result description to record.
    pub result_desc: String,
    /// Receipt to record.
    pub receipt: Option<ReceiptNumber>,
    /// M-Pesa's transaction time, UTC milliseconds.
    pub transaction_date: Option<i64>,
    /// The CheckoutRequestID, when the callback is the first to tell it.
    pub checkout_request_id: Option<CheckoutRequestId>,
    /// What settled it (unchanged for a receipt added later).
    pub settled_by: SettledBy,
}

/// What to do with a callback or query answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Classification.
    pub outcome: Outcome,
    /// The row change, if any.
    pub change: Option<Change>,
    /// Why, in a sentence for the timeline.
    pub note: String,
}

impl Decision {
    pub(crate) fn record(outcome: Outcome, note: impl Into<String>) -> Self {
        Self { outcome, change: None, note: note.into() }
    }
}

/// Decides what a parsed callback does to a payment found by its token.
pub fn on_callback(current: &Current<'_>, cb: &StkCallback) -> Decision {
    let cb_id = &cb.checkout_request_id;
    if let Some(known) = current.checkout_request_id
        && known != cb_id
    {
        return Decision::record(
            Outcome::Mismatch,
            format!("callback is for CheckoutRequestID {cb_id}, the payment's is {known}"),
        );
    }
    let code = cb.result_code.as_str().to_owned();
    let desc = cb.result_desc.clone();
    let first_checkout_id = current.checkout_request_id.is_none().then(|| cb_id.clone());

    let Some(paid) = &cb.payment else {
        // A failure result.
        let reason = FailureReason::from_result_code(&cb.result_code);
        return match current.status {
            Status::Pending => Decision {
                outcome: Outcome::Applied,
                change: Some(Change {
                    status: Status::Failed,
                    failure_reason: Some(reason),
                    result_code: code,
                    result_desc: desc,
                    receipt: None,
                    transaction_date: None,
                    checkout_request_id: first_checkout_id,
                    settled_by: SettledBy::Callback,
                }),
                note: format!("failed: {} ({})", reason.as_str(), cb.result_code),
            },
            Status::Failed if current.result_code == Some(code.as_str()) => {
                Decision::record(Outcome::Duplicate, format!("repeats result {code}"))
            }
            Status::Failed if current.settled_by == Some(SettledBy::Push) => {
                Decision::record(Outcome::Duplicate, format!("result {code} for a push Daraja refused"))
            }
            Status::Expired => Decision::record(Outcome::LateFailure, format!("result {code} arrived after expiry")),
            Status::Failed | Status::Paid => Decision::record(
                Outcome::Conflict,
                format!(
                    "result {code} contradicts the recorded {} ({})",
                    current.status.as_str(),
                    current.result_code.unwrap_or("no code")
                ),
            ),
        };
    };

    if paid.amount != u64::from(current.amount.shillings()) || paid.phone != current.phone {
        return Decision::record(
            Outcome::Mismatch,
            format!(
                "success for KES {} from {} does not match the payment's KES {} from {}",
                paid.amount, paid.phone, current.amount, current.phone
            ),
        );
    }
    let receipt = &paid.receipt;
    let paid_change = |settled_by| Change {
        status: Status::Paid,
        failure_reason: None,
        result_code: code.clone(),
        result_desc: desc.clone(),
        receipt: Some(receipt.clone()),
        transaction_date: Some(crate::time_fmt::to_millis(paid.transaction_date)),
        checkout_request_id: first_checkout_id.clone(),
        settled_by,
    };
    match (current.status, current.receipt) {
        (Status::Pending, _) => Decision {
            outcome: Outcome::Applied,
            change: Some(paid_change(SettledBy::Callback)),
            note: format!("paid, receipt {receipt}"),
        },
        (Status::Paid, Some(known)) if known == receipt => {
            Decision::record(Outcome::Duplicate, format!("repeats receipt {receipt}"))
        }
        (Status::Paid, Some(known)) => Decision::record(
            Outcome::Conflict,
            format!("second receipt {receipt} for a payment already paid with {known}"),
        ),
        (Status::Paid, None) => Decision {
            outcome: Outcome::ReceiptAdded,
            change: Some(paid_change(current.settled_by.unwrap_or(SettledBy::Query))),
            note: format!("receipt {receipt} added to a payment a query confirmed"),
        },
        (Status::Failed | Status::Expired, _) => Decision {
            outcome: Outcome::LateSuccess,
            change: Some(paid_change(SettledBy::Callback)),
            note: format!("paid after it was {}: receipt {receipt}; review", current.status.as_str()),
        },
    }
}

/// Overrides a decision whose receipt (or CheckoutRequestID) already settled another payment:
/// one M-Pesa transaction cannot pay two payments, so it is a conflict and applies nothing.
pub fn already_used(receipt: Option<&ReceiptNumber>, other_payment: Option<&str>) -> Decision {
    let note = match (receipt, other_payment) {
        (Some(receipt), Some(other)) => format!("receipt {receipt} already paid payment {other}"),
        _ => "its CheckoutRequestID already belongs to another payment".to_owned(),
    };
    Decision::record(Outcome::Conflict, note)
}

/// Decides what an STK Query's final answer does. Only a `pending` payment changes, and only
/// by an answer about its own transaction: one naming another CheckoutRequestID (or
/// MerchantRequestID), or none, is recorded with the ids it named and flagged, never applied.
pub fn on_query(current: &Current<'_>, result: &QueryResult) -> Decision {
    let asked = current.checkout_request_id.map_or("", CheckoutRequestId::as_str);
    if !result.is_about(asked, current.merchant_request_id.map(MerchantRequestId::as_str)) {
        return Decision::record(
            Outcome::Mismatch,
            format!(
                "the query answer ({}) names CheckoutRequestID {:?} and MerchantRequestID {:?}, \
                 not the {asked:?} asked about: not applied; review",
                result.result_code.as_str(),
                result.checkout_request_id,
                result.merchant_request_id,
            ),
        );
    }
    let code = result.result_code.as_str().to_owned();
    let success = result.result_code.is_success();
    match current.status {
        Status::Pending => {
            let (status, failure_reason) = if success {
                (Status::Paid, None)
            } else {
                (Status::Failed, Some(FailureReason::from_result_code(&result.result_code)))
            };
            Decision {
                outcome: Outcome::Applied,
                change: Some(Change {
                    status,
                    failure_reason,
                    result_code: code.clone(),
                    result_desc: result.result_desc.clone(),
                    receipt: None,
                    transaction_date: None,
                    checkout_request_id: None,
                    settled_by: SettledBy::Query,
                }),
                note: format!("query answered {code}: {}", status.as_str()),
            }
        }
        Status::Expired if success => Decision::record(
            Outcome::Conflict,
            format!("query answered {code} (paid) but the payment had expired: money may have moved; review"),
        ),
        _ if current.result_code == Some(code.as_str()) => {
            Decision::record(Outcome::Duplicate, format!("query agrees ({code})"))
        }
        Status::Paid | Status::Failed if success != (current.status == Status::Paid) => Decision::record(
            Outcome::Conflict,
            format!("query answered {code} but the payment is {}", current.status.as_str()),
        ),
        _ => Decision::record(Outcome::Duplicate, format!("query answered {code}")),
    }
}

#[cfg(test)]
mod tests;
