//! Paybill payments (C2B) end to end: the simulator's customer pays by hand to the account
//! number a payment shows, and the gateway settles it exactly once (SQLite, and PostgreSQL
//! when `LIPA_TEST_DATABASE=postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, spawn_app_with};
use daraja_sim::{C2bStatus, Faults, ManualPayment, SimConfig};
use serde_json::{Value, json};

/// Pays by hand from the simulator's phone; returns the TransID.
async fn pay(app: &TestApp, account: &str, amount: u64, faults: Option<Faults>) -> String {
    let payment = ManualPayment {
        shortcode: app.sim.shortcode(),
        account: account.into(),
        amount,
        phone: "0712345678".into(),
        pin: None,
        faults,
    };
    let txn = app.sim.sim().c2b_pay(payment).await.unwrap();
    assert_eq!(txn.status, C2bStatus::Completed, "{txn:?}");
    txn.trans_id
}

/// Waits (at most 5 s) until `check` holds for the payment.
async fn payment_until(app: &TestApp, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let p = app.payment(id).await;
        if check(&p) {
            return p;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {p}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The C2B transactions the API lists with `status` (all when empty).
async fn transactions(app: &TestApp, status: &str) -> Vec<Value> {
    let path = if status.is_empty() {
        "/v1/c2b-transactions".to_owned()
    } else {
        format!("/v1/c2b-transactions?status={status}")
    };
    let (code, body) = app.get(&path).await;
    assert_eq!(code, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

async fn until_recorded(app: &TestApp, trans_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = app.get("/v1/c2b-transactions").await;
        if let Some(t) = body["data"].as_array().unwrap().iter().find(|t| t["trans_id"] == trans_id) {
            return t.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{trans_id} was never recorded: {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_payment_whose_prompt_is_ignored_is_paid_by_paybill() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 150).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["paybill"]["business_number"], app.sim.shortcode().to_string());
    let account = created["paybill"]["account_number"].as_str().unwrap().to_owned();
    assert_eq!(account.len(), 7, "{created}");
    assert_eq!(created["amount_received"], 0);

    // The customer types it in lower case, with a space.
    let typed = format!("{} {}", account[..3].to_ascii_lowercase(), &account[3..]);
    let trans_id = pay(&app, &typed, 150, None).await;
    let paid = payment_until(&app, id, "paid by Paybill", |p| p["status"] == "paid").await;
    assert_eq!(paid["settled_by"], "c2b");
    assert_eq!(paid["receipt"], trans_id.as_str());
    assert_eq!(paid["amount_received"], 150);
    assert_eq!(paid["paybill"], Value::Null, "a paid payment is not offered for payment again");
    assert_eq!(paid["needs_review"], false);
    assert!(app.timeline(id).await.contains(&"c2b_applied".to_owned()));
    let (_, hooks) = app.get(&format!("/v1/payments/{id}/webhooks")).await;
    assert!(hooks["events"].as_array().unwrap().iter().any(|e| e["type"] == "payment.paid"), "{hooks}");
    let recorded = until_recorded(&app, &trans_id).await;
    assert_eq!((recorded["status"].as_str(), recorded["payment_id"].as_str()), (Some("applied"), Some(id)));
    assert!(recorded["payer"].as_str().unwrap().contains("hidden"), "production hashes the number: {recorded}");
}

#[tokio::test]
async fn a_prompt_that_never_reached_the_phone_can_still_be_paid_by_hand() {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let created = app.create("254700001037", 80).await;
    let id = created["id"].as_str().unwrap();
    let failed = app.settled(id).await;
    assert_eq!((failed["status"].as_str(), failed["failure_reason"].as_str()), (Some("failed"), Some("unreachable")));
    let account =
        failed["paybill"]["account_number"].as_str().expect("a failed prompt offers the Paybill way").to_owned();
    pay(&app, &account, 80, None).await;
    let paid = payment_until(&app, id, "paid after the failed prompt", |p| p["status"] == "paid").await;
    assert_eq!((paid["settled_by"].as_str(), paid["failure_reason"].clone()), (Some("c2b"), Value::Null));
}

#[tokio::test]
async fn payments_by_hand_add_up_and_an_excess_is_flagged_for_refund() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 100).await;
    let id = created["id"].as_str().unwrap();
    let account = created["paybill"]["account_number"].as_str().unwrap().to_owned();
    pay(&app, &account, 40, None).await;
    let partly = payment_until(&app, id, "40 received", |p| p["amount_received"] == 40).await;
    assert_eq!(
        (partly["status"].as_str(), partly["paybill"]["account_number"].as_str()),
        (Some("pending"), Some(account.as_str()))
    );
    let last = pay(&app, &account, 70, None).await;
    let paid = payment_until(&app, id, "paid", |p| p["status"] == "paid").await;
    assert_eq!((paid["amount_received"].as_u64(), paid["receipt"].as_str()), (Some(110), Some(last.as_str())));
    assert_eq!(paid["needs_review"], true, "KES 10 too much: for a refund");
    let timeline = app.timeline(id).await;
    assert!(
        timeline.contains(&"c2b_partial".to_owned()) && timeline.contains(&"c2b_overpaid".to_owned()),
        "{timeline:?}"
    );
}

#[tokio::test]
async fn money_no_open_payment_takes_is_listed_unmatched_and_copies_count_once() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let copies = Faults { copies: 3, concurrent: true, ..Faults::default() };
    let unknown = pay(&app, "ZZZZZZZ", 75, Some(copies)).await;
    let till_like = pay(&app, "not a number", 20, None).await;
    let recorded = until_recorded(&app, &unknown).await;
    until_recorded(&app, &till_like).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while until_recorded(&app, &unknown).await["copies"] != 3 {
        assert!(tokio::time::Instant::now() < deadline, "copies never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(recorded["amount"], 75);
    let unmatched: Vec<_> = transactions(&app, "unmatched").await.iter().map(|t| t["trans_id"].clone()).collect();
    assert!(unmatched.contains(&json!(unknown)) && unmatched.contains(&json!(till_like)), "{unmatched:?}");
    assert!(transactions(&app, "applied").await.is_empty());
    let (code, body) = app.get("/v1/c2b-transactions?status=lost").await;
    assert_eq!(code, 422);
    assert_eq!(app.get("/v1/c2b-transactions?status=").await.0, 422, "an empty status is not a status");
    assert!(body["error"]["message"].as_str().unwrap().contains("unmatched"), "{body}");
}

#[tokio::test]
async fn an_stk_payment_also_confirmed_by_c2b_is_paid_once() {
    let mut config = SimConfig::default();
    config.merchants[0].c2b_echo_stk = true;
    let app = spawn_app_with(config, |_| {}).await;
    let created = app.create("0712345678", 45).await;
    let id = created["id"].as_str().unwrap();
    let paid = app.settled(id).await;
    assert_eq!(paid["settled_by"], "callback");
    let receipt = paid["receipt"].as_str().unwrap();
    // The echo may arrive before the STK callback; reconciliation links it either way.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        app.reconcile().await;
        let echo = until_recorded(&app, receipt).await;
        if echo["status"] == "same_as_stk" {
            assert_eq!(echo["payment_id"], id);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the echo was never linked: {echo}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = app.payment(id).await;
    assert_eq!((again["status"].as_str(), again["amount_received"].as_u64()), (Some("paid"), Some(0)));
    let paid_events = app.timeline(id).await.iter().filter(|k| k.ends_with("_applied")).count();
    assert_eq!(paid_events, 1, "paid once");
}

#[tokio::test]
async fn only_the_installations_secret_path_takes_confirmations_and_junk_is_kept_for_review() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let (confirmation, validation) = app.gateway.c2b_urls().unwrap();
    assert!(confirmation.starts_with(&format!("{}/callbacks/c2b/", app.base)));
    let lower = confirmation.to_ascii_lowercase();
    assert!(daraja::BANNED_URL_WORDS.iter().all(|w| !lower.contains(w)), "{confirmation}");
    let registered = app.sim.sim().c2b_registrations();
    assert_eq!(
        (registered[0].confirmation_url.as_str(), registered[0].validation_url.as_str()),
        (confirmation.as_str(), validation.as_str())
    );

    let http = reqwest::Client::new();
    let token = confirmation.rsplit('/').nth(1).unwrap();
    assert_eq!(token.len(), 32);
    let guessed = confirmation.replace(token, &"0".repeat(32));
    let wrong = http.post(guessed).body("{}").send().await.unwrap();
    assert_eq!(wrong.status(), 404);
    let junk = http.post(&confirmation).body(r#"{"TransID":"X"}"#).send().await.unwrap();
    assert_eq!(junk.status(), 400);
    assert!(junk.text().await.unwrap().contains("stored for review"));
    let accepted = http.post(&validation).body(r#"{"TransID":"X"}"#).send().await.unwrap();
    assert_eq!(
        accepted.text().await.unwrap(),
        r#"{"ResultCode":"0","ResultDesc":"Accepted"}"#,
        "validation is off by default"
    );
    assert!(transactions(&app, "").await.is_empty(), "junk is not a transaction");
}

#[tokio::test]
async fn with_validation_on_the_wrong_account_or_amount_is_refused_before_money_moves() {
    let mut config = SimConfig::interactive();
    config.merchants[0].external_validation = true;
    let app = spawn_app_with(config, |s| s.c2b.validation = true).await;
    let created = app.create("0712345678", 100).await;
    let id = created["id"].as_str().unwrap();
    let account = created["paybill"]["account_number"].as_str().unwrap().to_owned();
    let before = app.sim.sim().phone(254_712_345_678).balance;
    let attempt = |account: &str, amount| {
        app.sim.sim().c2b_pay(ManualPayment {
            shortcode: app.sim.shortcode(),
            account: account.into(),
            amount,
            phone: "0712345678".into(),
            pin: None,
            faults: None,
        })
    };
    let wrong_amount = attempt(&account, 99).await.unwrap();
    assert_eq!((wrong_amount.status, wrong_amount.result_code.as_deref()), (C2bStatus::Rejected, Some("C2B00013")));
    let wrong_account = attempt("ZZZZZZZ", 100).await.unwrap();
    assert_eq!(wrong_account.result_code.as_deref(), Some("C2B00012"));
    assert_eq!(app.sim.sim().phone(254_712_345_678).balance, before, "no money moved");
    let right = attempt(&account, 100).await.unwrap();
    assert_eq!(right.status, C2bStatus::Completed);
    payment_until(&app, id, "paid", |p| p["status"] == "paid").await;
}

#[tokio::test]
async fn a_confirmation_that_never_arrived_is_recovered_by_the_pull_sweep() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 100).await;
    let id = created["id"].as_str().unwrap();
    let account = created["paybill"]["account_number"].as_str().unwrap().to_owned();
    let dropped = Faults { drop: true, ..Faults::default() };
    let trans_id = pay(&app, &account, 100, Some(dropped)).await;
    let heard_late = pay(&app, "ZZZZZZZ", 30, None).await;
    until_recorded(&app, &heard_late).await;
    assert_eq!(app.payment(id).await["status"], "pending", "the confirmation was dropped");

    let swept = lipa_gateway::pull::sweep(&app.gateway, Duration::from_secs(3600)).await.unwrap();
    let pulls: Vec<_> = app.sim.sim().requests().into_iter().filter(|r| r.endpoint.starts_with("pull")).collect();
    assert_eq!((swept.listed, swept.recovered, swept.unreadable), (2, 1, 0), "{pulls:?}");
    let paid = payment_until(&app, id, "paid by the sweep", |p| p["status"] == "paid").await;
    assert_eq!((paid["settled_by"].as_str(), paid["receipt"].as_str()), (Some("c2b"), Some(trans_id.as_str())));
    let recovered = until_recorded(&app, &trans_id).await;
    assert_eq!((recovered["source"].as_str(), recovered["status"].as_str()), (Some("pull"), Some("applied")));

    let again = lipa_gateway::pull::sweep(&app.gateway, Duration::from_secs(3600)).await.unwrap();
    assert_eq!((again.listed, again.recovered), (2, 0), "what is recorded is not recorded again");
    assert_eq!(until_recorded(&app, &heard_late).await["copies"], 1, "a pull is not another copy");
    let applied = app.timeline(id).await.iter().filter(|k| *k == "c2b_applied").count();
    assert_eq!(applied, 1);
}

#[tokio::test]
async fn money_still_unmatched_after_a_minute_is_announced_once() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let unknown = pay(&app, "ZZZZZZZ", 75, None).await;
    until_recorded(&app, &unknown).await;
    let announced = |app: &TestApp| {
        let store = app.gateway.store().clone();
        async move {
            store.recent_webhook_events(None, 50).await.unwrap().into_iter().filter(|e| e.2 == "c2b.unmatched").count()
        }
    };
    assert_eq!(app.reconcile().await.announced, 0, "an STK callback may still claim it");
    assert_eq!(announced(&app).await, 0);
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(app.reconcile().await.announced, 1);
    assert_eq!(app.reconcile().await.announced, 0, "once");
    assert_eq!(announced(&app).await, 1);
    let payload: Value = {
        let rows = app
            .gateway
            .store()
            .query("SELECT payload FROM webhook_events WHERE type = 'c2b.unmatched'", vec![])
            .await
            .unwrap();
        serde_json::from_str(&rows[0][0].text()).unwrap()
    };
    assert_eq!(
        (payload["type"].as_str(), payload["data"]["trans_id"].as_str()),
        (Some("c2b.unmatched"), Some(unknown.as_str()))
    );
    assert_eq!(payload["data"]["status"], "unmatched");
}

#[tokio::test]
async fn a_payment_paid_in_part_waits_for_the_rest_instead_of_expiring() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 100).await;
    let id = created["id"].as_str().unwrap();
    let account = created["paybill"]["account_number"].as_str().unwrap().to_owned();
    pay(&app, &account, 30, None).await;
    payment_until(&app, id, "30 received", |p| p["amount_received"] == 30).await;
    app.clock.advance(Duration::from_secs(4 * 60));
    app.reconcile().await;
    app.reconcile().await;
    let waiting = app.payment(id).await;
    assert_eq!(waiting["status"], "pending", "the customer is paying the rest: {waiting}");
    assert_eq!(waiting["paybill"]["account_number"], account.as_str());

    app.clock.advance(Duration::from_secs(25 * 3600));
    app.reconcile().await;
    let expired = app.payment(id).await;
    assert_eq!(
        (expired["status"].as_str(), expired["needs_review"].as_bool()),
        (Some("expired"), Some(true)),
        "{expired}"
    );
    let (_, timeline) = app.get(&format!("/v1/payments/{id}/timeline")).await;
    assert!(timeline.to_string().contains("KES 30 was paid by hand"), "{timeline}");
}

