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
mod tests {
    use super::*;

    fn callback(id: &str, code: &str, paid: Option<(u64, &str, &str)>) -> StkCallback {
        let meta = paid
            .map(|(amount, receipt, phone)| {
                format!(
                    r#","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":{amount}}},{{"Name":"MpesaReceiptNumber","Value":"{receipt}"}},{{"Name":"TransactionDate","Value":20250101120000}},{{"Name":"PhoneNumber","Value":{phone}}}]}}"#
                )
            })
            .unwrap_or_default();
        let code_json = if code.bytes().all(|b| b.is_ascii_digit()) { code.to_owned() } else { format!("\"{code}\"") };
        let body = format!(
            r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m","CheckoutRequestID":"{id}","ResultCode":{code_json},"ResultDesc":"d"{meta}}}}}}}"#
        );
        daraja::callback::parse(body.as_bytes()).unwrap()
    }

    /// A test-lifetime id for a `Current` that borrows it.
    fn leak<T>(id: T) -> &'static T {
        Box::leak(Box::new(id))
    }

    fn receipt(text: &str) -> Option<&'static daraja::ReceiptNumber> {
        Some(leak(daraja::ReceiptNumber::parse(text).unwrap()))
    }

    fn current(status: Status) -> Current<'static> {
        Current {
            status,
            amount: daraja::Amount::new(45).unwrap(),
            phone: daraja::Msisdn::parse("254712345678").unwrap(),
            checkout_request_id: Some(leak(daraja::CheckoutRequestId::parse("ws_CO_1").unwrap())),
            merchant_request_id: Some(leak(daraja::MerchantRequestId::parse("m").unwrap())),
            receipt: None,
            result_code: None,
            settled_by: None,
        }
    }

    const PAID: Option<(u64, &str, &str)> = Some((45, "UAB1C2D3E4", "254712345678"));

    #[test]
    fn success_pays_a_pending_payment() {
        let d = on_callback(&current(Status::Pending), &callback("ws_CO_1", "0", PAID));
        assert_eq!(d.outcome, Outcome::Applied);
        let change = d.change.unwrap();
        assert_eq!(change.status, Status::Paid);
        assert_eq!(change.receipt.as_deref(), Some("UAB1C2D3E4"));
        assert_eq!(change.settled_by, SettledBy::Callback);
        assert!(change.transaction_date.is_some());
    }

    #[test]
    fn a_repeated_success_is_a_duplicate() {
        let c = Current { receipt: receipt("UAB1C2D3E4"), result_code: Some("0"), ..current(Status::Paid) };
        let d = on_callback(&c, &callback("ws_CO_1", "0", PAID));
        assert_eq!((d.outcome, d.change), (Outcome::Duplicate, None));
    }

    #[test]
    fn nothing_moves_a_paid_payment() {
        let c = Current { receipt: receipt("UAB1C2D3E4"), result_code: Some("0"), ..current(Status::Paid) };
        let fail = on_callback(&c, &callback("ws_CO_1", "1032", None));
        assert_eq!((fail.outcome, fail.change), (Outcome::Conflict, None));
        let other = on_callback(&c, &callback("ws_CO_1", "0", Some((45, "UZZ9Z9Z9Z9", "254712345678"))));
        assert_eq!((other.outcome, other.change), (Outcome::Conflict, None));
    }

    #[test]
    fn failures_map_to_reasons_and_repeat_as_duplicates() {
        let d = on_callback(&current(Status::Pending), &callback("ws_CO_1", "1032", None));
        let change = d.change.unwrap();
        assert_eq!((change.status, change.failure_reason), (Status::Failed, Some(FailureReason::Cancelled)));
        let c = Current { result_code: Some("1032"), settled_by: Some(SettledBy::Callback), ..current(Status::Failed) };
        assert_eq!(on_callback(&c, &callback("ws_CO_1", "1032", None)).outcome, Outcome::Duplicate);
        assert_eq!(on_callback(&c, &callback("ws_CO_1", "1037", None)).outcome, Outcome::Conflict);
    }

    #[test]
    fn a_late_success_pays_and_flags_a_failed_or_expired_payment() {
        for status in [Status::Failed, Status::Expired] {
            let d = on_callback(&current(status), &callback("ws_CO_1", "0", PAID));
            assert_eq!(d.outcome, Outcome::LateSuccess);
            assert!(d.outcome.needs_review());
            assert_eq!(d.change.unwrap().status, Status::Paid);
        }
        let late_fail = on_callback(&current(Status::Expired), &callback("ws_CO_1", "1032", None));
        assert_eq!((late_fail.outcome, late_fail.change), (Outcome::LateFailure, None));
    }

    #[test]
    fn mismatches_are_flagged_and_pay_nothing() {
        for cb in [
            callback("ws_CO_2", "0", PAID),
            callback("ws_CO_1", "0", Some((1, "UAB1C2D3E4", "254712345678"))),
            callback("ws_CO_1", "0", Some((45, "UAB1C2D3E4", "254799999999"))),
            callback("ws_CO_2", "1032", None),
        ] {
            let d = on_callback(&current(Status::Pending), &cb);
            assert_eq!((d.outcome, d.change.clone()), (Outcome::Mismatch, None), "{}", d.note);
        }
    }

    #[test]
    fn a_callback_before_the_push_answer_supplies_the_checkout_id() {
        let c = Current { checkout_request_id: None, ..current(Status::Pending) };
        let d = on_callback(&c, &callback("ws_CO_9", "0", PAID));
        assert_eq!(d.change.unwrap().checkout_request_id.as_deref(), Some("ws_CO_9"));
    }

    #[test]
    fn a_later_callback_adds_the_receipt_to_a_query_settlement() {
        let c = Current { result_code: Some("0"), settled_by: Some(SettledBy::Query), ..current(Status::Paid) };
        let d = on_callback(&c, &callback("ws_CO_1", "0", PAID));
        assert_eq!(d.outcome, Outcome::ReceiptAdded);
        let change = d.change.unwrap();
        assert_eq!(change.receipt.as_deref(), Some("UAB1C2D3E4"));
        assert_eq!(change.settled_by, SettledBy::Query);
    }

    fn query(code: &str) -> QueryResult {
        QueryResult {
            merchant_request_id: "m".into(),
            checkout_request_id: "ws_CO_1".into(),
            result_code: daraja::ResultCode::from_wire(code),
            result_desc: "d".into(),
        }
    }

    #[test]
    fn queries_settle_only_pending_payments() {
        let d = on_query(&current(Status::Pending), &query("0"));
        let change = d.change.unwrap();
        assert_eq!((change.status, change.settled_by, change.receipt), (Status::Paid, SettledBy::Query, None));
        let failed = on_query(&current(Status::Pending), &query("1037")).change.unwrap();
        assert_eq!(failed.failure_reason, Some(FailureReason::Unreachable));

        let paid = Current { receipt: receipt("UAB1C2D3E4"), result_code: Some("0"), ..current(Status::Paid) };
        assert_eq!(on_query(&paid, &query("0")).outcome, Outcome::Duplicate);
        let contradiction = on_query(&paid, &query("1032"));
        assert_eq!((contradiction.outcome, contradiction.change), (Outcome::Conflict, None));
    }

    /// An answer naming another transaction (a mix-up on the way, or a Daraja bug) says nothing
    /// about this payment: recorded with the ids it named, flagged, never applied.
    #[test]
    fn a_query_answer_about_another_transaction_is_flagged_not_applied() {
        let other = QueryResult { checkout_request_id: "ws_CO_2".into(), ..query("0") };
        let d = on_query(&current(Status::Pending), &other);
        assert_eq!((d.outcome, d.change), (Outcome::Mismatch, None));
        assert!(d.outcome.needs_review());
        assert!(d.note.contains("ws_CO_2") && d.note.contains("ws_CO_1"), "{}", d.note);

        let other_merchant = QueryResult { merchant_request_id: "m-other".into(), ..query("0") };
        assert_eq!(on_query(&current(Status::Pending), &other_merchant).outcome, Outcome::Mismatch);
        let nameless = QueryResult { checkout_request_id: String::new(), ..query("0") };
        assert_eq!(on_query(&current(Status::Pending), &nameless).outcome, Outcome::Mismatch);
        let unpushed = Current { checkout_request_id: None, ..current(Status::Pending) };
        assert_eq!(on_query(&unpushed, &query("0")).outcome, Outcome::Mismatch, "nothing was asked about");

        // The MerchantRequestID is compared only when both sides know one.
        let silent = QueryResult { merchant_request_id: String::new(), ..query("0") };
        assert_eq!(on_query(&current(Status::Pending), &silent).outcome, Outcome::Applied);
        let unknown = Current { merchant_request_id: None, ..current(Status::Pending) };
        assert_eq!(on_query(&unknown, &query("0")).outcome, Outcome::Applied);
    }

    #[test]
    fn a_query_success_for_an_expired_payment_is_flagged_not_applied() {
        let expired = Current { settled_by: Some(SettledBy::Expiry), ..current(Status::Expired) };
        let d = on_query(&expired, &query("0"));
        assert_eq!((d.outcome, d.change), (Outcome::Conflict, None));
        assert!(d.outcome.needs_review());
        assert_eq!(on_query(&expired, &query("1037")).outcome, Outcome::Duplicate, "a failure agrees with expiry");
    }
}
