//! The refund rules, as pure functions: whether a payment may be refunded, and what a
//! Reversal result, a queue timeout or a Transaction Status answer does to a refund.
//!
//! - Only a paid payment with a receipt is refunded, whole, once: while one refund is pending
//!   or succeeded no other is taken (a failed one may be followed by another).
//! - A result is applied once; copies are recorded as duplicates.
//! - `succeeded` is final. A success heard after the refund had failed means money moved: it
//!   becomes `succeeded` and is flagged for review.
//! - A queue timeout changes nothing but asks Daraja (Transaction Status) how the reversal
//!   ended; the reversal is never sent again blindly.
//! - Transaction Status finding the reversal completed (a reversal of the refund's amount, with
//!   a receipt of its own) makes the refund `succeeded`. Saying it does not know it is "not
//!   yet" (a queued reversal may not be known): asked again, and only after the last question
//!   does the refund fail (nothing moved; it may be asked for again).

use daraja::result::ResultKind;
use daraja::reversal::Outcome as Reversal;
use daraja::status::Report;

use super::Outcome;
use crate::payment::{Payment, Status};
use crate::refund::{Refund, RefundId, RefundStatus};

/// Why a payment cannot be refunded now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Only paid payments are refunded.
    NotPaid(Status),
    /// Paid, but its receipt is not known (a query settled it): Daraja reverses by receipt.
    NoReceipt,
    /// A refund of it is pending.
    InProgress(RefundId),
    /// It was refunded.
    AlreadyRefunded(RefundId),
    /// Reversal moves the whole amount; a part needs B2C.
    PartialAmount {
        /// Shillings asked for.
        asked: u64,
        /// The payment's amount.
        amount: u64,
    },
}

impl Refusal {
    /// A stable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotPaid(_) => "payment_not_paid",
            Self::NoReceipt => "payment_has_no_receipt",
            Self::InProgress(_) => "refund_in_progress",
            Self::AlreadyRefunded(_) => "payment_already_refunded",
            Self::PartialAmount { .. } => "partial_refund_unsupported",
        }
    }

    /// What is wrong and what to do, in words.
    pub fn message(&self) -> String {
        match self {
            Self::NotPaid(status) => format!(
                "the payment is {}; only a paid payment can be refunded (nothing was taken from the customer otherwise)",
                status.as_str()
            ),
            Self::NoReceipt => "the payment was confirmed without its M-Pesa receipt, and Daraja reverses by receipt; \
                                 wait for the receipt (it usually follows), or refund from the M-PESA org portal"
                .into(),
            Self::InProgress(id) => {
                format!("refund {id} of this payment is pending; follow it with GET /v1/refunds/{id}")
            }
            Self::AlreadyRefunded(id) => format!("the payment was refunded by {id}"),
            Self::PartialAmount { asked, amount } => format!(
                "amount {asked} is not the payment's KES {amount}: M-Pesa's Reversal moves the whole payment back, and a \
                 partial refund needs B2C, which Lipa does not do; leave out amount to refund the whole KES {amount}"
            ),
        }
    }
}

/// Whether `payment` may be refunded, given its refund that is pending or succeeded, if any,
/// and the amount asked for, if one was given.
pub fn may_refund(payment: &Payment, open: Option<&Refund>, asked: Option<u64>) -> Result<(), Refusal> {
    let amount = u64::from(payment.amount.shillings());
    if let Some(asked) = asked.filter(|a| *a != amount) {
        return Err(Refusal::PartialAmount { asked, amount });
    }
    if payment.status != Status::Paid {
        return Err(Refusal::NotPaid(payment.status));
    }
    match open {
        Some(r) if r.status == RefundStatus::Succeeded => return Err(Refusal::AlreadyRefunded(r.id.clone())),
        Some(r) => return Err(Refusal::InProgress(r.id.clone())),
        None => {}
    }
    if payment.receipt.is_none() {
        return Err(Refusal::NoReceipt);
    }
    Ok(())
}

