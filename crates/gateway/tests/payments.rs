//! The merchant API and settlement, end to end against the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{payment_body, spawn_app, spawn_app_with, spawn_app_with_query_answers};
use daraja_sim::{Answer, Faults, SimConfig};
use serde_json::json;

#[tokio::test]
async fn a_paid_payment_stores_receipt_and_transaction_date() {
    let app = spawn_app().await;
    let created = app.create("0712 345 678", 45).await;
    assert_eq!(created["phone"], "254712345678");
    assert_eq!(created["amount"], 45);
    let id = created["id"].as_str().unwrap();
    let paid = app.settled(id).await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["settled_by"], "callback");
    assert_eq!(paid["receipt"].as_str().unwrap().len(), 10);
    assert!(paid["transaction_date"].as_str().unwrap().ends_with('Z'));
    assert_eq!(paid["result_code"], "0");
    assert_eq!(paid["needs_review"], false);
    let sim_txn = app.sim.sim().transaction(paid["checkout_request_id"].as_str().unwrap()).unwrap();
    assert_eq!(sim_txn.receipt.as_deref(), paid["receipt"].as_str());
    // The simulator calls back at once, so the callback may be stored before the push's
    // answer is: both orders are right.
    let mut timeline = app.timeline(id).await;
    assert_eq!(timeline.remove(0), "created");
    timeline.sort();
    assert_eq!(timeline, ["callback_applied", "push_accepted"]);
}

#[tokio::test]
async fn the_row_is_written_pending_before_the_push() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 45).await;
    assert_eq!(created["status"], "pending");
    assert!(created["checkout_request_id"].as_str().unwrap().starts_with("ws_CO_"));
    // The callback URL Daraja got carries a token, never the payment id or a banned word.
    let push = app.sim.sim().requests().into_iter().find(|r| r.endpoint == "stk_push").unwrap();
    let url = push.request["CallBackURL"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/callbacks/stk/", app.base)), "{url}");
    assert!(!url.contains(created["id"].as_str().unwrap()));
    assert_eq!(url.rsplit('/').next().unwrap().len(), 32);
}

#[tokio::test]
async fn each_failure_result_code_fails_with_its_reason() {
    let app = spawn_app().await;
    let cases = [
        ("254700000001", "1", "insufficient_funds"),
        ("254700000017", "17", "system"),
        ("254700001001", "1001", "subscriber_busy"),
        ("254700001019", "1019", "timeout"),
        ("254700001025", "1025", "system"),
        ("254700001032", "1032", "cancelled"),
        ("254700001037", "1037", "unreachable"),
        ("254700002001", "2001", "wrong_pin"),
        ("254700080003", "SFC_IC0003", "merchant_configuration"),
    ];
    for (phone, code, reason) in cases {
        let id = app.create(phone, 10).await["id"].as_str().unwrap().to_owned();
        let p = app.settled(&id).await;
        assert_eq!((p["status"].as_str(), p["result_code"].as_str()), (Some("failed"), Some(code)), "{p}");
        assert_eq!(p["failure_reason"], reason, "{phone}");
        assert!(p["receipt"].is_null());
    }
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_replays_without_a_second_push() {
    let app = spawn_app().await;
    let body = payment_body("0712345678", 45);
    let (s1, first) = app.post_payment(&body, Some("order-17")).await;
    let (s2, second) = app.post_payment(&body, Some("order-17")).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(app.sim.sim().transactions().len(), 1);

    let other = payment_body("0712345678", 46);
    let (status, err) = app.post_payment(&other, Some("order-17")).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "idempotency_key_reused");
}

