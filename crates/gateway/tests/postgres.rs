//! The PostgreSQL store: present when CI says so, and correct across replicas.
//!
//! Without `LIPA_TEST_POSTGRES_URL` these tests say they are skipped (and fail when
//! `LIPA_REQUIRE_ALL=1`). The black-box suites run on PostgreSQL with
//! `LIPA_TEST_DATABASE=postgres` (see `.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use lipa_gateway::ids;
use lipa_gateway::payment::Status;
use lipa_gateway::settlement::Outcome;
use lipa_gateway::store::{IncomingCallback, Inserted, PushResult, Store};

fn skip(test: &str) -> bool {
    if common::postgres_url().is_some() {
        return false;
    }
    assert!(
        std::env::var("LIPA_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test}: LIPA_REQUIRE_ALL=1 but LIPA_TEST_POSTGRES_URL is not set (start PostgreSQL; see .ci/run)"
    );
    common::skipped(format_args!("{test}: skipped (set LIPA_TEST_POSTGRES_URL to run it against PostgreSQL)"));
    true
}

#[tokio::test]
async fn copies_of_one_callback_raced_through_two_replicas_settle_once() {
    if skip("copies_of_one_callback_raced_through_two_replicas_settle_once") {
        return;
    }
    let url = common::fresh_postgres_database();
    let (replica_a, replica_b) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
    let Inserted::Created(p) = replica_a.insert_payment(common::new_payment("254712345678", "tok")).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(p.metadata, serde_json::json!({"order": 7}));
    let accepted = PushResult::Accepted {
        merchant_request_id: daraja::MerchantRequestId::parse("m").unwrap(),
        checkout_request_id: daraja::CheckoutRequestId::parse("ws_CO_race").unwrap(),
        first_check_at: 5_000,
    };
    replica_a.record_push(&p.id, accepted, 2_000).await.unwrap();
    let body = br#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"ws_CO_race","ResultCode":0,"ResultDesc":"ok","CallbackMetadata":{"Item":[{"Name":"Amount","Value":45},{"Name":"MpesaReceiptNumber","Value":"UAB1C2D3E4"},{"Name":"TransactionDate","Value":20260101120000},{"Name":"PhoneNumber","Value":254712345678}]}}}}"#;
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let store = if i % 2 == 0 { replica_a.clone() } else { replica_b.clone() };
            tokio::spawn(async move {
                store
                    .settle_from_callback(IncomingCallback {
                        token_hash: ids::sha256_hex(b"tok"),
                        body: body.to_vec(),
                        source: None,
                        received_at: 3_000 + i,
                        parsed: daraja::callback::parse(body),
                        keep_if_unmatched: true,
                    })
                    .await
                    .unwrap()
                    .outcome
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Applied).count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == Outcome::Duplicate).count(), 59);
    let paid = replica_b.payment(&p.id, None).await.unwrap().unwrap();
    assert_eq!((paid.status, paid.receipt.as_deref()), (Status::Paid, Some("UAB1C2D3E4")));
    assert_eq!(replica_b.callbacks_for(&p.id).await.unwrap().len(), 60, "every copy stored");
}

#[tokio::test]
async fn concurrent_pushes_for_one_phone_through_two_replicas_create_one_payment() {
    if skip("concurrent_pushes_for_one_phone_through_two_replicas_create_one_payment") {
        return;
    }
    let url = common::fresh_postgres_database();
    let (replica_a, replica_b) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { replica_a.clone() } else { replica_b.clone() };
            tokio::spawn(async move {
                let mut new = common::new_payment("254700000077", &format!("t{i}"));
                new.live_prompt_since = 0;
                matches!(store.insert_payment(new).await.unwrap(), Inserted::Created(_))
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap());
    }
    assert_eq!(created, 1, "the live-prompt check holds across replicas");
}

#[tokio::test]
async fn reconciliation_claims_are_exclusive_across_replicas() {
    if skip("reconciliation_claims_are_exclusive_across_replicas") {
        return;
    }
    let url = common::fresh_postgres_database();
    let (replica_a, replica_b) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
    for i in 0..30 {
        let mut new = common::new_payment(&format!("2547000001{i:02}"), &format!("c{i}"));
        new.live_prompt_since = i64::MAX;
        let Inserted::Created(p) = replica_a.insert_payment(new).await.unwrap() else { panic!() };
        let accepted = PushResult::Accepted {
            merchant_request_id: daraja::MerchantRequestId::parse("m").unwrap(),
            checkout_request_id: daraja::CheckoutRequestId::parse(&format!("ws_CO_c{i}")).unwrap(),
            first_check_at: 1_500,
        };
        replica_a.record_push(&p.id, accepted, 1_100).await.unwrap();
    }
    let (a, b) =
        tokio::join!(replica_a.claim_due_checks(2_000, 60_000, 20), replica_b.claim_due_checks(2_000, 60_000, 20));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 30);
    let mut ids: Vec<_> = a.iter().chain(&b).map(|d| d.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "no payment leased twice");
    assert!(
        replica_a.claim_due_checks(2_000, 60_000, 20).await.unwrap().is_empty(),
        "leased rows are not handed out again"
    );
}
