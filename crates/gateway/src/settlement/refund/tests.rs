use daraja::ReceiptNumber;
use daraja::status::Details;

use super::*;
use crate::refund::SendState;

fn paid() -> Payment {
    let mut p = crate::payment::example();
    p.status = Status::Paid;
    p.receipt = Some(ReceiptNumber::parse("UAB1234567").unwrap());
    p
}

fn refund(status: RefundStatus) -> Refund {
    Refund {
        id: RefundId::generate(),
        payment_id: paid().id,
        amount: 100,
        status,
        reason: "cancelled".into(),
        receipt: None,
        result_code: None,
        result_desc: None,
        needs_review: false,
        requested_by: "api".into(),
        created_at: 1,
        updated_at: 1,
        settled_at: None,
        send_state: SendState::Accepted,
        originator_conversation_id: None,
        timed_out: false,
        status_checks: 0,
        note: String::new(),
        api_key_id: None,
    }
}

fn at(status: RefundStatus) -> Current<'static> {
    Current {
        status,
        receipt: None,
        other_open: false,
        amount: 100,
        original: Some("UAB1234567"),
        last_question: false,
    }
}

fn reversed(receipt: &str) -> Reversal {
    Reversal::Reversed { receipt: Some(ReceiptNumber::parse(receipt).unwrap()), original: None, amount: Some(100) }
}

fn refused(kind: ResultKind, code: &str) -> Reversal {
    Reversal::Refused { kind, code: code.into(), description: "why".into() }
}

#[test]
fn a_paid_payment_with_a_receipt_may_be_refunded_whole_once() {
    assert_eq!(may_refund(&paid(), None, None), Ok(()));
    assert_eq!(may_refund(&paid(), None, Some(100)), Ok(()));
    let pending = refund(RefundStatus::Pending);
    assert_eq!(may_refund(&paid(), Some(&pending), None), Err(Refusal::InProgress(pending.id.clone())));
    let done = refund(RefundStatus::Succeeded);
    assert_eq!(may_refund(&paid(), Some(&done), None), Err(Refusal::AlreadyRefunded(done.id.clone())));
}

#[test]
fn unpaid_receiptless_and_partial_refunds_are_refused_with_what_to_do() {
    let mut p = paid();
    p.status = Status::Failed;
    let e = may_refund(&p, None, None).unwrap_err();
    assert_eq!(e.code(), "payment_not_paid");
    assert!(e.message().contains("failed"), "{}", e.message());
    let mut p = paid();
    p.receipt = None;
    assert_eq!(may_refund(&p, None, None).unwrap_err().code(), "payment_has_no_receipt");
    let e = may_refund(&paid(), None, Some(40)).unwrap_err();
    assert_eq!(e.code(), "partial_refund_unsupported");
    assert!(e.message().contains("B2C") && e.message().contains("KES 100"), "{}", e.message());
}

#[test]
fn a_reversal_result_succeeds_a_pending_refund_once() {
    let v = on_result(at(RefundStatus::Pending), &reversed("UAB7654321"));
    assert_eq!(v.outcome, Outcome::Applied);
    let change = v.change.unwrap();
    assert_eq!((change.status, change.receipt.as_deref()), (RefundStatus::Succeeded, Some("UAB7654321")));
    assert!(!v.review);

    let done = Current { receipt: Some("UAB7654321"), ..at(RefundStatus::Succeeded) };
    let again = on_result(done, &reversed("UAB7654321"));
    assert_eq!((again.outcome, again.change), (Outcome::Duplicate, None));
    let other = on_result(done, &reversed("UAB0000000"));
    assert_eq!((other.outcome, other.change.is_none(), other.review), (Outcome::Conflict, true, true));
}

#[test]
fn already_reversed_counts_as_the_money_back_and_is_flagged() {
    let v = on_result(at(RefundStatus::Pending), &Reversal::AlreadyReversed);
    assert_eq!(v.change.unwrap().status, RefundStatus::Succeeded);
    assert!(v.review);
}

