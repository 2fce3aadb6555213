//! Store behaviour below the API: orderings the HTTP tests cannot force.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lipa_gateway::ids;
use lipa_gateway::payment::Status;
use lipa_gateway::settlement::Outcome;
use lipa_gateway::store::{IncomingCallback, Inserted, PushResult, Store};

mod common;

async fn store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("lipa-store-{}", ids::random_hex(8)));
    let url = if common::on_postgres() {
        common::fresh_postgres_database()
    } else {
        format!("sqlite:{}", dir.join("lipa.db").display())
    };
    let store = Store::open(&url).await.unwrap();
    (store, dir)
}

fn new_payment(token: &str) -> lipa_gateway::store::NewPayment {
    // Store-level tests here look at settlement only: no live-prompt check.
    lipa_gateway::store::NewPayment { live_prompt_since: i64::MAX, ..common::new_payment("254712345678", token) }
}

fn success(checkout: &str) -> Vec<u8> {
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m","CheckoutRequestID":"{checkout}","ResultCode":0,"ResultDesc":"ok","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":45}},{{"Name":"MpesaReceiptNumber","Value":"UAB1C2D3E4"}},{{"Name":"TransactionDate","Value":20260101120000}},{{"Name":"PhoneNumber","Value":254712345678}}]}}}}}}}}"#
    )
    .into_bytes()
}

fn incoming(token: &str, body: Vec<u8>, at: i64) -> IncomingCallback {
    IncomingCallback {
        token_hash: ids::sha256_hex(token.as_bytes()),
        parsed: daraja::callback::parse(&body),
        keep_if_unmatched: true,
        body,
        source: None,
        received_at: at,
    }
}

fn accepted(checkout: &str) -> PushResult {
    PushResult::Accepted {
        merchant_request_id: daraja::MerchantRequestId::parse("m").unwrap(),
        checkout_request_id: daraja::CheckoutRequestId::parse(checkout).unwrap(),
        first_check_at: 0,
    }
}

/// A payment with callback token `token` whose push Daraja accepted as `checkout` at 1 s.
async fn pushed(store: &Store, token: &str, checkout: &str) -> lipa_gateway::payment::PaymentId {
    let Inserted::Created(p) = store.insert_payment(new_payment(token)).await.unwrap() else { panic!() };
    store.record_push(&p.id, accepted(checkout), 1_000).await.unwrap();
    p.id
}