#[tokio::test]
async fn a_payment_settled_by_query_gets_its_receipt_from_its_c2b_echo() {
    let mut config = SimConfig::default();
    config.merchants[0].c2b_echo_stk = true;
    let app = spawn_app_with(config, |_| {}).await;
    // Approved, but no callback ever comes (nor its echo): only a query tells.
    let created = app.create("254700090001", 45).await;
    let id = created["id"].as_str().unwrap();
    app.clock.advance(Duration::from_secs(30));
    app.reconcile().await;
    let queried = app.payment(id).await;
    assert_eq!((queried["status"].as_str(), queried["settled_by"].as_str()), (Some("paid"), Some("query")));
    assert_eq!(queried["receipt"], Value::Null, "a query does not tell the receipt");

    let swept = lipa_gateway::pull::sweep(&app.gateway, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(swept.recovered, 1, "the echo Daraja never sent is pulled");
    app.reconcile().await;
    let checkout = created["checkout_request_id"].as_str().unwrap();
    let receipt = app.sim.sim().transaction(checkout).unwrap().receipt.unwrap();
    let completed = app.payment(id).await;
    assert_eq!(completed["receipt"], receipt.as_str());
    assert_eq!((completed["settled_by"].as_str(), completed["amount_received"].as_u64()), (Some("query"), Some(0)));
    assert!(app.timeline(id).await.contains(&"c2b_receipt_added".to_owned()));
    let (_, hooks) = app.get(&format!("/v1/payments/{id}/webhooks")).await;
    assert!(hooks["events"].as_array().unwrap().iter().any(|e| e["type"] == "payment.receipt_added"), "{hooks}");
    let echo = until_recorded(&app, &receipt).await;
    assert_eq!((echo["status"].as_str(), echo["payment_id"].as_str()), (Some("same_as_stk"), Some(id)));
}

/// A Buy Goods confirmation as Daraja sends it to the confirmation URL.
fn till_confirmation(trans_id: &str, amount: u64, msisdn: &str) -> Value {
    json!({
        "TransactionType": "Buy Goods", "TransID": trans_id, "TransTime": "20261207101500",
        "TransAmount": format!("{amount}.00"), "BusinessShortCode": "174379", "BillRefNumber": "",
        "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "", "MSISDN": msisdn,
        "FirstName": "A", "MiddleName": "", "LastName": "B"
    })
}

#[tokio::test]
async fn a_till_payment_is_unmatched_unless_the_phone_and_amount_rule_finds_its_one_payment() {
    for rule in [false, true] {
        let app = spawn_app_with(SimConfig::interactive(), |s| {
            if rule {
                s.c2b.till_rule = lipa_gateway::config::TillRule::PhoneAndAmount;
            }
        })
        .await;
        let created = app.create("0712345678", 45).await;
        let id = created["id"].as_str().unwrap();
        let other = app.create("0799999999", 45).await;
        let (confirmation, _) = app.gateway.c2b_urls().unwrap();
        let hashed = {
            use std::fmt::Write as _;
            let digest = <sha2::Sha256 as sha2::Digest>::digest(b"254712345678");
            digest.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        };
        let sent =
            app.http.post(&confirmation).json(&till_confirmation("UTILL00001", 45, &hashed)).send().await.unwrap();
        assert_eq!(sent.status(), 200);
        let wrong_amount =
            app.http.post(&confirmation).json(&till_confirmation("UTILL00002", 44, &hashed)).send().await.unwrap();
        assert_eq!(wrong_amount.status(), 200);
        let recorded = until_recorded(&app, "UTILL00001").await;
        until_recorded(&app, "UTILL00002").await;
        if rule {
            let paid = payment_until(&app, id, "paid by the till rule", |p| p["status"] == "paid").await;
            assert_eq!((paid["settled_by"].as_str(), paid["receipt"].as_str()), (Some("c2b"), Some("UTILL00001")));
        } else {
            assert_eq!(recorded["status"], "unmatched");
            assert!(recorded["note"].as_str().unwrap().contains("till"), "{recorded}");
            assert_eq!(app.payment(id).await["status"], "pending");
        }
        assert_eq!(app.payment(other["id"].as_str().unwrap()).await["status"], "pending", "another phone's payment");
        let unmatched: Vec<_> = transactions(&app, "unmatched").await.iter().map(|t| t["trans_id"].clone()).collect();
        assert!(unmatched.contains(&json!("UTILL00002")), "KES 44 is not what any payment is due");
    }
}
