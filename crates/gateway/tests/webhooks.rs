//! Signed webhooks through the outbox: delivery, signature, retries, dead letters, redelivery.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::{TestApp, spawn_app_with};
use daraja_sim::SimConfig;
use lipa_gateway::payment::PaymentId;
use lipa_gateway::store::WebhookNext;
use lipa_gateway::webhooks;

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

async fn receiver(statuses: &[u16]) -> (String, Receiver) {
    let r = Receiver::default();
    r.statuses.lock().unwrap().extend(statuses);
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                state.got.lock().unwrap().push((headers, body));
                let status = state.statuses.lock().unwrap().pop_front().unwrap_or(200);
                (StatusCode::from_u16(status).unwrap(), "thanks")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

async fn paid_payment(app: &TestApp, webhook_url: &str) -> PaymentId {
    let mut body = common::payment_body("0712345678", 45);
    body["webhook_url"] = webhook_url.into();
    let (status, p) = app.post_payment(&body, None).await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(app.settled(&id).await["status"], "paid");
    PaymentId::parse(&id).unwrap()
}

async fn step(app: &TestApp) -> usize {
    webhooks::step(&app.gateway, 50).await.unwrap()
}

#[tokio::test]
async fn a_paid_payment_is_announced_with_a_verifiable_signature() {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let (url, rx) = receiver(&[]).await;
    let id = paid_payment(&app, &url).await;
    assert_eq!(step(&app).await, 1);
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let event: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["type"], "payment.paid");
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["status"], "paid");
    assert!(event["data"]["receipt"].is_string());
    assert_eq!(headers["lipa-event-id"], event["id"].as_str().unwrap());
    let key =
        app.gateway.store().api_key_by_hash(&lipa_gateway::ids::sha256_hex(app.key.as_bytes())).await.unwrap().unwrap();
    let secret = lipa_gateway::keys::webhook_secret(app.gateway.store(), &key).await.unwrap();
    let signature = headers["lipa-signature"].to_str().unwrap();
    let now = app.gateway.now() / 1000;
    assert!(webhooks::verify(&secret, signature, body, now, 300), "{signature}");
    assert!(!webhooks::verify("whsec_wrong", signature, body, now, 300));
    assert_eq!(step(&app).await, 0, "delivered once");
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_one_delivery_and_four_recorded_attempts() {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let (url, rx) = receiver(&[500, 503, 404]).await;
    let id = paid_payment(&app, &url).await;
    for _ in 0..4 {
        assert_eq!(step(&app).await, 1);
        assert_eq!(step(&app).await, 0, "not due again before its backoff");
        app.clock.advance(Duration::from_secs(3600));
    }
    assert_eq!(step(&app).await, 0);
    let events = app.gateway.store().webhook_events(&id).await.unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.status, "delivered");
    let statuses: Vec<_> = e.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(404), Some(200)]);
    assert_eq!(e.attempts[3].response, "thanks");
    let bodies: Vec<_> = rx.got.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "every retry sends the same event");
}