#[tokio::test]
async fn fifty_concurrent_requests_with_one_key_push_once() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let body = payment_body("0712345678", 45);
    let requests: Vec<_> = (0..50).map(|_| app.post_payment(&body, Some("race-1"))).collect();
    let answers = common::join_all(requests).await;
    let ids: std::collections::HashSet<_> = answers
        .iter()
        .map(|(s, b)| {
            assert_eq!(*s, 201, "{b}");
            b["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(app.sim.sim().transactions().len(), 1, "one push");
}

#[tokio::test]
async fn a_hundred_concurrent_copies_of_a_callback_are_all_acknowledged_and_applied_once() {
    let faults = Faults { copies: 100, concurrent: true, ..Faults::default() };
    // A slow disk (the PostgreSQL pass commits copies of one payment one after another) must
    // not make the simulator give up on a copy.
    let callback_timeout = std::time::Duration::from_secs(60);
    let app = spawn_app_with(SimConfig { faults, callback_timeout, ..SimConfig::default() }, |_| {}).await;
    let created = app.create("0712345678", 45).await;
    let checkout = created["checkout_request_id"].as_str().unwrap();
    let attempts = app.callback_attempts(checkout, 100).await;
    assert!(attempts.iter().all(|a| a.status == Some(200)), "every copy acknowledged");
    let p = app.settled(created["id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "paid");
    let kinds = app.timeline(created["id"].as_str().unwrap()).await;
    assert_eq!(kinds.iter().filter(|k| *k == "callback_applied").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "callback_duplicate").count(), 99);
    let stored = app
        .gateway
        .store()
        .callbacks_for(&lipa_gateway::payment::PaymentId::parse(p["id"].as_str().unwrap()).unwrap())
        .await
        .unwrap();
    assert_eq!(stored.len(), 100, "every body stored");
}

#[tokio::test]
async fn a_phone_with_a_live_prompt_is_refused_before_daraja_locks_it() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    app.create("0712345678", 45).await;
    let (status, err) = app.post_payment(&payment_body("0712 345 678", 10), None).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "phone_busy");
    assert_eq!(app.sim.sim().transactions().len(), 1);
}

#[tokio::test]
async fn a_daraja_refusal_fails_the_payment_with_darajas_code_not_a_500() {
    let sim = SimConfig { max_amount: 100, ..SimConfig::default() };
    let app = spawn_app_with(sim, |_| {}).await;
    let (status, p) = app.post_payment(&payment_body("0712345678", 500), None).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["status"], "failed");
    assert_eq!(p["failure_reason"], "rejected_by_daraja");
    assert_eq!(p["result_code"], "400.002.02");
    assert_eq!(p["result_desc"], "Bad Request - Invalid Amount");
    assert_eq!(p["settled_by"], "push");
}

#[tokio::test]
async fn a_dropped_callback_is_settled_by_reconciliation() {
    let faults = Faults { drop: true, ..Faults::default() };
    let app = spawn_app_with(SimConfig { faults, ..SimConfig::default() }, |_| {}).await;
    let id = app.create("0712345678", 45).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.reconcile().await.queried, 0, "not due yet");
    app.clock.advance(Duration::from_secs(21));
    let step = app.reconcile().await;
    assert_eq!((step.queried, step.settled), (1, 1));
    let p = app.payment(&id).await;
    assert_eq!((p["status"].as_str(), p["settled_by"].as_str()), (Some("paid"), Some("query")));
    assert!(p["receipt"].is_null(), "a query carries no receipt");
    assert!(app.timeline(&id).await.contains(&"query_applied".to_owned()));
}

/// Asked about one transaction, Daraja (or something on the way) answers about another: the
/// answer says nothing about this payment. It is recorded with the ids it named and flagged,
/// and the payment is not settled by it.
#[tokio::test]
async fn a_query_answer_about_another_transaction_is_recorded_and_flagged_not_applied() {
    let faults = Faults { drop: true, ..Faults::default() };
    let app = spawn_app_with_query_answers(SimConfig { faults, ..SimConfig::default() }, |answer| {
        answer["CheckoutRequestID"] = "ws_CO_SOMEONE_ELSE".into();
    })
    .await;
    let id = app.create("0712345678", 45).await["id"].as_str().unwrap().to_owned();
    app.clock.advance(Duration::from_secs(21));
    let step = app.reconcile().await;
    assert_eq!((step.queried, step.settled), (1, 0));
    let p = app.payment(&id).await;
    assert_eq!(p["status"], "pending", "{p}");
    assert_eq!(p["needs_review"], true, "{p}");
    let (_, timeline) = app.get(&format!("/v1/payments/{id}/timeline")).await;
    let mismatch = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "query_mismatch")
        .unwrap_or_else(|| panic!("no query_mismatch in {timeline}"));
    let note = mismatch["detail"]["note"].as_str().unwrap();
    assert!(note.contains("ws_CO_SOMEONE_ELSE") && note.contains("not applied"), "{note}");
    // Daraja is asked again, as after a failed query, and the payment is not written off
    // meanwhile: the customer may have paid.
    app.clock.advance(Duration::from_secs(200));
    let step = app.reconcile().await;
    assert_eq!((step.queried, step.settled, step.expired), (1, 0, 0));
    assert_eq!(app.payment(&id).await["status"], "pending");
}

