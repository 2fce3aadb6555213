//! Paybill payments (C2B): what a customer's payment by hand does to the payment its account
//! number names. Pure, like the STK rules beside it, and planned by the same [`super::plan`].
//!
//! - One M-Pesa transaction (TransID) counts once: the store records each TransID once, and a
//!   TransID that is already a payment's STK receipt is that same transaction, not a second
//!   payment.
//! - A payment can be paid by hand while it is *open*: pending or failed (the prompt that never
//!   came is the reason to pay by hand), within its window. Payments to it add up in
//!   `amount_received`; the one that covers the amount pays it (`settled_by: c2b`, receipt =
//!   that TransID). More than the amount pays it and flags the excess for a refund.
//! - Money for a payment that is not open (already paid, expired, past its window) or for no
//!   payment at all is *unmatched*: kept for staff, who assign it or refund it.

use daraja::c2b::C2bPayment;
use daraja::{Amount, ReceiptNumber};

use super::{Change, Decision, Outcome};
use crate::payment::{SettledBy, Status};

/// What the rules look at of the payment a confirmation's account number names.
#[derive(Debug, Clone, Copy)]
pub struct Payable<'a> {
    /// State.
    pub status: Status,
    /// The amount asked.
    pub amount: Amount,
    /// Shillings paid by hand so far.
    pub amount_received: u64,
    /// Its receipt, if paid.
    pub receipt: Option<&'a ReceiptNumber>,
    /// Whether it can still be paid by hand (pending or failed, within its window).
    pub open: bool,
}

/// What becomes of the C2B transaction itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    /// Counted towards the payment (paid it, or part of it).
    Applied,
    /// The payment's STK receipt: the same transaction, heard of twice.
    SameAsStk,
    /// No open payment took it: for staff.
    Unmatched,
}

impl TxnStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::SameAsStk => "same_as_stk",
            Self::Unmatched => "unmatched",
        }
    }
}

/// What to do with a confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2bDecision {
    /// For the payment (when one is named): outcome, change, note.
    pub decision: Decision,
    /// Shillings to add to the payment's `amount_received`.
    pub received: u64,
    /// For the transaction's own row.
    pub txn: TxnStatus,
}

