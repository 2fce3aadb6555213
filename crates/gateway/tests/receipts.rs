//! Receipts checked with Transaction Status, through HTTP against the simulator (both
//! databases): a known receipt is found, an unknown one is not, and a payment confirmed
//! without its receipt takes the one the customer shows only when Daraja's answer matches it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, spawn_app};
use lipa_gateway::payment::PaymentId;
use lipa_gateway::store::ReceiptCheck;

async fn answered(app: &TestApp, id: &str) -> ReceiptCheck {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let check = app.gateway.store().receipt_check(id).await.unwrap().unwrap();
        if check.status != "asked" {
            return check;
        }
        assert!(tokio::time::Instant::now() < deadline, "{check:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A payment the simulator approves without ever calling back, settled by a query: paid,
/// with no receipt. Returns its id and the receipt M-PESA gave the customer.
async fn paid_without_receipt(app: &TestApp, amount: u64) -> (String, String) {
    let id = app.create("0700090001", amount).await["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.clock.advance(Duration::from_secs(21));
    app.reconcile().await;
    let p = app.payment(&id).await;
    assert_eq!((p["status"].as_str(), p["receipt"].as_str()), (Some("paid"), None), "{p}");
    let checkout = p["checkout_request_id"].as_str().unwrap();
    let receipt = app.sim.sim().transaction(checkout).unwrap().receipt.unwrap();
    (id, receipt)
}

#[tokio::test]
async fn a_known_receipt_is_found_and_an_unknown_one_is_not() {
    let app = spawn_app().await;
    let p = app.create("0700000000", 45).await;
    let p = app.settled(p["id"].as_str().unwrap()).await;
    let receipt = p["receipt"].as_str().unwrap();
    let id = app.gateway.check_receipt(&receipt.to_lowercase(), None, "cli").await.unwrap();
    let check = answered(&app, &id).await;
    assert_eq!(check.status, "found", "{check:?}");
    assert_eq!((check.detail["amount"].as_u64(), check.detail["receipt"].as_str()), (Some(45), Some(receipt)));
    assert_eq!(check.detail["status"], "Completed");

    let id = app.gateway.check_receipt("SXX0000000", None, "cli").await.unwrap();
    let check = answered(&app, &id).await;
    assert_eq!(check.status, "not_found", "{check:?}");
    let err = app.gateway.check_receipt("not a receipt!", None, "cli").await.unwrap_err();
    assert!(err.to_string().contains("not an M-PESA receipt"), "{err}");
}

#[tokio::test]
async fn a_payment_confirmed_without_its_receipt_takes_the_matching_one_the_customer_shows() {
    let app = spawn_app().await;
    let (id, receipt) = paid_without_receipt(&app, 75).await;
    let payment = PaymentId::parse(&id).unwrap();
    let list = app.admin_page("/admin/payments").await;
    assert!(list.contains("not told by the query"), "the list says why the receipt is missing: {list}");
    let hooks = app.admin_page("/admin/webhooks").await;
    assert!(hooks.contains(">no webhook URL<") && !hooks.contains(">no_endpoint<"), "{hooks}");

    // Another payment's receipt (another amount) is shown, and not taken.
    let other = app.create("0700000000", 30).await;
    let other = app.settled(other["id"].as_str().unwrap()).await;
    let check =
        app.gateway.check_receipt(other["receipt"].as_str().unwrap(), Some(&payment), "admin:amina").await.unwrap();
    let check = answered(&app, &check).await;
    assert_eq!(check.status, "found");
    assert!(check.note.contains("not added to the payment"), "{check:?}");
    assert!(app.payment(&id).await["receipt"].is_null());

    let check = app.gateway.check_receipt(&receipt, Some(&payment), "admin:amina").await.unwrap();
    let check = answered(&app, &check).await;
    assert_eq!(check.status, "found", "{check:?}");
    let p = app.payment(&id).await;
    assert_eq!(p["receipt"], receipt.as_str(), "{p}");
    assert_eq!(p["settled_by"], "query");
    assert!(app.timeline(&id).await.contains(&"status_receipt_added".to_owned()));
    let (_, hooks) = app.get(&format!("/v1/payments/{id}/webhooks")).await;
    assert!(hooks.to_string().contains("payment.receipt_added"), "{hooks}");
    let checks = app.gateway.store().receipt_checks_of(&payment).await.unwrap();
    assert_eq!(checks.len(), 2);
}

#[tokio::test]
async fn answers_to_unknown_check_urls_are_refused_and_not_stored() {
    let app = spawn_app().await;
    for kind in ["result", "timeout", "other"] {
        let answer = app
            .http
            .post(format!("{}/callbacks/receipt-check/{}/{kind}", app.base, "b".repeat(32)))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 404, "{kind}");
    }
    let stored = app.gateway.store().query("SELECT COUNT(*) FROM callbacks", vec![]).await.unwrap();
    assert_eq!(stored[0][0].int(), 0);
}