#[tokio::test]
async fn an_event_older_than_the_maximum_age_is_dead_lettered_and_can_be_redelivered() {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let (url, rx) = receiver(&[500; 10]).await;
    let id = paid_payment(&app, &url).await;
    assert_eq!(step(&app).await, 1);
    app.clock.advance(Duration::from_secs(73 * 3600));
    assert_eq!(step(&app).await, 1);
    let e = &app.gateway.store().webhook_events(&id).await.unwrap()[0];
    assert_eq!((e.status.as_str(), e.attempts.len()), ("dead", 2));
    assert_eq!(step(&app).await, 0, "dead letters are not retried by themselves");

    // Redelivery over the API queues the same event again.
    rx.statuses.lock().unwrap().clear();
    let resp = app
        .http
        .post(format!("{}/v1/webhook-events/{}/redeliver", app.base, e.id))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(step(&app).await, 1);
    let e = &app.gateway.store().webhook_events(&id).await.unwrap()[0];
    assert_eq!((e.status.as_str(), e.attempts.len()), ("delivered", 3));
    let resp = app
        .http
        .post(format!("{}/v1/webhook-events/evt_000000000000000000000000/redeliver", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let (status, listed) = app.get(&format!("/v1/payments/{id}/webhooks")).await;
    assert_eq!(status, 200);
    assert_eq!(listed["events"][0]["attempts"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn concurrent_workers_never_send_one_attempt_twice() {
    let app = spawn_app_with(SimConfig::default(), |s| s.payments.pushes_per_phone_per_hour = 100).await;
    let (url, rx) = receiver(&[]).await;
    for i in 0..5 {
        let mut body = common::payment_body(&format!("07123456{i:02}"), 45);
        body["webhook_url"] = url.clone().into();
        let (_, p) = app.post_payment(&body, None).await;
        app.settled(p["id"].as_str().unwrap()).await;
    }
    let (a, b, c) = tokio::join!(
        webhooks::step(&app.gateway, 50),
        webhooks::step(&app.gateway, 50),
        webhooks::step(&app.gateway, 50)
    );
    assert_eq!(a.unwrap() + b.unwrap() + c.unwrap(), 5);
    assert_eq!(rx.got.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn without_any_webhook_url_events_are_kept_as_no_endpoint() {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let id = app.create("0712345678", 45).await["id"].as_str().unwrap().to_owned();
    app.settled(&id).await;
    assert_eq!(step(&app).await, 1);
    let e = &app.gateway.store().webhook_events(&PaymentId::parse(&id).unwrap()).await.unwrap()[0];
    assert_eq!((e.event_type.as_str(), e.status.as_str(), e.attempts.len()), ("payment.paid", "no_endpoint", 0));
}

#[tokio::test]
async fn failures_and_expiry_are_announced_too() {
    let app = spawn_app_with(SimConfig::interactive(), |s| s.webhooks.default_url = None).await;
    let (url, rx) = receiver(&[]).await;
    let mut body = common::payment_body("0712345678", 45);
    body["webhook_url"] = url.into();
    let (_, p) = app.post_payment(&body, None).await;
    app.clock.advance(Duration::from_secs(200));
    assert_eq!(app.reconcile().await.expired, 1);
    step(&app).await;
    let got = rx.got.lock().unwrap().clone();
    let event: serde_json::Value = serde_json::from_str(&got[0].1).unwrap();
    assert_eq!(event["type"], "payment.expired");
    assert_eq!(event["data"]["id"], p["id"]);
}

/// Webhook URLs cannot reach into the gateway's own network: a payment naming a loopback,
/// private or link-local address is refused when it is created, and an event bound for one
/// anyway (here the operator's default URL) is not sent: its attempt records why.
#[tokio::test]
async fn webhooks_to_internal_addresses_are_refused_unless_allowed() {
    let app = spawn_app_with(SimConfig::default(), |s| s.webhooks.allow_private = false).await;
    let (url, rx) = receiver(&[]).await;
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
    for target in [
        url.clone(),
        format!("http://[::1]:{port}/hooks"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://localhost:{port}/hooks"),
        "http://10.0.0.7/hooks".to_owned(),
    ] {
        let mut body = common::payment_body("0712345678", 45);
        body["webhook_url"] = target.clone().into();
        let (status, answer) = app.post_payment(&body, None).await;
        assert_eq!(status, 422, "{target}: {answer}");
        assert_eq!(answer["error"]["field"], "webhook_url");
        assert!(answer["error"]["message"].as_str().unwrap().contains("LIPA_WEBHOOK_ALLOW_PRIVATE"), "{answer}");
    }

    // Bound for the receiver on loopback all the same: not sent, the attempt says why.
    let app = spawn_app_with(SimConfig::default(), |s| {
        s.webhooks.allow_private = false;
        s.webhooks.default_url = Some(url.clone());
    })
    .await;
    let created = app.create("0712345678", 45).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(app.settled(&id).await["status"], "paid");
    assert_eq!(step(&app).await, 1);
    assert!(rx.got.lock().unwrap().is_empty(), "an event reached a loopback address");
    let (_, events) = app.get(&format!("/v1/payments/{id}/webhooks")).await;
    let attempt = &events["events"][0]["attempts"][0];
    assert!(attempt["error"].as_str().unwrap().contains("not a public address"), "{events}");
    assert!(attempt["status"].is_null(), "{attempt}");
}

/// One merchant's endpoint that accepts connections and never answers cannot delay another's
/// events: the worker does not wait for a batch, and each endpoint has slots of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_endpoint_does_not_delay_another_endpoints_events() {
    let app = spawn_app_with(SimConfig::default(), |s| s.webhooks.timeout = Duration::from_secs(60)).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hooks", silent.local_addr().unwrap());
    let (reached, mut reached_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
            let _ = reached.send(());
        }
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(webhooks::run(app.gateway.clone(), stopped));

    let slow = paid_payment(&app, &silent_url).await;
    tokio::time::timeout(Duration::from_secs(20), reached_rx.recv()).await.expect("the silent endpoint was called");
    let (url, rx) = receiver(&[]).await;
    let fast = paid_payment(&app, &url).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while rx.got.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the other endpoint's event never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = rx.got.lock().unwrap().clone();
    assert!(got[0].1.contains(fast.as_str()), "{}", got[0].1);
    let slow_events = app.gateway.store().webhook_events(&slow).await.unwrap();
    assert!(slow_events[0].attempts.is_empty(), "the silent endpoint's attempt is still waiting for its answer");
    let _ = stop.send(true);
    worker.abort();
}

/// A claim takes at most so many events of one endpoint, and none of a busy one, so one
/// endpoint's backlog cannot fill it.
#[tokio::test]
async fn a_claim_takes_a_few_events_of_each_endpoint_and_none_of_a_busy_one() {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let (x, _) = receiver(&[]).await;
    let (y, _) = receiver(&[]).await;
    for url in [&x, &x, &x, &y] {
        paid_payment(&app, url).await;
    }
    let store = app.gateway.store();
    let now = app.gateway.now();
    let lease = now + 60_000;
    let endpoints = |jobs: &[lipa_gateway::store::WebhookJob]| {
        let mut urls: Vec<String> = jobs.iter().map(|j| j.url.clone().unwrap_or_default()).collect();
        urls.sort();
        urls
    };
    let first = store.claim_due_webhooks(now, lease, 50, 2, vec![]).await.unwrap();
    let mut expected = vec![x.clone(), x.clone(), y.clone()];
    expected.sort();
    assert_eq!(endpoints(&first), expected);
    assert!(store.claim_due_webhooks(now, lease, 50, 2, vec![x.clone()]).await.unwrap().is_empty());
    let last = store.claim_due_webhooks(now, lease, 50, 2, vec![]).await.unwrap();
    assert_eq!(endpoints(&last), vec![x]);
}

/// A busy endpoint is a server, not one URL: URLs that differ in path or query (one per order)
/// are all left out of a claim while their server's slots are in use.
#[tokio::test]
async fn a_busy_endpoint_is_left_out_whatever_the_path_or_query() {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let (x, _) = receiver(&[]).await;
    let (y, _) = receiver(&[]).await;
    let origin = x.trim_end_matches("/hooks").to_owned();
    for url in [format!("{x}?order=1"), format!("{x}/deeper?order=2"), x.clone(), y.clone()] {
        paid_payment(&app, &url).await;
    }
    let store = app.gateway.store();
    let now = app.gateway.now();
    let claimed = store.claim_due_webhooks(now, now + 60_000, 50, 4, vec![origin]).await.unwrap();
    let urls: Vec<_> = claimed.iter().map(|j| j.url.clone().unwrap_or_default()).collect();
    assert_eq!(urls, vec![y], "only the other server's event");
}

fn attempt(event_id: &str, at: i64, status: u16) -> lipa_gateway::store::WebhookAttempt {
    lipa_gateway::store::WebhookAttempt {
        event_id: event_id.to_owned(),
        at,
        url: "http://127.0.0.1:9/hooks".into(),
        status: Some(status),
        latency_ms: 5,
        error: None,
        response: String::new(),
    }
}

/// Staff redeliver an event while an attempt is under way; the attempt then fails. The
/// redelivery still happens now, not at the failed attempt's backoff.
#[tokio::test]
async fn a_redelivery_asked_for_during_an_attempt_is_not_undone_by_that_attempt() {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let (url, _) = receiver(&[]).await;
    paid_payment(&app, &url).await;
    let store = app.gateway.store();
    let now = app.gateway.now();
    let claimed = store.claim_due_webhooks(now, now + 120_000, 50, 4, vec![]).await.unwrap();
    let job = &claimed[0];
    assert!(store.redeliver_webhook(&job.id, None, now + 5).await.unwrap());
    let failed = attempt(&job.id, now + 1, 500);
    store
        .finish_webhook_attempt(Some(failed), &job.id, job.lease, WebhookNext::RetryAt(now + 3_600_000))
        .await
        .unwrap();
    let again = store.claim_due_webhooks(now + 6, now + 120_006, 50, 4, vec![]).await.unwrap();
    assert_eq!(again.len(), 1, "the redelivery is due now, not in an hour");
}

/// An attempt that outlived its lease (a paused process, a slow answer) finishes after a
/// newer claim delivered the event: it records itself and changes nothing else.
#[tokio::test]
async fn an_attempt_that_lost_its_lease_does_not_overwrite_a_newer_delivery() {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let (url, _) = receiver(&[]).await;
    let id = paid_payment(&app, &url).await;
    let store = app.gateway.store();
    let now = app.gateway.now();
    let old = store.claim_due_webhooks(now, now + 120_000, 50, 4, vec![]).await.unwrap().remove(0);
    let new = store.claim_due_webhooks(now + 121_000, now + 241_000, 50, 4, vec![]).await.unwrap().remove(0);
    assert_eq!(old.id, new.id, "the lease ran out, so the event was claimed again");
    store
        .finish_webhook_attempt(Some(attempt(&new.id, now + 121_001, 200)), &new.id, new.lease, WebhookNext::Delivered)
        .await
        .unwrap();
    store
        .finish_webhook_attempt(
            Some(attempt(&old.id, now + 1, 500)),
            &old.id,
            old.lease,
            WebhookNext::RetryAt(now + 10_000),
        )
        .await
        .unwrap();
    let events = store.webhook_events(&id).await.unwrap();
    assert_eq!(events[0].status, "delivered", "{events:?}");
    assert_eq!(events[0].attempts.len(), 2, "both attempts are recorded");
    assert!(store.claim_due_webhooks(now + 300_000, now + 420_000, 50, 4, vec![]).await.unwrap().is_empty());
}