/// Decides what a confirmation does to the payment its account number names (`None`: no
/// payment has it).
pub fn on_confirmation(payment: Option<Payable<'_>>, txn: &C2bPayment) -> C2bDecision {
    let id = &txn.trans_id;
    let amount = txn.amount;
    let unmatched = |note: String| C2bDecision {
        decision: Decision::record(Outcome::Unmatched, note),
        received: 0,
        txn: TxnStatus::Unmatched,
    };
    let Some(p) = payment else {
        let note = if txn.bill_ref_number.is_empty() {
            format!("KES {amount} by {id} names no account number (a till payment): assign it or refund it")
        } else {
            format!(
                "KES {amount} by {id} for account {:?}, which no payment has: assign it or refund it",
                txn.bill_ref_number
            )
        };
        return unmatched(note);
    };
    if p.receipt == Some(id) {
        return C2bDecision {
            decision: Decision::record(Outcome::SameTransaction, format!("{id} is this payment's STK receipt")),
            received: 0,
            txn: TxnStatus::SameAsStk,
        };
    }
    if !p.open {
        let why = match (p.status, p.receipt) {
            (Status::Paid, Some(receipt)) => format!("the payment was already paid ({receipt}): money moved twice"),
            (Status::Paid, None) => "the payment was already paid: money moved twice".to_owned(),
            (Status::Expired, _) => "the payment had expired".to_owned(),
            _ => "the payment could no longer be paid by hand".to_owned(),
        };
        return unmatched(format!("KES {amount} by {id}: {why}; assign it elsewhere or refund it"));
    }
    let due = u64::from(p.amount.shillings());
    let total = p.amount_received + amount;
    if total < due {
        return C2bDecision {
            decision: Decision::record(
                Outcome::Partial,
                format!("KES {amount} by {id}: KES {total} of {due} received, KES {} still to pay", due - total),
            ),
            received: amount,
            txn: TxnStatus::Applied,
        };
    }
    let (outcome, note) = if total > due {
        (Outcome::Overpaid, format!("paid by Paybill ({id}) with KES {} more than the amount: refund it", total - due))
    } else {
        (Outcome::Applied, format!("paid by Paybill, receipt {id}"))
    };
    C2bDecision {
        decision: Decision {
            outcome,
            change: Some(Change {
                status: Status::Paid,
                failure_reason: None,
                result_code: "0".into(),
                result_desc: format!("Paid by Paybill: KES {total} received"),
                receipt: Some(id.clone()),
                transaction_date: Some(crate::time_fmt::to_millis(txn.trans_time)),
                checkout_request_id: None,
                settled_by: SettledBy::C2b,
            }),
            note,
        },
        received: amount,
        txn: TxnStatus::Applied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirmation(account: &str, amount: u64, trans_id: &str) -> C2bPayment {
        let body = serde_json::json!({
            "TransactionType": "Pay Bill", "TransID": trans_id, "TransTime": "20261207101500",
            "TransAmount": format!("{amount}.00"), "BusinessShortCode": "174379", "BillRefNumber": account,
            "MSISDN": "254712345678", "FirstName": "A"
        });
        daraja::c2b::parse(body.to_string().as_bytes()).unwrap()
    }

    fn open(status: Status, amount: u32, received: u64) -> Payable<'static> {
        Payable {
            status,
            amount: Amount::new(u64::from(amount)).unwrap(),
            amount_received: received,
            receipt: None,
            open: true,
        }
    }

    #[test]
    fn the_full_amount_pays_an_open_payment_with_the_trans_id_as_receipt() {
        for status in [Status::Pending, Status::Failed] {
            let d = on_confirmation(Some(open(status, 100, 0)), &confirmation("K7Q2ZPM", 100, "UAB1C2D3E4"));
            assert_eq!((d.decision.outcome, d.txn, d.received), (Outcome::Applied, TxnStatus::Applied, 100));
            let change = d.decision.change.unwrap();
            assert_eq!((change.status, change.settled_by), (Status::Paid, SettledBy::C2b));
            assert_eq!(change.receipt.unwrap().as_str(), "UAB1C2D3E4");
            assert_eq!(change.failure_reason, None, "a failed prompt no longer explains a paid payment");
        }
    }

    #[test]
    fn less_than_the_amount_is_kept_as_received_and_later_payments_add_up() {
        let first = on_confirmation(Some(open(Status::Pending, 100, 0)), &confirmation("K7Q2ZPM", 40, "UAB1C2D3E4"));
        assert_eq!((first.decision.outcome, first.received, first.decision.change), (Outcome::Partial, 40, None));
        assert!(first.decision.note.contains("KES 60 still to pay"), "{}", first.decision.note);
        let second = on_confirmation(Some(open(Status::Pending, 100, 40)), &confirmation("K7Q2ZPM", 60, "UAB1C2D3E5"));
        assert_eq!(second.decision.outcome, Outcome::Applied);
        assert_eq!(second.decision.change.unwrap().receipt.unwrap().as_str(), "UAB1C2D3E5");
    }

    #[test]
    fn more_than_the_amount_pays_and_flags_the_excess_for_refund() {
        let d = on_confirmation(Some(open(Status::Pending, 100, 30)), &confirmation("K7Q2ZPM", 100, "UAB1C2D3E4"));
        assert_eq!(d.decision.outcome, Outcome::Overpaid);
        assert!(d.decision.outcome.needs_review());
        assert!(d.decision.note.contains("KES 30 more"), "{}", d.decision.note);
        assert_eq!(d.decision.change.unwrap().status, Status::Paid);
    }

    #[test]
    fn the_payments_own_stk_receipt_is_the_same_transaction() {
        let receipt = ReceiptNumber::parse("UAB1C2D3E4").unwrap();
        let paid = Payable { status: Status::Paid, receipt: Some(&receipt), open: false, ..open(Status::Paid, 100, 0) };
        let d = on_confirmation(Some(paid), &confirmation("TICKET-42", 100, "UAB1C2D3E4"));
        assert_eq!(
            (d.decision.outcome, d.txn, d.received, d.decision.change),
            (Outcome::SameTransaction, TxnStatus::SameAsStk, 0, None)
        );
        assert!(!d.decision.outcome.needs_review());
    }

    #[test]
    fn money_for_a_payment_that_is_not_open_or_for_no_payment_is_unmatched() {
        let receipt = ReceiptNumber::parse("UZZ9Z9Z9Z9").unwrap();
        let paid = Payable { receipt: Some(&receipt), open: false, ..open(Status::Paid, 100, 0) };
        let expired = Payable { open: false, ..open(Status::Expired, 100, 0) };
        for (payment, says) in
            [(Some(paid), "already paid (UZZ9Z9Z9Z9)"), (Some(expired), "had expired"), (None, "which no payment has")]
        {
            let d = on_confirmation(payment, &confirmation("K7Q2ZPM", 100, "UAB1C2D3E4"));
            assert_eq!((d.decision.outcome, d.txn, d.received), (Outcome::Unmatched, TxnStatus::Unmatched, 0));
            assert!(d.decision.note.contains(says), "{}", d.decision.note);
            assert!(d.decision.outcome.needs_review());
        }
        let till = on_confirmation(None, &confirmation("", 100, "UAB1C2D3E4"));
        assert!(till.decision.note.contains("till"), "{}", till.decision.note);
    }
}