#[tokio::test]
async fn being_processed_waits_and_no_answer_expires() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let id = app.create("0712345678", 45).await["id"].as_str().unwrap().to_owned();
    app.clock.advance(Duration::from_secs(21));
    let step = app.reconcile().await;
    assert_eq!((step.queried, step.settled, step.expired), (1, 0, 0));
    assert_eq!(app.payment(&id).await["status"], "pending");
    app.clock.advance(Duration::from_secs(180));
    let step = app.reconcile().await;
    assert_eq!(step.expired, 1);
    let p = app.payment(&id).await;
    assert_eq!((p["status"].as_str(), p["settled_by"].as_str()), (Some("expired"), Some("expiry")));
}

#[tokio::test]
async fn a_late_success_after_expiry_pays_and_flags_for_review() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 45).await;
    let id = created["id"].as_str().unwrap();
    app.clock.advance(Duration::from_secs(200));
    assert_eq!(app.reconcile().await.expired, 1);
    assert!(app.sim.sim().resolve(created["checkout_request_id"].as_str().unwrap(), Answer::Approve));
    let checkout = created["checkout_request_id"].as_str().unwrap();
    app.callback_attempts(checkout, 1).await;
    let p = app.payment(id).await;
    assert_eq!(p["status"], "paid", "{p}");
    assert_eq!(p["needs_review"], true);
    assert!(p["receipt"].is_string());
    assert!(app.timeline(id).await.contains(&"callback_late_success".to_owned()));
}

#[tokio::test]
async fn forged_callbacks_pay_nothing() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 45).await;
    let id = created["id"].as_str().unwrap();
    let checkout = created["checkout_request_id"].as_str().unwrap();
    let real_url = app.sim.sim().transaction(checkout).unwrap().callback_url;
    let body = |amount: u64| {
        json!({"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":checkout,"ResultCode":0,"ResultDesc":"ok",
            "CallbackMetadata":{"Item":[{"Name":"Amount","Value":amount},{"Name":"MpesaReceiptNumber","Value":"UFORGED123"},
            {"Name":"TransactionDate","Value":20260101120000u64},{"Name":"PhoneNumber","Value":254712345678u64}]}}}})
    };
    // Right CheckoutRequestID, wrong token: an orphan, stored for review.
    let forged_url = format!("{}/callbacks/stk/{}", app.base, "0".repeat(32));
    let resp = app.http.post(&forged_url).json(&body(45)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Right token, wrong amount: a mismatch, flagged.
    let resp = app.http.post(&real_url).json(&body(1)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let p = app.payment(id).await;
    assert_eq!(p["status"], "pending");
    assert_eq!(p["needs_review"], true);
    let orphans = app.gateway.store().unmatched_callbacks().await.unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].outcome, "orphan");
    // Tokens of the wrong shape are not even looked up.
    for bad in ["../../etc/passwd", "ZZZZ", "%00"] {
        let resp = app.http.post(format!("{}/callbacks/stk/{bad}", app.base)).json(&body(45)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{bad}");
    }
}

