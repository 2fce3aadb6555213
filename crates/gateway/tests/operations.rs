//! Operations: metrics, the callback source allowlist, and a push whose answer never comes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{spawn_app, spawn_app_with};
use daraja_sim::SimConfig;

#[tokio::test]
async fn metrics_count_payments_callbacks_and_daraja_calls() {
    let app = spawn_app().await;
    let id = app.create("0712345678", 45).await["id"].as_str().unwrap().to_owned();
    app.settled(&id).await;
    // The callback's handler counts it after the commit that the payment's status shows, so
    // the counters may trail the status by a moment.
    let wanted = [
        "lipa_payments{status=\"paid\"} 1",
        "lipa_payments_created_total 1",
        "lipa_callbacks_total{outcome=\"applied\"} 1",
        "lipa_callback_duration_seconds_count 1",
        "lipa_daraja_requests_total{operation=\"stk_push\",result=\"ok\"} 1",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
        let missing: Vec<_> = wanted.iter().filter(|line| !text.contains(**line)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "missing {missing:?} in\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_enforced_allowlist_refuses_other_sources_and_trusts_only_the_named_proxy_header() {
    let app = spawn_app_with(SimConfig::interactive(), |s| {
        s.callbacks.allowlist = vec!["196.201.214.200".parse().unwrap()];
        s.callbacks.enforce_allowlist = true;
        s.callbacks.trusted_proxy_header = Some("X-Forwarded-For".into());
    })
    .await;
    let created = app.create("0712345678", 45).await;
    let checkout = created["checkout_request_id"].as_str().unwrap();
    let url = app.sim.sim().transaction(checkout).unwrap().callback_url;
    let body = serde_json::json!({"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":checkout,"ResultCode":1032,"ResultDesc":"Request cancelled by user"}}});

    let direct = app.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(direct.status().as_u16(), 403, "loopback is not Safaricom");
    let spoofed = app.http.post(&url).header("X-Real-IP", "196.201.214.200").json(&body).send().await.unwrap();
    assert_eq!(spoofed.status().as_u16(), 403, "only the configured header is trusted");
    assert_eq!(app.payment(created["id"].as_str().unwrap()).await["status"], "pending");

    // The proxy appends the address it saw; anything left of it was written by the sender.
    let forged =
        app.http.post(&url).header("X-Forwarded-For", "196.201.214.200, 10.0.0.1").json(&body).send().await.unwrap();
    assert_eq!(forged.status().as_u16(), 403, "a left-most entry is the sender's claim, not the proxy's");
    assert_eq!(app.payment(created["id"].as_str().unwrap()).await["status"], "pending");
    // The same claim on a header line of its own: the lines are one list, the proxy's last.
    let two_lines = app
        .http
        .post(&url)
        .header("X-Forwarded-For", "196.201.214.200")
        .header("X-Forwarded-For", "10.0.0.1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(two_lines.status().as_u16(), 403, "the sender's own header line comes first");
    assert_eq!(app.payment(created["id"].as_str().unwrap()).await["status"], "pending");

    let via_proxy =
        app.http.post(&url).header("X-Forwarded-For", "10.9.9.9, 196.201.214.200").json(&body).send().await.unwrap();
    assert_eq!(via_proxy.status().as_u16(), 200);
    assert_eq!(app.payment(created["id"].as_str().unwrap()).await["status"], "failed");
}

#[tokio::test]
async fn a_push_whose_answer_never_comes_stays_pending_for_reconciliation() {
    // A Daraja that accepts connections and never answers the push.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let sim = daraja_sim::spawn(SimConfig::default()).await.unwrap();
    let sim_url = sim.base_url().to_owned();
    tokio::spawn(async move {
        // Serve OAuth from the simulator, then hold every other request open.
        loop {
            let Ok((mut socket, _)) = silent.accept().await else { return };
            let sim_url = sim_url.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if head.starts_with("GET /oauth") {
                    let auth = head
                        .lines()
                        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                        .unwrap_or("")
                        .to_owned();
                    let value = auth.split_once(':').map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
                    let token = reqwest::Client::new()
                        .get(format!("{sim_url}/oauth/v1/generate?grant_type=client_credentials"))
                        .header("authorization", value)
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{token}",
                        token.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                } else {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    let dir = std::env::temp_dir().join(format!("lipa-test-{}", lipa_gateway::ids::random_hex(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let mut settings = common::settings(&dir);
    settings.mpesa.request_timeout = Duration::from_millis(500);
    let connection = lipa_gateway::config::DarajaConnection::custom(
        &silent_url,
        sim.consumer_key(),
        sim.consumer_secret(),
        sim.shortcode(),
        sim.passkey(),
    )
    .unwrap();
    let app = lipa_gateway::startup::Application::build(settings, connection, std::sync::Arc::new(daraja::SystemClock))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let gateway = app.gateway().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (_, key) = lipa_gateway::keys::create(gateway.store(), "shop", gateway.now()).await.unwrap();

    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/payments"))
        .bearer_auth(&key)
        .json(&common::payment_body("0712345678", 45))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["status"], "pending", "{p}");
    assert!(p["checkout_request_id"].is_null());
    let id = lipa_gateway::payment::PaymentId::parse(p["id"].as_str().unwrap()).unwrap();
    let kinds: Vec<_> = gateway.store().events(&id).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["created", "push_unknown"]);
    // With no callback, it expires in the end, flagged for a person: Daraja may have prompted
    // the customer, and without a CheckoutRequestID it cannot be asked.
    let later = gateway.now() + 1;
    assert_eq!(gateway.store().expire_overdue(later, later, later).await.unwrap(), std::slice::from_ref(&id));
    let expired = gateway.store().payment(&id, None).await.unwrap().unwrap();
    assert_eq!((expired.status, expired.needs_review), (lipa_gateway::payment::Status::Expired, true));
    let events = gateway.store().events(&id).await.unwrap();
    let note = events.last().unwrap().detail["note"].as_str().unwrap().to_owned();
    assert!(note.contains("may have prompted the customer"), "{note}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let resp = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    let resp =
        app.http.get(format!("{}/healthz", app.base)).header("X-Request-Id", "trace-abc-123").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123", "a sane caller id is kept");
    let resp =
        app.http.get(format!("{}/healthz", app.base)).header("X-Request-Id", "bad id; drop").send().await.unwrap();
    assert_ne!(resp.headers()["x-request-id"], "bad id; drop", "an unsafe caller id is replaced");
}

/// Reads server-sent events from a response until it ends, returning each event's data.
async fn sse_events(mut resp: reqwest::Response, want: usize) -> Vec<serde_json::Value> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < want {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.expect("stream stalled").unwrap();
        let Some(chunk) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push(serde_json::from_str(data).unwrap());
            }
        }
    }
    events
}

#[tokio::test]
async fn the_event_stream_follows_a_payment_until_it_is_final() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 45).await;
    let id = created["id"].as_str().unwrap();
    let resp =
        app.http.get(format!("{}/v1/payments/{id}/events", app.base)).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let follow = tokio::spawn(sse_events(resp, 3));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(app.sim.sim().resolve(created["checkout_request_id"].as_str().unwrap(), daraja_sim::Answer::Approve));
    let events = follow.await.unwrap();
    let statuses: Vec<_> = events.iter().map(|e| e["status"].as_str().unwrap().to_owned()).collect();
    assert_eq!(statuses, ["pending", "paid"], "one event per state, and the stream ends at the final one");
    assert!(events[1]["receipt"].is_string());
    assert_eq!(events[0]["paybill"], created["paybill"], "shown as the API shows it, Paybill details included");
    assert!(events[0]["paybill"]["account_number"].is_string(), "{}", events[0]);

    let (status, _) = app.get("/v1/payments/pay_000000000000000000000000/events").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_event_stream_of_a_failed_payment_ends_when_its_paybill_window_closes() {
    let app = spawn_app_with(SimConfig::interactive(), |_| {}).await;
    let created = app.create("0712345678", 45).await;
    let id = created["id"].as_str().unwrap();
    assert!(
        app.sim
            .sim()
            .resolve(created["checkout_request_id"].as_str().unwrap(), daraja_sim::Answer::Fail("1032".into()))
    );
    app.settled(id).await;
    let mut resp =
        app.http.get(format!("{}/v1/payments/{id}/events", app.base)).bearer_auth(&app.key).send().await.unwrap();
    // Failed, but still payable by Paybill: the stream stays open, then ends once the window
    // has closed, without the payment changing.
    let first = String::from_utf8_lossy(&resp.chunk().await.unwrap().unwrap()).into_owned();
    assert!(first.contains("\"failed\"") && first.contains("account_number"), "{first}");
    app.clock.advance(Duration::from_secs(25 * 3600));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Some(chunk) =
        tokio::time::timeout_at(deadline, resp.chunk()).await.expect("the stream never ended").unwrap()
    {
        assert!(!String::from_utf8_lossy(&chunk).contains("data:"), "no other event");
    }
}