/// The parts of a stored refund the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    /// Where it is.
    pub status: RefundStatus,
    /// Its reversal's receipt, if it succeeded with one.
    pub receipt: Option<&'a str>,
    /// Whether another refund of the payment is pending or succeeded (this one then cannot
    /// become `succeeded`).
    pub other_open: bool,
    /// Shillings it moves back.
    pub amount: u64,
    /// The receipt of the payment it reverses.
    pub original: Option<&'a str>,
    /// Whether this is the answer to the last Transaction Status question Lipa will ask.
    pub last_question: bool,
}

/// A change to write to the refund row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// New state.
    pub status: RefundStatus,
    /// The reversal's receipt.
    pub receipt: Option<String>,
    /// Daraja's code (or Lipa's, `R000002` for a reversal Daraja does not know).
    pub code: String,
    /// The description.
    pub desc: String,
}

/// What a message about a refund does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How the message is classified (stored with its body).
    pub outcome: Outcome,
    /// The change to write, if any.
    pub change: Option<Change>,
    /// Whether staff should look at the refund.
    pub review: bool,
    /// Whether to ask Transaction Status about it at its next check.
    pub ask_status: bool,
    /// Why, in a sentence.
    pub note: String,
}

impl Verdict {
    fn recorded(outcome: Outcome, note: impl Into<String>) -> Self {
        Self { outcome, change: None, review: outcome.needs_review(), ask_status: false, note: note.into() }
    }

    fn succeeded(outcome: Outcome, receipt: Option<String>, code: &str, desc: &str, note: impl Into<String>) -> Self {
        let change = Change { status: RefundStatus::Succeeded, receipt, code: code.into(), desc: desc.into() };
        Self { outcome, change: Some(change), review: outcome.needs_review(), ask_status: false, note: note.into() }
    }

    fn failed(code: &str, desc: &str, note: impl Into<String>) -> Self {
        let change = Change { status: RefundStatus::Failed, receipt: None, code: code.into(), desc: desc.into() };
        Self { outcome: Outcome::Applied, change: Some(change), review: false, ask_status: false, note: note.into() }
    }
}

/// The success of a refund heard while it was `pending` or `failed`.
fn success(current: Current<'_>, receipt: Option<String>, code: &str, desc: &str, what: &str) -> Verdict {
    match current.status {
        RefundStatus::Pending if current.other_open => Verdict::recorded(
            Outcome::Conflict,
            format!("{what}, but another refund of this payment is open: check the M-Pesa statement"),
        ),
        RefundStatus::Pending => Verdict::succeeded(Outcome::Applied, receipt, code, desc, what),
        RefundStatus::Failed if current.other_open => Verdict::recorded(
            Outcome::Conflict,
            format!(
                "{what} after the refund had failed, and another refund of this payment is open: check the M-Pesa statement"
            ),
        ),
        RefundStatus::Failed => Verdict::succeeded(
            Outcome::LateSuccess,
            receipt,
            code,
            desc,
            format!("{what} after the refund had been marked failed: the money is back with the customer"),
        ),
        RefundStatus::Succeeded => match (current.receipt, receipt.as_deref()) {
            (Some(have), Some(new)) if have != new => Verdict::recorded(
                Outcome::Conflict,
                format!("a second reversal receipt {new} for a refund reversed by {have}: check the M-Pesa statement"),
            ),
            _ => Verdict::recorded(Outcome::Duplicate, "the refund had succeeded already"),
        },
    }
}

/// A Reversal result at the refund's result URL.
pub fn on_result(current: Current<'_>, result: &Reversal) -> Verdict {
    match result {
        Reversal::Reversed { receipt, .. } => {
            let receipt = receipt.as_ref().map(ToString::to_string);
            success(current, receipt, "0", "Reversed", "Daraja reversed the payment")
        }
        Reversal::AlreadyReversed => {
            let mut v = success(
                current,
                None,
                "R000001",
                "The transaction has already been reversed.",
                "Daraja says the payment had been reversed already: the money is back with the customer, once",
            );
            // Perhaps by someone in the org portal: staff should know either way.
            if current.status == RefundStatus::Pending && v.change.is_some() {
                v.review = true;
            }
            v
        }
        Reversal::Refused { kind, code, description } => match current.status {
            RefundStatus::Pending => {
                let note =
                    kind.remedy().map_or_else(|| format!("Daraja refused the reversal: {description}"), str::to_owned);
                Verdict::failed(code, description, note)
            }
            RefundStatus::Failed => Verdict::recorded(Outcome::Duplicate, "the refund had failed already"),
            RefundStatus::Succeeded => Verdict::recorded(
                Outcome::Conflict,
                format!("Daraja refused ({code}) a reversal Lipa had heard succeed: check the M-Pesa statement"),
            ),
        },
    }
}

