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
