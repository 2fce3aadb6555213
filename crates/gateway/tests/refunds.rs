//! Refunds through HTTP against the simulator: taken once whatever number of requests race,
//! refused with what to do, results applied once, queue timeouts and lost results asked about
//! with Transaction Status, never sent again. CI runs these on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, join_all, spawn_app};
use daraja_sim::{Faults, InitiatorKind, ResultFaults};
use serde_json::{Value, json};

const APPROVES: &str = "0700000000";

/// A paid payment of `amount`; returns its JSON.
async fn paid(app: &TestApp, amount: u64) -> Value {
    let p = app.create(APPROVES, amount).await;
    let p = app.settled(p["id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "paid", "{p}");
    p
}

async fn refund(app: &TestApp, payment_id: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut request =
        app.http.post(format!("{}/v1/payments/{payment_id}/refunds", app.base)).bearer_auth(&app.key).json(body);
    if let Some(k) = key {
        request = request.header("Idempotency-Key", k);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

/// Waits (at most 5 s) until the refund leaves `pending`.
async fn ended(app: &TestApp, refund_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, r) = app.get(&format!("/v1/refunds/{refund_id}")).await;
        assert_eq!(status, 200, "{r}");
        if r["status"] != "pending" {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refund {refund_id} still pending: {r}; attempts {:?}; requests {:?}",
            app.sim.sim().callback_attempts().iter().filter(|a| a.kind != "stk_callback").collect::<Vec<_>>(),
            app.sim.sim().initiator_requests()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the refunds worker, a status interval apart, until the refund ends (at most 20 rounds);
/// returns how many rounds asked something.
async fn ask_until_ended(app: &TestApp, refund_id: &str) -> Value {
    for _ in 0..20 {
        app.clock.advance(Duration::from_secs(301));
        app.gateway.refund_round().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, r) = app.get(&format!("/v1/refunds/{refund_id}")).await;
        if r["status"] != "pending" {
            return r;
        }
    }
    panic!("refund {refund_id} still pending after 20 rounds")
}

fn reversals_of(app: &TestApp, receipt: &str) -> usize {
    let requests = app.sim.sim().initiator_requests();
    requests.iter().filter(|r| r.kind == InitiatorKind::Reversal && r.transaction_id == receipt).count()
}

async fn webhook_types(app: &TestApp, payment_id: &str) -> Vec<String> {
    let (_, body) = app.get(&format!("/v1/payments/{payment_id}/webhooks")).await;
    body["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_paid_payment_is_refunded_once_and_announced() {
    let app = spawn_app().await;
    let p = paid(&app, 45).await;
    let (id, receipt) = (p["id"].as_str().unwrap(), p["receipt"].as_str().unwrap());
    let before = app.sim.sim().phone(254_700_000_000).balance;

    let (status, r) = refund(&app, id, &json!({"reason": "Screening cancelled"}), None).await;
    assert_eq!(status, 201, "{r}");
    assert!(r["id"].as_str().unwrap().starts_with("re_"), "{r}");
    assert_eq!(
        (r["payment_id"].as_str(), r["amount"].as_u64(), r["reason"].as_str()),
        (Some(id), Some(45), Some("Screening cancelled"))
    );
    assert_eq!(r["status"], "pending");

    let done = ended(&app, r["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["receipt"].as_str().is_some_and(|own| own != receipt), "{done}");
    assert_eq!(app.sim.sim().phone(254_700_000_000).balance, before + 45, "the money went back");

    let p = app.payment(id).await;
    assert_eq!((p["status"].as_str(), p["refunded_amount"].as_u64()), (Some("paid"), Some(45)), "{p}");
    assert_eq!(p["refunds"][0]["id"], done["id"]);
    let timeline = app.timeline(id).await;
    for kind in ["refund_requested", "refund_sent", "refund_succeeded"] {
        assert!(timeline.iter().any(|k| k == kind), "{kind} in {timeline:?}");
    }
    assert_eq!(webhook_types(&app, id).await.iter().filter(|t| *t == "refund.succeeded").count(), 1);

    let (status, again) = refund(&app, id, &json!({"reason": "again"}), None).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("payment_already_refunded")), "{again}");
    assert_eq!(reversals_of(&app, receipt), 1);
}

#[tokio::test]
async fn twenty_racing_requests_take_one_refund() {
    let app = spawn_app().await;
    let p = paid(&app, 30).await;
    let (id, receipt) = (p["id"].as_str().unwrap(), p["receipt"].as_str().unwrap());
    let body = json!({"reason": "double booking"});

    let same_key: Vec<_> = (0..20).map(|_| refund(&app, id, &body, Some("refund-1"))).collect();
    let answers = join_all(same_key).await;
    let ids: std::collections::HashSet<_> = answers
        .iter()
        .map(|(s, r)| {
            assert_eq!(*s, 201, "{r}");
            r["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one refund for one key");

    let p2 = paid(&app, 31).await;
    let id2 = p2["id"].as_str().unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("key-{i}")).collect();
    let different: Vec<_> = keys.iter().map(|k| refund(&app, id2, &body, Some(k))).collect();
    let answers = join_all(different).await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{answers:?}");
    for (status, r) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{r}");
        let code = r["error"]["code"].as_str().unwrap();
        assert!(code == "refund_in_progress" || code == "payment_already_refunded", "{r}");
    }
    let first = ids.iter().next().unwrap().clone();
    assert_eq!(ended(&app, &first).await["status"], "succeeded");
    let won = answers.iter().find(|(s, _)| *s == 201).unwrap().1["id"].as_str().unwrap().to_owned();
    assert_eq!(ended(&app, &won).await["status"], "succeeded");
    assert_eq!(reversals_of(&app, receipt), 1);
    assert_eq!(reversals_of(&app, p2["receipt"].as_str().unwrap()), 1);
    assert_eq!(app.payment(id2).await["refunds"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn refunds_that_cannot_be_taken_say_what_to_do() {
    let app = spawn_app().await;
    let failed = app.create("0700000001", 20).await;
    let failed = app.settled(failed["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    let (status, r) = refund(&app, failed["id"].as_str().unwrap(), &json!({"reason": "x"}), None).await;
    assert_eq!((status, r["error"]["code"].as_str()), (409, Some("payment_not_paid")), "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("only a paid payment"), "{r}");

    let p = paid(&app, 50).await;
    let id = p["id"].as_str().unwrap();
    let (status, r) = refund(&app, id, &json!({"reason": "half", "amount": 25}), None).await;
    assert_eq!((status, r["error"]["code"].as_str()), (409, Some("partial_refund_unsupported")), "{r}");
    assert_eq!(r["error"]["field"], "amount");
    assert!(r["error"]["message"].as_str().unwrap().contains("B2C"), "{r}");
    let (status, r) = refund(&app, id, &json!({"reason": "   "}), None).await;
    assert_eq!((status, r["error"]["code"].as_str()), (422, Some("invalid_field")), "{r}");
    let (status, r) = refund(&app, id, &json!({"why": "x"}), None).await;
    assert!(status == 400 || status == 422, "{status} {r}");
    let (status, _) = refund(&app, "pay_000000000000000000000000", &json!({"reason": "x"}), None).await;
    assert_eq!(status, 404);
    let (status, _) = app.get("/v1/refunds/re_000000000000000000000000").await;
    assert_eq!(status, 404);
    assert_eq!(app.payment(id).await["refunded_amount"], 0, "nothing moved");
    assert!(app.sim.sim().initiator_requests().is_empty());
}

#[tokio::test]
async fn a_duplicated_result_is_applied_once() {
    let app = spawn_app().await;
    let p = paid(&app, 40).await;
    let (id, receipt) = (p["id"].as_str().unwrap(), p["receipt"].as_str().unwrap());
    let copies = ResultFaults {
        delivery: Faults { copies: 3, concurrent: true, ..Faults::default() },
        ..ResultFaults::default()
    };
    app.sim.sim().script_result(receipt, copies);
    let (_, r) = refund(&app, id, &json!({"reason": "cancelled"}), None).await;
    assert_eq!(ended(&app, r["id"].as_str().unwrap()).await["status"], "succeeded");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.timeline(id).await.iter().filter(|k| k.starts_with("refund_result")).count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", app.timeline(id).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let timeline = app.timeline(id).await;
    assert_eq!(timeline.iter().filter(|k| *k == "refund_succeeded").count(), 1, "{timeline:?}");
    assert_eq!(timeline.iter().filter(|k| *k == "refund_result_duplicate").count(), 2, "{timeline:?}");
    assert_eq!(webhook_types(&app, id).await.iter().filter(|t| *t == "refund.succeeded").count(), 1);
    assert_eq!(app.payment(id).await["refunded_amount"], 40);
}

#[tokio::test]
async fn a_queue_timeout_is_asked_about_and_never_sent_again() {
    let app = spawn_app().await;
    // Timed out, not carried out: Transaction Status says so, the refund fails.
    let p = paid(&app, 60).await;
    let (id, receipt) = (p["id"].as_str().unwrap(), p["receipt"].as_str().unwrap());
    app.sim.sim().script_result(receipt, ResultFaults { queue_timeout: true, ..ResultFaults::default() });
    let (_, r) = refund(&app, id, &json!({"reason": "cancelled"}), None).await;
    let refund_id = r["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !app.timeline(id).await.iter().any(|k| k == "refund_timeout_applied") {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", app.timeline(id).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.get(&format!("/v1/refunds/{refund_id}")).await.1["status"], "pending");
    // Daraja not knowing a queued reversal may mean "not yet": asked until the last question.
    app.clock.advance(Duration::from_secs(10));
    assert_eq!(app.gateway.refund_round().await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get(&format!("/v1/refunds/{refund_id}")).await.1["status"], "pending", "not failed at once");
    let done = ask_until_ended(&app, &refund_id).await;
    assert_eq!((done["status"].as_str(), done["result_code"].as_str()), (Some("failed"), Some("R000002")), "{done}");
    let asked =
        app.sim.sim().initiator_requests().iter().filter(|r| r.kind == InitiatorKind::TransactionStatus).count();
    assert_eq!(asked, 12, "max_status_checks questions");
    assert_eq!(reversals_of(&app, receipt), 1, "never sent again");
    assert!(webhook_types(&app, id).await.contains(&"refund.failed".to_owned()));

    // A new refund may then be asked for; this time the timed-out reversal happened anyway.
    let before = app.sim.sim().phone(254_700_000_000).balance;
    app.sim.sim().script_result(
        receipt,
        ResultFaults { queue_timeout: true, executed_despite_timeout: true, ..ResultFaults::default() },
    );
    let (status, r) = refund(&app, id, &json!({"reason": "cancelled, again"}), None).await;
    assert_eq!(status, 201, "{r}");
    let refund_id = r["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.timeline(id).await.iter().filter(|k| *k == "refund_timeout_applied").count() < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.clock.advance(Duration::from_secs(10));
    app.gateway.refund_round().await.unwrap();
    let done = ended(&app, &refund_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(app.sim.sim().phone(254_700_000_000).balance, before + 60, "moved back once");
    assert_eq!(reversals_of(&app, receipt), 2, "one per refund");
    assert_eq!(app.payment(id).await["refunded_amount"], 60);
}

#[tokio::test]
async fn a_lost_result_is_asked_about_after_a_while() {
    let app = spawn_app().await;
    let p = paid(&app, 70).await;
    let (id, receipt) = (p["id"].as_str().unwrap(), p["receipt"].as_str().unwrap());
    let dropped = ResultFaults { delivery: Faults { drop: true, ..Faults::default() }, ..ResultFaults::default() };
    app.sim.sim().script_result(receipt, dropped);
    let (_, r) = refund(&app, id, &json!({"reason": "cancelled"}), None).await;
    let refund_id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(app.gateway.refund_round().await.unwrap(), 0, "not due yet");
    app.clock.advance(Duration::from_secs(121));
    assert_eq!(app.gateway.refund_round().await.unwrap(), 1);
    let done = ended(&app, &refund_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["receipt"].as_str().is_some(), "{done}");
    assert_eq!(reversals_of(&app, receipt), 1);
}

#[tokio::test]
async fn a_refused_reversal_fails_and_may_be_asked_again() {
    let app = spawn_app().await;
    let p = paid(&app, 80).await;
    let (id, receipt) = (p["id"].as_str().unwrap(), p["receipt"].as_str().unwrap());
    app.sim.sim().script_result(receipt, ResultFaults { result_code: Some("21".into()), ..ResultFaults::default() });
    let (_, r) = refund(&app, id, &json!({"reason": "cancelled"}), None).await;
    let done = ended(&app, r["id"].as_str().unwrap()).await;
    assert_eq!((done["status"].as_str(), done["result_code"].as_str()), (Some("failed"), Some("21")), "{done}");
    assert!(webhook_types(&app, id).await.contains(&"refund.failed".to_owned()));
    assert_eq!(app.payment(id).await["refunded_amount"], 0);

    let (status, r) = refund(&app, id, &json!({"reason": "cancelled"}), None).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(ended(&app, r["id"].as_str().unwrap()).await["status"], "succeeded");
    assert_eq!(app.payment(id).await["refunds"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn messages_to_unknown_refund_urls_are_refused_and_not_stored() {
    let app = spawn_app().await;
    let post = |path: String| {
        app.http
            .post(format!("{}{path}", app.base))
            .body(r#"{"Result":{"ResultCode":0}}"#)
            .header("content-type", "application/json")
            .send()
    };
    for path in [
        format!("/callbacks/refund/{}/result", "a".repeat(32)),
        format!("/callbacks/refund/{}/nonsense", "a".repeat(32)),
        "/callbacks/refund/short/result".to_owned(),
    ] {
        let answer = post(path.clone()).await.unwrap();
        assert_eq!(answer.status().as_u16(), 404, "{path}");
    }
    // A flood of what anyone can send: guessed secrets with bodies at the limit, bodies over
    // it, and a wrong method. Every answer is a client error in the JSON envelope and nothing
    // is stored.
    let near_limit = format!("{{\"Result\":{{\"ResultDesc\":\"{}\"}}}}", "x".repeat(60 * 1024));
    let over_limit = "y".repeat(70 * 1024);
    let sends: Vec<_> = (0..300)
        .map(|i| {
            let path = if i % 2 == 0 { "refund" } else { "receipt-check" };
            let url = format!("{}/callbacks/{path}/{}/result", app.base, lipa_gateway::ids::random_hex(16));
            let body = if i % 3 == 0 { over_limit.clone() } else { near_limit.clone() };
            let request = if i % 10 == 0 { app.http.get(&url) } else { app.http.post(&url).body(body) };
            async move {
                let answer = request.send().await.unwrap();
                let status = answer.status().as_u16();
                let json: Value = answer.json().await.unwrap_or(Value::Null);
                (status, json)
            }
        })
        .collect();
    for (status, json) in join_all(sends).await {
        assert!(matches!(status, 404 | 405 | 413), "{status} {json}");
        assert!(json["error"]["code"].is_string(), "{status}: not the JSON envelope: {json}");
    }
    let stored = app.gateway.store().query("SELECT COUNT(*) FROM callbacks", vec![]).await.unwrap();
    assert_eq!(stored[0][0].int(), 0);
}

#[tokio::test]
async fn a_reversal_whose_answer_was_lost_is_never_sent_again_and_staff_settle_it() {
    let app = common::spawn_app_with(daraja_sim::SimConfig::default(), |s| {
        s.mpesa.request_timeout = Duration::from_millis(500);
    })
    .await;
    let p = paid(&app, 90).await;
    let (id, receipt) = (p["id"].as_str().unwrap(), p["receipt"].as_str().unwrap());
    // Daraja carries the reversal out, but its answer comes too late and its result never.
    app.sim.sim().inject_delay(daraja_sim::Endpoint::Reversal, Duration::from_secs(2), 1);
    let dropped = ResultFaults { delivery: Faults { drop: true, ..Faults::default() }, ..ResultFaults::default() };
    app.sim.sim().script_result(receipt, dropped);
    let (status, r) = refund(&app, id, &json!({"reason": "cancelled"}), None).await;
    assert_eq!(status, 201, "{r}");
    let refund_id = r["id"].as_str().unwrap().to_owned();
    assert_eq!((r["status"].as_str(), r["needs_review"].as_bool()), (Some("pending"), Some(true)), "{r}");
    assert_eq!(app.payment(id).await["needs_review"], true, "in the review queue");

    app.clock.advance(Duration::from_secs(3600));
    app.gateway.refund_round().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(reversals_of(&app, receipt), 1, "never sent again");
    let (status, again) = refund(&app, id, &json!({"reason": "again"}), None).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("refund_in_progress")), "{again}");

    let page = app.admin_page(&format!("/admin/payments/{id}")).await;
    assert!(page.contains("The money went back") && page.contains("Nothing moved"), "{page}");
    let decided = app
        .gateway
        .store()
        .resolve_refund(
            &lipa_gateway::refund::RefundId::parse(&refund_id).unwrap(),
            true,
            "amina",
            "statement shows the reversal",
            app.gateway.now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decided.status, lipa_gateway::refund::RefundStatus::Succeeded);
    let r = app.get(&format!("/v1/refunds/{refund_id}")).await.1;
    assert_eq!(
        (r["status"].as_str(), r["result_code"].as_str(), r["needs_review"].as_bool()),
        (Some("succeeded"), Some("staff"), Some(false)),
        "{r}"
    );
    assert_eq!(app.payment(id).await["refunded_amount"], 90);
    assert!(webhook_types(&app, id).await.contains(&"refund.succeeded".to_owned()));
    let again = app
        .gateway
        .store()
        .resolve_refund(
            &lipa_gateway::refund::RefundId::parse(&refund_id).unwrap(),
            false,
            "amina",
            "x",
            app.gateway.now(),
        )
        .await
        .unwrap();
    assert!(again.is_none(), "a settled refund is not decided again");
}

#[tokio::test]
async fn a_reversal_daraja_could_not_take_is_sent_again_refused_or_left_for_staff_as_its_error_says() {
    use daraja_sim::{DarajaError, Endpoint};
    let app = spawn_app().await;

    // The access token fails: the reversal never left; it is sent again a minute later.
    let p = paid(&app, 20).await;
    let (id, receipt) = (p["id"].as_str().unwrap(), p["receipt"].as_str().unwrap());
    app.sim.sim().expire_tokens();
    app.sim.sim().inject_error(Endpoint::Oauth, DarajaError::internal_error(), 1);
    let (status, r) = refund(&app, id, &json!({"reason": "cancelled"}), None).await;
    assert_eq!((status, r["status"].as_str(), r["needs_review"].as_bool()), (201, Some("pending"), Some(false)), "{r}");
    assert_eq!(reversals_of(&app, receipt), 0);
    assert!(app.timeline(id).await.contains(&"refund_not_sent".to_owned()));
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(app.gateway.refund_round().await.unwrap(), 1);
    assert_eq!(ended(&app, r["id"].as_str().unwrap()).await["status"], "succeeded");
    assert_eq!(reversals_of(&app, receipt), 1);

    // A rate limit refuses before anything is queued: the refund fails and may be asked again.
    let p = paid(&app, 21).await;
    app.sim.sim().inject_error(Endpoint::Reversal, DarajaError::spike_arrest(), 1);
    let (_, r) = refund(&app, p["id"].as_str().unwrap(), &json!({"reason": "cancelled"}), None).await;
    assert_eq!((r["status"].as_str(), r["result_code"].as_str()), (Some("failed"), Some("500.003.02")), "{r}");

    // An internal error may come after Daraja queued it: never sent again, left for staff.
    let p = paid(&app, 22).await;
    let (id, receipt) = (p["id"].as_str().unwrap(), p["receipt"].as_str().unwrap());
    app.sim.sim().inject_error(Endpoint::Reversal, DarajaError::internal_error(), 1);
    let (_, r) = refund(&app, id, &json!({"reason": "cancelled"}), None).await;
    assert_eq!((r["status"].as_str(), r["needs_review"].as_bool()), (Some("pending"), Some(true)), "{r}");
    app.clock.advance(Duration::from_secs(3600));
    app.gateway.refund_round().await.unwrap();
    assert_eq!(reversals_of(&app, receipt), 0, "the refused request is not sent again");
    assert_eq!(app.get(&format!("/v1/refunds/{}", r["id"].as_str().unwrap())).await.1["status"], "pending");
}