/// A notice at the refund's queue-timeout URL: Daraja gave up queueing the reversal, or will
/// still carry it out. Ask Transaction Status; never send it again.
pub fn on_timeout(current: Current<'_>) -> Verdict {
    match current.status {
        RefundStatus::Pending => Verdict {
            outcome: Outcome::Applied,
            change: None,
            review: false,
            ask_status: true,
            note: "Daraja's queue timed out; Transaction Status will say whether the reversal happened".into(),
        },
        _ => Verdict::recorded(Outcome::Duplicate, "the refund had ended already"),
    }
}

/// A Transaction Status answer about the refund's reversal (asked by its
/// `OriginatorConversationID`).
pub fn on_status(current: Current<'_>, report: &Report) -> Verdict {
    match report {
        Report::Found(details) if details.is_completed() => {
            let receipt = details.receipt.as_ref().map(ToString::to_string);
            let own_receipt = receipt.as_deref().is_some_and(|r| Some(r) != current.original);
            let amount_ok = details.amount.is_none_or(|a| a == current.amount);
            let kind_ok = details.reason_type.as_deref().is_none_or(|k| k.to_ascii_lowercase().contains("revers"));
            if !(own_receipt && amount_ok && kind_ok) {
                return Verdict::recorded(
                    Outcome::Conflict,
                    format!(
                        "Transaction Status answered with a transaction that is not this reversal (receipt {}, amount {:?}, {}): \
                         check the M-Pesa statement",
                        receipt.as_deref().unwrap_or("none"),
                        details.amount,
                        details.reason_type.as_deref().unwrap_or("no kind")
                    ),
                );
            }
            success(
                current,
                receipt,
                "0",
                "Reversed (Transaction Status)",
                "Transaction Status found the reversal completed",
            )
        }
        Report::Found(details) => match current.status {
            RefundStatus::Pending => Verdict {
                outcome: Outcome::Applied,
                change: None,
                review: false,
                ask_status: true,
                note: format!(
                    "Transaction Status found the reversal {}; asking again later",
                    details.status.as_deref().unwrap_or("without a status")
                ),
            },
            _ => Verdict::recorded(Outcome::Duplicate, "the refund had ended already"),
        },
        Report::Refused { kind: ResultKind::UnknownTransaction, code, description } => match current.status {
            RefundStatus::Pending if current.last_question => Verdict::failed(
                code,
                description,
                "Daraja still had no record of the reversal at Lipa's last question: nothing moved; the refund may be \
                 asked for again",
            ),
            RefundStatus::Pending => Verdict {
                outcome: Outcome::Applied,
                change: None,
                review: false,
                ask_status: true,
                note: "Daraja does not know the reversal yet (a queued one may not be known); asking again later"
                    .into(),
            },
            _ => Verdict::recorded(Outcome::Duplicate, "the refund had ended already"),
        },
        Report::Refused { kind, code, description } => match current.status {
            RefundStatus::Pending => Verdict {
                outcome: Outcome::Conflict,
                change: None,
                review: true,
                ask_status: false,
                note: kind.remedy().map_or_else(
                    || {
                        format!(
                            "Transaction Status could not answer ({code} {description}): check the M-Pesa statement"
                        )
                    },
                    |r| format!("Transaction Status could not answer ({code}): {r}"),
                ),
            },
            _ => Verdict::recorded(Outcome::Duplicate, "the refund had ended already"),
        },
    }
}

#[cfg(test)]
mod tests;