#[tokio::test]
async fn a_callback_that_arrives_before_the_push_answer_is_stored_is_applied() {
    let (store, dir) = store().await;
    let Inserted::Created(p) = store.insert_payment(new_payment("tok")).await.unwrap() else { panic!() };
    let body = success("ws_CO_early");
    let stored = store.settle_from_callback(incoming("tok", body, 2_000)).await.unwrap();
    assert_eq!((stored.outcome, stored.status), (Outcome::Applied, Some(Status::Paid)));
    // The push answer lands afterwards and changes nothing but the ids.
    let after = store
        .record_push(
            &p.id,
            PushResult::Accepted {
                merchant_request_id: daraja::MerchantRequestId::parse("m").unwrap(),
                checkout_request_id: daraja::CheckoutRequestId::parse("ws_CO_early").unwrap(),
                first_check_at: 5_000,
            },
            3_000,
        )
        .await
        .unwrap();
    assert_eq!(after.status, Status::Paid);
    assert_eq!(after.checkout_request_id.as_deref(), Some("ws_CO_early"));
    assert_eq!(after.receipt.as_deref(), Some("UAB1C2D3E4"));
    assert!(store.claim_due_checks(10_000, 20_000, 10).await.unwrap().is_empty(), "nothing left to query");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_receipt_number_cannot_pay_two_payments() {
    let (store, dir) = store().await;
    for (token, checkout) in [("a", "ws_CO_a"), ("b", "ws_CO_b")] {
        pushed(&store, token, checkout).await;
    }
    let first = store.settle_from_callback(incoming("a", success("ws_CO_a"), 5)).await.unwrap();
    assert_eq!(first.status, Some(Status::Paid));
    // The same receipt for another payment is stored and flagged as a conflict, not applied.
    let second = store.settle_from_callback(incoming("b", success("ws_CO_b"), 6)).await.unwrap();
    assert_eq!((second.outcome, second.status), (Outcome::Conflict, Some(Status::Pending)));
    let p = store.payment(second.payment_id.as_ref().unwrap(), None).await.unwrap().unwrap();
    assert!(p.needs_review);
    assert_eq!(store.callbacks_for(&p.id).await.unwrap().len(), 1, "the body is kept");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_refusal_that_arrives_after_a_failure_callback_is_not_announced_again() {
    let (store, dir) = store().await;
    let Inserted::Created(p) = store.insert_payment(new_payment("tok")).await.unwrap() else { panic!() };
    let body = br#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"ws_CO_r","ResultCode":1032,"ResultDesc":"Request cancelled by user"}}}"#.to_vec();
    let stored = store.settle_from_callback(incoming("tok", body, 2_000)).await.unwrap();
    assert_eq!(stored.status, Some(Status::Failed));
    let after = store
        .record_push(&p.id, PushResult::Refused { code: "500.001.1001".into(), message: "busy".into() }, 3_000)
        .await
        .unwrap();
    assert_eq!(
        (after.status, after.result_code.as_deref()),
        (Status::Failed, Some("1032")),
        "the callback's result stays"
    );
    let events = store.webhook_events(&p.id).await.unwrap();
    assert_eq!(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["payment.failed"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_refused_push_fails_a_pending_payment_and_announces_it_once() {
    let (store, dir) = store().await;
    let Inserted::Created(p) = store.insert_payment(new_payment("tok")).await.unwrap() else { panic!() };
    let after = store
        .record_push(&p.id, PushResult::Refused { code: "400.002.02".into(), message: "Invalid Amount".into() }, 3_000)
        .await
        .unwrap();
    assert_eq!((after.status, after.result_code.as_deref()), (Status::Failed, Some("400.002.02")));
    assert_eq!(store.webhook_events(&p.id).await.unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_payment_leased_for_a_query_is_not_expired_until_its_lease_ends() {
    let (store, dir) = store().await;
    let p = pushed(&store, "tok", "ws_CO_lease").await;
    let claimed = store.claim_due_checks(10_000, 100_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "the reconciler holds it");

    assert!(store.expire_overdue(i64::MAX, i64::MAX, 50_000).await.unwrap().is_empty(), "a query is in flight");
    assert_eq!(store.payment(&p, None).await.unwrap().unwrap().status, Status::Pending);

    // The reconciler died: once its lease ends the payment can expire.
    assert_eq!(store.expire_overdue(i64::MAX, i64::MAX, 100_001).await.unwrap(), std::slice::from_ref(&p));
    assert_eq!(store.payment(&p, None).await.unwrap().unwrap().status, Status::Expired);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_payment_never_queried_is_not_expired() {
    let (store, dir) = store().await;
    let p = pushed(&store, "tok", "ws_CO_wait").await;
    // The reconciler is behind: the payment is overdue but Daraja was never asked.
    assert!(store.expire_overdue(i64::MAX, 0, 200_000).await.unwrap().is_empty(), "never queried");
    store.reschedule_check(&p, "being processed".into(), 90_000, false, 80_000).await.unwrap();
    assert_eq!(store.expire_overdue(i64::MAX, 0, 200_000).await.unwrap(), std::slice::from_ref(&p));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_payment_daraja_cannot_be_asked_about_is_not_expired_for_a_day() {
    let (store, dir) = store().await;
    let p = pushed(&store, "tok", "ws_CO_fail").await;
    store.reschedule_check(&p, "Daraja error 500".into(), 60_000, true, 50_000).await.unwrap();
    assert!(store.expire_overdue(i64::MAX, 0, 200_000).await.unwrap().is_empty(), "its last query failed");
    // Daraja answers "being processed" again: the failure is forgotten, expiry applies.
    store.reschedule_check(&p, "being processed".into(), 90_000, false, 80_000).await.unwrap();
    assert_eq!(store.expire_overdue(i64::MAX, 0, 200_000).await.unwrap(), std::slice::from_ref(&p));

    let q = pushed(&store, "tok2", "ws_CO_fail2").await;
    store.reschedule_check(&q, "Daraja error 500".into(), 60_000, true, 50_000).await.unwrap();
    // After a day it expires regardless.
    assert_eq!(store.expire_overdue(i64::MAX, i64::MAX, 200_000).await.unwrap(), std::slice::from_ref(&q));
    let _ = std::fs::remove_dir_all(dir);
}

fn paid_with(checkout: &str, receipt: &str) -> Vec<u8> {
    String::from_utf8(success(checkout)).unwrap().replace("UAB1C2D3E4", receipt).into_bytes()
}

/// Callbacks arriving together share commits (a write batch on SQLite, a set-based transaction
/// on PostgreSQL). Whatever a batch holds, each callback must come out as it would alone:
/// copies applied once, a receipt reused across payments refused, a malformed body flagged,
/// an unknown token orphaned, and one announcement per payment.
#[tokio::test]
async fn callbacks_settled_together_each_come_out_as_alone() {
    let (store, dir) = store().await;
    let n = 40;
    let mut ids = Vec::new();
    for i in 0..n {
        let mut new = new_payment(&format!("t{i}"));
        new.webhook_url = Some("https://shop.example/hooks".into());
        let Inserted::Created(p) = store.insert_payment(new).await.unwrap() else { panic!() };
        store.record_push(&p.id, accepted(&format!("ws_CO_{i}")), 2).await.unwrap();
        ids.push(p.id);
    }
    // 0..30 paid with their own receipts, each delivered 3 times; 32 gets a malformed body;
    // 33..40 hear nothing; and a token nobody has.
    let mut calls = Vec::new();
    for copy in 0..3 {
        for i in 0..30 {
            calls.push(incoming(&format!("t{i}"), paid_with(&format!("ws_CO_{i}"), &format!("UAB{i:07}")), 10 + copy));
        }
    }
    calls.push(incoming("t32", b"{\"Body\":".to_vec(), 10));
    calls.push(incoming("nobody", paid_with("ws_CO_x", "UNOBODY001"), 10));
    let mut results = common::join_all(calls.into_iter().map(|c| store.settle_from_callback(c)).collect()).await;
    // Then two payments claiming one receipt, together.
    let reused = vec![
        incoming("t30", paid_with("ws_CO_30", "UREUSED001"), 20),
        incoming("t31", paid_with("ws_CO_31", "UREUSED001"), 20),
    ];
    results.extend(common::join_all(reused.into_iter().map(|c| store.settle_from_callback(c)).collect()).await);
    let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();

    let outcome = |token_index: usize| -> Vec<Outcome> {
        results.iter().filter(|r| r.payment_id.as_ref() == Some(&ids[token_index])).map(|r| r.outcome).collect()
    };
    for (i, id) in ids.iter().enumerate().take(30) {
        let mut o = outcome(i);
        o.sort_by_key(|o| o.as_str());
        assert_eq!(o, [Outcome::Applied, Outcome::Duplicate, Outcome::Duplicate], "payment {i}");
        let p = store.payment(id, None).await.unwrap().unwrap();
        assert_eq!((p.status, p.receipt.as_deref()), (Status::Paid, Some(format!("UAB{i:07}").as_str())));
        assert_eq!(store.callbacks_for(&p.id).await.unwrap().len(), 3, "every copy is kept");
        let hooks = store.webhook_events(&p.id).await.unwrap();
        assert_eq!(hooks.len(), 1, "announced once: {hooks:?}");
    }
    let reused: Vec<Outcome> = [30, 31].iter().flat_map(|&i| outcome(i)).collect();
    assert!(
        reused.contains(&Outcome::Applied) && reused.contains(&Outcome::Conflict),
        "one receipt pays one payment: {reused:?}"
    );
    let statuses = [
        store.payment(&ids[30], None).await.unwrap().unwrap().status,
        store.payment(&ids[31], None).await.unwrap().unwrap().status,
    ];
    assert_eq!(statuses.iter().filter(|s| **s == Status::Paid).count(), 1, "{statuses:?}");
    assert_eq!(outcome(32), [Outcome::Malformed]);
    let malformed = store.payment(&ids[32], None).await.unwrap().unwrap();
    assert!(malformed.needs_review && malformed.status == Status::Pending);
    for id in &ids[33..] {
        assert_eq!(store.payment(id, None).await.unwrap().unwrap().status, Status::Pending);
        assert!(store.webhook_events(id).await.unwrap().is_empty());
    }
    assert_eq!(results.iter().filter(|r| r.outcome == Outcome::Orphan).count(), 1);
    assert_eq!(store.unmatched_callbacks().await.unwrap().len(), 1, "the orphan is kept");
    let _ = std::fs::remove_dir_all(dir);
}
