//! The scale proof's refunds: a share of the paid payments refunded through the API, each
//! asked for twice at once (once with one Idempotency-Key, once with two keys), while Daraja's
//! results come three times at once and out of order, late, after a queue timeout (the
//! reversal carried out or not), or never. Then: each refunded payment has one refund, ended
//! as the simulator decided; no reversal was sent twice, none moved money twice, none was lost;
//! each end announced once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use daraja_sim::{Faults, InitiatorKind, ResultFaults};

use super::{Deployment, count};

/// What refunding counted.
pub(super) struct Refunded {
    pub asked: usize,
    pub succeeded: i64,
    pub failed: i64,
    pub timed_out: usize,
    pub dropped: usize,
    pub took: Duration,
}

/// The faults of the `i`th refund's result, and whether it ends succeeded.
fn faults(i: usize) -> (ResultFaults, bool) {
    match i % 5 {
        0 => (
            ResultFaults {
                delivery: Faults {
                    copies: 3,
                    concurrent: true,
                    jitter: Duration::from_millis(300),
                    ..Faults::default()
                },
                ..ResultFaults::default()
            },
            true,
        ),
        1 => (
            ResultFaults {
                delivery: Faults { copies: 2, delay: Duration::from_millis(1500), ..Faults::default() },
                ..ResultFaults::default()
            },
            true,
        ),
        2 => (ResultFaults { queue_timeout: true, executed_despite_timeout: true, ..ResultFaults::default() }, true),
        3 => (ResultFaults { queue_timeout: true, ..ResultFaults::default() }, false),
        _ => (ResultFaults { delivery: Faults { drop: true, ..Faults::default() }, ..ResultFaults::default() }, true),
    }
}

pub(super) async fn refund_a_share(d: &Deployment) -> Refunded {
    let started = Instant::now();
    let rows = d
        .store
        .query(
            "SELECT id, receipt FROM payments WHERE status = 'paid' AND receipt IS NOT NULL AND settled_by = 'callback' ORDER BY id",
            vec![],
        )
        .await
        .unwrap();
    let targets: Vec<(String, String)> = rows.iter().step_by(20).map(|r| (r[0].text(), r[1].text())).collect();
    assert!(targets.len() >= 10, "the scenario has paid payments to refund");
    let mut expected_succeeded = 0;
    for (i, (_, receipt)) in targets.iter().enumerate() {
        let (f, succeeds) = faults(i);
        expected_succeeded += i64::from(succeeds);
        d.sim.sim().script_result(receipt, f);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (next, targets, http, key, apis) =
                (next.clone(), targets.clone(), http.clone(), d.key.clone(), d.apis.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((id, _)) = targets.get(i) else { return };
                    // Two requests at once, to two replicas: with one key, or with two.
                    let keys = if i % 2 == 0 {
                        [format!("r-{id}"), format!("r-{id}")]
                    } else {
                        [format!("a-{id}"), format!("b-{id}")]
                    };
                    let send = |k: usize| {
                        http.post(format!("{}/v1/payments/{id}/refunds", apis[(i + k) % apis.len()]))
                            .bearer_auth(&key)
                            .header("Idempotency-Key", &keys[k])
                            .json(&serde_json::json!({"reason": "scale"}))
                            .send()
                    };
                    let (a, b) = tokio::join!(send(0), send(1));
                    let statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
                    let created = statuses.iter().filter(|s| **s == 201).count();
                    assert!(created >= 1, "{id}: {statuses:?}");
                    if i % 2 == 1 {
                        assert_eq!(created, 1, "{id}: two keys, one refund: {statuses:?}");
                        assert!(statuses.contains(&409), "{id}: {statuses:?}");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while count(&d.store, "SELECT COUNT(*) FROM refunds WHERE status = 'pending'").await > 0 {
        assert!(Instant::now() < deadline, "refunds still pending after 3 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One refund per refunded payment, ended as the simulator decided.
    assert_eq!(count(&d.store, "SELECT COUNT(*) FROM refunds").await, targets.len() as i64, "one refund each");
    let succeeded = count(&d.store, "SELECT COUNT(*) FROM refunds WHERE status = 'succeeded'").await;
    let failed = count(&d.store, "SELECT COUNT(*) FROM refunds WHERE status = 'failed'").await;
    assert_eq!((succeeded, failed), (expected_succeeded, targets.len() as i64 - expected_succeeded));
    assert_eq!(
        count(&d.store, "SELECT COUNT(*) FROM refunds WHERE status = 'failed' AND result_code <> 'R000002'").await,
        0,
        "only the timed-out reversals that never happened fail"
    );
    assert_eq!(
        count(&d.store, "SELECT COUNT(*) FROM payments WHERE refunded_amount > 0").await,
        succeeded,
        "refunded_amount set for each succeeded refund"
    );
    assert_eq!(
        count(&d.store, "SELECT COUNT(*) FROM payments WHERE refunded_amount > 0 AND refunded_amount <> amount").await,
        0
    );
    assert_eq!(count(&d.store, "SELECT COUNT(*) FROM events WHERE kind = 'refund_succeeded'").await, succeeded);

    // Daraja's side: one reversal per refund (never sent again), money moved once per success.
    let requests = d.sim.sim().initiator_requests();
    let reversals: Vec<_> = requests.iter().filter(|r| r.kind == InitiatorKind::Reversal).collect();
    assert_eq!(reversals.len(), targets.len(), "one reversal request per refund, none re-sent");
    let moved = reversals.iter().filter(|r| r.receipt.is_some()).count();
    assert_eq!(moved as i64, succeeded, "money moved back once per succeeded refund, never twice");

    // Each end announced once (the webhook worker may still be delivering).
    let announced = |kind: &str| {
        let got = d.deliveries.lock().unwrap();
        got.values().filter(|(_, k, _)| k == kind).count() as i64
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while (announced("refund.succeeded"), announced("refund.failed")) != (succeeded, failed) {
        assert!(
            Instant::now() < deadline,
            "refund webhooks delivered {:?}, expected {:?}",
            (announced("refund.succeeded"), announced("refund.failed")),
            (succeeded, failed)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = d.deliveries.lock().unwrap().clone();
    assert!(got.values().filter(|(_, k, _)| k.starts_with("refund.")).all(|(_, _, n)| *n == 1), "delivered once each");
    Refunded {
        asked: targets.len(),
        succeeded,
        failed,
        timed_out: (0..targets.len()).filter(|i| i % 5 == 2 || i % 5 == 3).count(),
        dropped: (0..targets.len()).filter(|i| i % 5 == 4).count(),
        took: started.elapsed(),
    }
}