#[test]
fn a_refused_reversal_fails_the_refund_with_the_remedy() {
    let v = on_result(at(RefundStatus::Pending), &refused(ResultKind::InitiatorLacksRole, "21"));
    let change = v.change.unwrap();
    assert_eq!((change.status, change.code.as_str()), (RefundStatus::Failed, "21"));
    assert!(v.note.contains("org portal"), "{}", v.note);
    let after_success = on_result(at(RefundStatus::Succeeded), &refused(ResultKind::Other, "17"));
    assert_eq!((after_success.outcome, after_success.change), (Outcome::Conflict, None));
}

#[test]
fn a_success_after_failure_is_a_late_success_unless_another_refund_is_open() {
    let v = on_result(at(RefundStatus::Failed), &reversed("UAB7654321"));
    assert_eq!(v.outcome, Outcome::LateSuccess);
    assert_eq!(v.change.unwrap().status, RefundStatus::Succeeded);
    assert!(v.review);
    let busy = Current { other_open: true, ..at(RefundStatus::Failed) };
    let v = on_result(busy, &reversed("UAB7654321"));
    assert_eq!((v.outcome, v.change), (Outcome::Conflict, None));
}

#[test]
fn a_queue_timeout_asks_transaction_status_and_changes_nothing() {
    let v = on_timeout(at(RefundStatus::Pending));
    assert!(v.ask_status && v.change.is_none() && !v.review);
    let late = on_timeout(at(RefundStatus::Succeeded));
    assert_eq!((late.outcome, late.ask_status), (Outcome::Duplicate, false));
}

fn reversal_found(receipt: &str, amount: u64, kind: &str) -> Report {
    Report::Found(Details {
        receipt: Some(ReceiptNumber::parse(receipt).unwrap()),
        status: Some("Completed".into()),
        amount: Some(amount),
        reason_type: Some(kind.into()),
        ..Details::default()
    })
}

#[test]
fn transaction_status_settles_a_pending_refund_either_way() {
    let v = on_status(at(RefundStatus::Pending), &reversal_found("UAB7654321", 100, "Reversal"));
    assert_eq!(v.change.unwrap().receipt.as_deref(), Some("UAB7654321"));

    let unknown =
        Report::Refused { kind: ResultKind::UnknownTransaction, code: "R000002".into(), description: "x".into() };
    let not_yet = on_status(at(RefundStatus::Pending), &unknown);
    assert!(not_yet.change.is_none() && not_yet.ask_status, "a queued reversal may not be known yet");
    let last = Current { last_question: true, ..at(RefundStatus::Pending) };
    let v = on_status(last, &unknown);
    assert_eq!(v.change.unwrap().status, RefundStatus::Failed);
    assert!(v.note.contains("nothing moved"), "{}", v.note);

    let cannot = Report::Refused { kind: ResultKind::InitiatorLacksRole, code: "21".into(), description: "x".into() };
    let v = on_status(at(RefundStatus::Pending), &cannot);
    assert!(v.change.is_none() && v.review && !v.ask_status);

    let unfinished = Report::Found(Details { status: Some("Pending".into()), ..Details::default() });
    let v = on_status(at(RefundStatus::Pending), &unfinished);
    assert!(v.change.is_none() && v.ask_status);
    assert_eq!(on_status(at(RefundStatus::Failed), &unknown).outcome, Outcome::Duplicate);
}

#[test]
fn a_completed_transaction_that_is_not_the_reversal_settles_nothing() {
    for report in [
        reversal_found("UAB1234567", 100, "Reversal"),
        reversal_found("UAB7654321", 99, "Reversal"),
        reversal_found("UAB7654321", 100, "Pay Bill Online"),
    ] {
        let v = on_status(at(RefundStatus::Pending), &report);
        assert_eq!((v.outcome, v.change.is_none(), v.review), (Outcome::Conflict, true, true), "{report:?}");
    }
}