#[tokio::test]
async fn malformed_and_oversized_callbacks_are_refused_and_malformed_ones_stored() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 45).await;
    let url = app.sim.sim().transaction(created["checkout_request_id"].as_str().unwrap()).unwrap().callback_url;
    let resp = app.http.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert!(answer["ResultDesc"].as_str().unwrap().contains("stored for review"));
    let oversize = format!("{{\"Body\":{}", " ".repeat(65 * 1024));
    let resp = app.http.post(&url).body(oversize.clone()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "payload_too_large", "{answer}");
    let id = lipa_gateway::payment::PaymentId::parse(created["id"].as_str().unwrap()).unwrap();
    let stored = app.gateway.store().callbacks_for(&id).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!((stored[0].outcome.as_str(), stored[0].body.as_str()), ("malformed", "{not json"));
    // The over-size body is recorded for review too: its size, its source, its first bytes.
    assert_eq!(stored[1].outcome, "malformed");
    assert!(stored[1].note.contains(&format!("{} bytes", oversize.len())), "{}", stored[1].note);
    assert!(stored[1].source.is_some());
    assert!(
        oversize.starts_with(&stored[1].body) && stored[1].body.len() == 512,
        "{} bytes kept",
        stored[1].body.len()
    );
    assert_eq!(app.payment(id.as_str()).await["status"], "pending");

    // The payment's timeline says what came and why it was not applied; the review lists
    // (API-less: the store's, which `lipa callbacks list --malformed` prints) include it.
    let (_, timeline) = app.get(&format!("/v1/payments/{id}/timeline")).await;
    let event = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "callback_malformed")
        .unwrap_or_else(|| panic!("no callback_malformed in {timeline}"));
    assert!(!event["detail"]["note"].as_str().unwrap().is_empty(), "{event}");
    assert_eq!(app.payment(id.as_str()).await["needs_review"], true);
    let review = app.gateway.store().unresolved_callbacks(None, 10).await.unwrap();
    assert!(
        review.iter().any(|c| c.outcome == "malformed" && c.payment_id.as_deref() == Some(id.as_str())),
        "{review:?}"
    );
}

/// Anyone can send a callback to a made-up token. Such callbacks are stored up to a budget
/// per minute, each cut to its first bytes; beyond it they are only counted, and the count is
/// there for staff. A legitimate callback in the middle of the flood settles as usual.
#[tokio::test]
async fn a_flood_of_callbacks_no_payment_took_is_stored_within_a_budget_and_counted_beyond() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 45).await;
    let checkout = created["checkout_request_id"].as_str().unwrap().to_owned();
    let budget = usize::try_from(lipa_gateway::budget::UNMATCHED_STORED_PER_MINUTE).unwrap();
    let junk = format!("{{\"Body\":{{\"pad\":\"{}\"}}}}", "x".repeat(60_000));
    let sent = budget + 40;
    for i in 0..sent {
        let token = format!("{:032x}", i + 1);
        let resp =
            app.http.post(format!("{}/callbacks/stk/{token}", app.base)).body(junk.clone()).send().await.unwrap();
        assert!(resp.status().is_client_error() || resp.status().is_success(), "{}", resp.status());
        if i == sent / 2 {
            assert!(app.sim.sim().resolve(&checkout, daraja_sim::Answer::Approve));
        }
    }
    let paid = app.settled(created["id"].as_str().unwrap()).await;
    assert_eq!(paid["status"], "paid", "{paid}");

    let store = app.gateway.store();
    let kept = store.unresolved_callbacks(None, 1000).await.unwrap();
    assert_eq!(kept.len(), budget, "{} stored", kept.len());
    for c in &kept {
        assert!(c.body.len() <= lipa_gateway::store::UNMATCHED_EXCERPT_BYTES, "{} bytes kept", c.body.len());
        assert!(c.note.contains("SHA-256") && c.note.contains(&format!("of {} bytes", junk.len())), "{}", c.note);
    }
    let counted = store.unmatched_counted_since(0).await.unwrap();
    assert_eq!(counted.count, 40);
    assert_eq!(counted.bytes, 40 * i64::try_from(junk.len()).unwrap());

    // The review page shows one page of them and the count of the rest.
    let page = app.admin_page("/admin/review").await;
    assert!(page.contains("40 more callbacks"), "{page}");
    assert_eq!(page.matches("<details").count(), 25);
    assert!(page.contains("/admin/review?before="));
    assert!(page.len() < 200_000, "the review page is {} bytes", page.len());
}
