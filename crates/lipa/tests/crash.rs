//! Crash test: callbacks are driven at a gateway process, which is killed with SIGKILL
//! mid-load and restarted on the same SQLite file. Every callback it acknowledged before the
//! crash must be stored and applied, and resending everything applies each payment once.
//!
//! Ignored by default (it runs the release-like binary for a few seconds); CI runs it with
//! `cargo test -p lipa --test crash -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use lipa_gateway::store::{PaymentFilter, Store};

const PAYMENTS: usize = 2_000;

fn token(i: usize) -> String {
    format!("{i:032x}")
}

/// Payment i as `lipa bench ingest` seeds it: phone 2547<i:08>, amount 10.
fn body(i: usize) -> String {
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m-{i}","CheckoutRequestID":"ws_CO_bench{i}","ResultCode":0,"ResultDesc":"ok","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":10.00}},{{"Name":"MpesaReceiptNumber","Value":"UB{i:08}"}},{{"Name":"TransactionDate","Value":20261122101010}},{{"Name":"PhoneNumber","Value":2547{i:08}}}]}}}}}}}}"#
    )
}

async fn send_all(base: String, indices: Vec<usize>, acked: Arc<Mutex<HashSet<usize>>>) {
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
    let queue = Arc::new(Mutex::new(indices));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (http, queue, acked, base) = (http.clone(), queue.clone(), acked.clone(), base.clone());
            tokio::spawn(async move {
                loop {
                    let Some(i) = queue.lock().unwrap().pop() else { return };
                    let url = format!("{base}/callbacks/stk/{}", token(i));
                    let ok = match http.post(url).header("content-type", "application/json").body(body(i)).send().await
                    {
                        Ok(r) => r.status().is_success(),
                        Err(_) => false,
                    };
                    if ok {
                        acked.lock().unwrap().insert(i);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
#[ignore = "runs the lipa binary and kills it; CI runs it with --ignored"]
async fn every_callback_acknowledged_before_a_kill_9_is_stored_and_applied_once() {
    let dir = std::env::temp_dir().join(format!("lipa-crash-{}", lipa_gateway::ids::random_hex(6)));
    let payments = PAYMENTS.to_string();
    let data_dir = dir.display().to_string();
    let (mut first, base) = common::start(
        &["bench", "ingest", "--payments", &payments, "--serve", "0", "--data-dir", &data_dir],
        &[],
        "serving",
    );

    // Drive callbacks and kill the process with SIGKILL while they are in flight.
    let acked_before = Arc::new(Mutex::new(HashSet::new()));
    let driver = tokio::spawn(send_all(base, (0..PAYMENTS).rev().collect(), acked_before.clone()));
    while acked_before.lock().unwrap().len() < PAYMENTS / 3 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    driver.await.unwrap();
    let acked_before: HashSet<usize> = acked_before.lock().unwrap().clone();
    assert!(
        acked_before.len() >= PAYMENTS / 3 && acked_before.len() < PAYMENTS,
        "killed mid-load: {}",
        acked_before.len()
    );

    // Restart on the same database and resend everything, as a retrying sender would.
    let database = ("DATABASE_URL", format!("sqlite:{}", dir.join("lipa.db").display()));
    let (mut second, base) = common::start(
        &["serve", "--listen", "127.0.0.1:0", "--sim-port", "0"],
        &[(database.0, database.1.as_str())],
        "Lipa gateway listening",
    );
    let acked_after = Arc::new(Mutex::new(HashSet::new()));
    send_all(base, (0..PAYMENTS).collect(), acked_after.clone()).await;
    assert_eq!(acked_after.lock().unwrap().len(), PAYMENTS, "every resend acknowledged after the restart");
    second.kill().unwrap();
    second.wait().unwrap();

    // Every acknowledged callback is stored and its payment paid; each applied exactly once.
    let store = Store::open(&database.1).await.unwrap();
    for i in &acked_before {
        let found = store
            .payments(PaymentFilter { receipt: Some(format!("UB{i:08}")), limit: 2, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "payment {i} acknowledged before the crash is paid");
        let events = store.events(&found[0].id).await.unwrap();
        assert_eq!(events.iter().filter(|e| e.kind == "callback_applied").count(), 1, "payment {i}");
        assert!(store.callbacks_for(&found[0].id).await.unwrap().len() >= 2, "both deliveries stored for {i}");
    }
    let counts = store.count_by_status().await.unwrap();
    assert_eq!(counts, vec![("paid".to_owned(), PAYMENTS as u64)]);
    println!("acknowledged before the kill: {}; all {PAYMENTS} paid exactly once after restart", acked_before.len());
    let _ = std::fs::remove_dir_all(dir);
}
