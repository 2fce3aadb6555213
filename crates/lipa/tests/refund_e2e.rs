//! A refund end to end in simulator mode: `lipa serve` with its built-in simulator, an API
//! key from `lipa keys create`, a payment by the number that always succeeds, a refund that
//! succeeds, and the signed `refund.succeeded` webhook delivered to the merchant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_refunded_and_the_signed_refund_succeeded_webhook_arrives() {
    let dir = std::env::temp_dir().join(format!("lipa-refund-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite:{}", dir.join("lipa.db").display());

    // The merchant's webhook endpoint: every body with its signature header.
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let signature = headers.get("lipa-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                sink.lock().unwrap().push((signature, String::from_utf8_lossy(&body).into_owned()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hooks = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let env = [("DATABASE_URL", database.as_str()), ("LIPA_WEBHOOK_ALLOW_PRIVATE", "true")];
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_lipa"))
        .args(["keys", "create", "--name", "shop"])
        .env("LIPA_CONFIG", "/nonexistent/lipa.toml")
        .envs(env)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&created.stdout).into_owned();
    assert!(created.status.success(), "{printed}{}", String::from_utf8_lossy(&created.stderr));
    let value = |label: &str| {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned()
    };
    let (key, secret) = (value("API key"), value("Webhook secret"));

    let (mut serve, base) =
        common::start(&["serve", "--listen", "127.0.0.1:0", "--sim-port", "0"], &env, "Lipa gateway listening");
    let http = reqwest::Client::new();
    let body = json!({"amount": 120, "phone": "0700000000", "account_reference": "E2E", "description": "refund e2e", "webhook_url": hooks});
    let payment: Value = http
        .post(format!("{base}/v1/payments"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = payment["id"].as_str().unwrap().to_owned();
    let get = |path: String| {
        let (http, key) = (http.clone(), key.clone());
        async move { http.get(path).bearer_auth(key).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(format!("{base}/v1/payments/{id}")).await["status"] != "paid" {
        assert!(Instant::now() < deadline, "never paid");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let refund: Value = http
        .post(format!("{base}/v1/payments/{id}/refunds"))
        .bearer_auth(&key)
        .json(&json!({"reason": "end to end"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refund["status"], "pending", "{refund}");
    let refund_id = refund["id"].as_str().unwrap().to_owned();
    let webhook = loop {
        let found = received.lock().unwrap().iter().find(|(_, b)| b.contains("\"refund.succeeded\"")).cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no refund.succeeded webhook: {:?}", received.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(lipa_gateway::webhooks::verify(&secret, &webhook.0, &webhook.1, now, 300), "signed with the key's secret");
    let event: Value = serde_json::from_str(&webhook.1).unwrap();
    assert_eq!(event["data"]["id"], refund_id.as_str());
    assert_eq!(event["data"]["status"], "succeeded");
    assert_eq!(event["data"]["payment"]["refunded_amount"], 120);

    let refund = get(format!("{base}/v1/refunds/{refund_id}")).await;
    assert_eq!(refund["status"], "succeeded", "{refund}");
    let payment = get(format!("{base}/v1/payments/{id}")).await;
    assert_eq!(payment["refunded_amount"], payment["amount"], "{payment}");
    serve.kill().unwrap();
    serve.wait().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
