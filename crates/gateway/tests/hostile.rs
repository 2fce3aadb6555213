//! Hostile requests against a running gateway: wrong methods, huge headers and bodies, slow
//! clients, invalid UTF-8, injection-looking text, path tricks in tokens. Every request gets
//! a clear 4xx, the server keeps serving others, and nothing is marked paid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, spawn_app_with};
use daraja_sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn app() -> TestApp {
    spawn_app_with(SimConfig::interactive(), |s| s.header_timeout = Duration::from_secs(1)).await
}

async fn no_payment_paid(app: &TestApp) {
    let counts = app.gateway.store().count_by_status().await.unwrap();
    assert!(!counts.iter().any(|(status, n)| status == "paid" && *n > 0), "{counts:?}");
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths_get_clear_client_errors() {
    let app = app().await;
    let token = "0".repeat(32);
    for (method, path, expected) in [
        ("GET", format!("/callbacks/stk/{token}"), 405),
        ("DELETE", "/v1/payments".to_owned(), 405),
        ("PUT", "/v1/checkout-sessions".to_owned(), 405),
        ("GET", "/callbacks/stk/..%2F..%2Fetc%2Fpasswd".to_owned(), 405),
        ("POST", "/callbacks/stk/..%2F..%2Fetc%2Fpasswd".to_owned(), 404),
        ("POST", "/callbacks/stk/%00%00".to_owned(), 404),
        ("POST", format!("/callbacks/stk/{}", "A".repeat(32)), 404),
        ("GET", "/../../etc/passwd".to_owned(), 404),
        ("GET", "/checkout/..%2Fadmin".to_owned(), 404),
    ] {
        let r =
            app.http.request(method.parse().unwrap(), format!("{}{path}", app.base)).body("{}").send().await.unwrap();
        assert_eq!(r.status().as_u16(), expected, "{method} {path}");
        if path.starts_with("/checkout/") {
            continue; // a customer's page, in HTML
        }
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{method} {path}: {body}");
        if expected == 405 {
            assert_eq!(body["error"]["code"], "method_not_allowed", "{method} {path}");
        }
    }
    no_payment_paid(&app).await;
}

/// What the HTTP framework refuses by itself (a wrong content type, JSON that does not parse
/// or does not fit, a body too large) is answered in the same JSON error envelope as the
/// API's own errors, saying what is wrong.
#[tokio::test]
async fn the_frameworks_own_refusals_use_the_json_error_envelope() {
    let app = app().await;
    let post = |content_type: &'static str, body: String| {
        app.http
            .post(format!("{}/v1/payments", app.base))
            .bearer_auth(&app.key)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (content_type, body, status, code) in [
        ("text/plain", "{}".to_owned(), 400, "invalid_json"),
        ("application/json", "{\"amount\":".to_owned(), 400, "invalid_json"),
        ("application/json", format!("{{\"metadata\":\"{}\"}}", "x".repeat(1 << 17)), 413, "payload_too_large"),
    ] {
        let r = post(content_type, body).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{content_type}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{body}");
    }
    // Lower-case `bearer` is the same scheme (RFC 9110).
    let r = app
        .http
        .get(format!("{}/v1/payments", app.base))
        .header("authorization", format!("bearer {}", app.key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r =
        app.http.get(format!("{}/v1/payments", app.base)).header("authorization", "Basic abc").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn huge_headers_and_bodies_are_refused() {
    let app = app().await;
    let r = app.http.get(format!("{}/healthz", app.base)).header("X-Big", "a".repeat(1 << 20)).send().await;
    // hyper answers 431 or closes the connection; either way nothing is served.
    assert!(r.map_or(true, |r| r.status().as_u16() == 431), "a 1 MiB header is refused");

    let token = "0".repeat(32);
    let r = app
        .http
        .post(format!("{}/callbacks/stk/{token}", app.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await;
    // 413 from the length alone; the connection may then be reset while the client still
    // sends, which refuses the body just as well.
    assert!(r.map_or(true, |r| r.status().as_u16() == 413), "a 2 MiB body is refused");
    let r = app
        .http
        .post(format!("{}/v1/payments", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(format!("{{\"metadata\":\"{}\"}}", "x".repeat(1 << 20)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(app.http.get(format!("{}/healthz", app.base)).send().await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn slow_clients_are_cut_and_do_not_starve_others() {
    let app = app().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Ten connections that start a request and never finish its headers.
    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /callbacks/stk/00000000000000000000000000000000 HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(s);
    }
    // Others are served meanwhile.
    for _ in 0..20 {
        let r = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    // The slow ones are closed once their header time is up (1 s here).
    for mut s in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the connection was not cut");
    }

    // A body dripped too slowly is cut as well (the whole request is due within 6 s here).
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /callbacks/stk/00000000000000000000000000000000 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

#[tokio::test]
async fn invalid_utf8_and_broken_json_get_clear_errors() {
    let app = app().await;
    let r = app
        .http
        .post(format!("{}/v1/payments", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(vec![b'{', 0xff, 0xfe, b'}'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");

    // A callback that is not JSON is stored for review and answered 400, never 5xx.
    let created = app.create("0712345678", 45).await;
    let checkout = created["checkout_request_id"].as_str().unwrap();
    let url = app.sim.sim().transaction(checkout).unwrap().callback_url;
    let r = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![0xc3, 0x28, b'{'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(app.payment(created["id"].as_str().unwrap()).await["status"], "pending");
}

#[tokio::test]
async fn injection_looking_text_is_data_in_every_field() {
    let app = app().await;
    let nasty =
        ["' OR 1=1 --", "\"; DROP TABLE payments; --", "<script>alert(1)</script>", "../../etc/passwd", "%00\u{0}"];
    for (i, text) in nasty.iter().enumerate() {
        let body = serde_json::json!({
            "amount": 45, "phone": text, "account_reference": text, "description": text,
            "metadata": {"note": text}, "webhook_url": text, "customer_email": text
        });
        let (status, answer) = app.post_payment(&body, Some(&format!("nasty-{i}"))).await;
        assert_eq!(status, 422, "{text}: {answer}");
        assert!(answer["error"]["field"].is_string(), "{answer}");
    }
    // As filters they match nothing and break nothing.
    for text in nasty {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("reference", text)
            .append_pair("receipt", text)
            .finish();
        let (status, page) = app.get(&format!("/v1/payments?{query}")).await;
        assert_eq!(status, 200, "{text}: {page}");
        assert_eq!(page["data"].as_array().unwrap().len(), 0);
    }
    let (status, _) = app.get("/v1/payments/pay_' OR 1=1 --").await;
    assert_eq!(status, 404);
    for path in ["/checkout/cs_%00", "/v1/checkout-sessions/cs_%00"] {
        let r = app.http.get(format!("{}{path}", app.base)).bearer_auth(&app.key).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    let r = app
        .http
        .post(format!("{}/v1/webhook-events/evt_%00/redeliver", app.base))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // A NUL inside metadata is data too (kept as JSON text, on PostgreSQL as well).
    let body = serde_json::json!({"amount": 45, "phone": "0712345678", "account_reference": "NUL", "description": "nul",
        "metadata": {"note": "a\u{0}b"}});
    let (status, created) = app.post_payment(&body, Some("nul-metadata")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(app.payment(created["id"].as_str().unwrap()).await["metadata"]["note"], "a\u{0}b");
    // The table is still there.
    assert_eq!(app.gateway.store().count_by_status().await.unwrap(), [("pending".to_owned(), 1)]);
    no_payment_paid(&app).await;
}

/// Safaricom's addresses (the callback allowlist) have no share: a burst of callbacks past
/// it is still served.
#[tokio::test]
async fn the_callback_allowlist_has_no_share_of_connections() {
    let app = spawn_app_with(SimConfig::interactive(), |s| {
        s.header_timeout = Duration::from_secs(1);
        s.callbacks.allowlist = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..lipa_gateway::startup::MAX_PER_PEER {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&answer));
}

/// One client cannot take every connection: past its share, its connections are closed at
/// once, and others are still served.
#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let app = app().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..lipa_gateway::startup::MAX_PER_PEER {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a connection past the share was served: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
    // Given back as they close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if app.http.get(format!("{}/healthz", app.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "connections were not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pages anyone can open without a key: the gateway's home page and its OpenAPI
/// document. Flooded, they answer the same bytes every time (built once, nothing kept per
/// request or per sender), refuse other methods and bodies in the JSON envelope, and write
/// nothing.
#[tokio::test]
async fn a_flood_of_the_open_pages_costs_no_storage_and_wrong_methods_get_the_envelope() {
    let app = app().await;
    let before = app.gateway.store().count_by_status().await.unwrap();
    let first = |path: &'static str| {
        let (http, base) = (app.http.clone(), app.base.clone());
        async move { http.get(format!("{base}{path}")).send().await.unwrap().bytes().await.unwrap() }
    };
    let (home, document) = (first("/").await, first("/openapi.json").await);
    assert!(String::from_utf8_lossy(&home).contains("API reference"));
    // Eight at a time: one address may hold only a few connections (a test of its own).
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..400 {
        let slot = slots.clone().acquire_owned().await.unwrap();
        let (http, base) = (app.http.clone(), app.base.clone());
        let (home, document) = (home.clone(), document.clone());
        flood.spawn(async move {
            let _slot = slot;
            let (path, expected) = if i % 2 == 0 { ("/", home) } else { ("/openapi.json", document) };
            let r = http.get(format!("{base}{path}?n={i}&junk={}", "x".repeat(i % 50))).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path}");
            assert_eq!(r.bytes().await.unwrap(), expected, "{path}: the same answer every time");
            let wrong = http.post(format!("{base}{path}")).body(format!("{{\"n\": {i}}}")).send().await.unwrap();
            assert!(wrong.status().is_client_error(), "{path}: {}", wrong.status());
            let body: serde_json::Value = wrong.json().await.unwrap_or_default();
            assert!(body["error"]["code"].is_string(), "{path}: {body}");
        });
    }
    while let Some(done) = flood.join_next().await {
        done.unwrap();
    }
    assert_eq!(app.gateway.store().count_by_status().await.unwrap(), before, "nothing written");
}
