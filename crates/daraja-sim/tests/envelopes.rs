//! Daraja's error envelopes for every refusal, on hand-built requests; no panic, no bare 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use common::{sim, token};
use daraja_sim::{SANDBOX_PASSKEY, SimConfig, SimHandle};
use serde_json::{Value, json};

fn now_ts() -> String {
    let t = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+3));
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

fn password(shortcode: &str, ts: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{shortcode}{SANDBOX_PASSKEY}{ts}"))
}

fn valid_push() -> Value {
    let ts = now_ts();
    json!({
        "BusinessShortCode": 174379,
        "Password": password("174379", &ts),
        "Timestamp": ts,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 1,
        "PartyA": 254712345678u64,
        "PartyB": 174379,
        "PhoneNumber": 254712345678u64,
        "CallBackURL": "https://shop.example.com/callbacks/stk/abc",
        "AccountReference": "INV-1",
        "TransactionDesc": "Payment"
    })
}

async fn send(
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", sim.base_url())).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

async fn push_json(sim: &SimHandle, token: &str, body: &Value) -> (u16, Value) {
    send(
        sim,
        reqwest::Method::POST,
        "/mpesa/stkpush/v1/processrequest",
        Some(token),
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await
}

#[track_caller]
fn assert_envelope(answer: &(u16, Value), status: u16, code: &str, message: &str) {
    let (got_status, body) = answer;
    assert_eq!(*got_status, status, "{body}");
    assert_eq!(body["errorCode"], code, "{body}");
    assert_eq!(body["errorMessage"], message, "{body}");
    let request_id = body["requestId"].as_str().unwrap();
    assert!(!request_id.is_empty());
    assert!(code.starts_with(&status.to_string()), "errorCode's first segment is the HTTP status");
}

#[tokio::test]
async fn oauth_errors() {
    let sim = sim(SimConfig::default()).await;
    let url = format!("{}/oauth/v1/generate", sim.base_url());
    let http = reqwest::Client::new();
    let get = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let ok = get(http
        .get(format!("{url}?grant_type=client_credentials"))
        .basic_auth(sim.consumer_key(), Some(sim.consumer_secret())))
    .await;
    assert_eq!(ok.0, 200);
    assert_eq!(ok.1["expires_in"], "3599", "expires_in is a string, as on the live API");
    assert_eq!(ok.1["access_token"].as_str().unwrap().len(), 28);

    let wrong_secret =
        get(http.get(format!("{url}?grant_type=client_credentials")).basic_auth(sim.consumer_key(), Some("nope")))
            .await;
    assert_envelope(&wrong_secret, 400, "400.008.01", "Invalid Authentication passed");
    let wrong_scheme =
        get(http.get(format!("{url}?grant_type=client_credentials")).header("authorization", "Basik abc")).await;
    assert_envelope(&wrong_scheme, 400, "400.008.01", "Invalid Authentication passed");
    let no_grant = get(http.get(&url).basic_auth(sim.consumer_key(), Some(sim.consumer_secret()))).await;
    assert_envelope(&no_grant, 400, "400.008.02", "Invalid grant type passed");
    let bad_grant =
        get(http.get(format!("{url}?grant_type=password")).basic_auth(sim.consumer_key(), Some(sim.consumer_secret())))
            .await;
    assert_envelope(&bad_grant, 400, "400.008.02", "Invalid grant type passed");
    let post = get(http.post(format!("{url}?grant_type=client_credentials"))).await;
    assert_envelope(&post, 405, "405.001", "POST Method Not Allowed");
}

#[tokio::test]
async fn push_envelopes_for_auth_method_path_and_payload() {
    let sim = sim(SimConfig::default()).await;
    let token = token(&sim).await;
    let body = valid_push().to_string().into_bytes();
    let path = "/mpesa/stkpush/v1/processrequest";
    use reqwest::Method;
    assert_envelope(
        &send(&sim, Method::POST, path, None, Some("application/json"), body.clone()).await,
        404,
        "404.001.03",
        "Invalid Access Token",
    );
    assert_envelope(
        &send(&sim, Method::POST, path, Some("forged"), Some("application/json"), body.clone()).await,
        404,
        "404.001.03",
        "Invalid Access Token",
    );
    assert_envelope(
        &send(&sim, Method::GET, path, Some(&token), None, Vec::new()).await,
        405,
        "405.001",
        "GET Method Not Allowed",
    );
    assert_envelope(
        &send(&sim, Method::POST, "/mpesa/stkpush/v2/nope", Some(&token), None, Vec::new()).await,
        404,
        "404.001.01",
        "Resource not found",
    );
    let invalid_shortcode = "Bad Request - Invalid BusinessShortCode";
    assert_envelope(
        &send(
            &sim,
            Method::POST,
            path,
            Some(&token),
            Some("application/x-www-form-urlencoded"),
            b"BusinessShortCode=174379".to_vec(),
        )
        .await,
        400,
        "400.002.02",
        invalid_shortcode,
    );
    assert_envelope(
        &send(&sim, Method::POST, path, Some(&token), None, body.clone()).await,
        400,
        "400.002.02",
        invalid_shortcode,
    );
    for junk in [&b"not json"[..], b"[1,2]", b"{\"a\":", b"\xff\xfe", b""] {
        assert_envelope(
            &send(&sim, Method::POST, path, Some(&token), Some("application/json"), junk.to_vec()).await,
            400,
            "400.002.02",
            invalid_shortcode,
        );
    }
    let huge = vec![b' '; 2 * 1024 * 1024];
    assert_envelope(
        &send(&sim, Method::POST, path, Some(&token), Some("application/json"), huge).await,
        400,
        "400.002.02",
        invalid_shortcode,
    );
    // Every refused request to a Daraja endpoint is recorded (the unknown path is not one).
    let records = sim.sim().requests();
    assert_eq!(records.len(), 11);
    assert!(records.iter().all(|r| r.status >= 400 && r.endpoint == "stk_push"));
}

#[tokio::test]
async fn every_invalid_push_field_is_named_in_the_envelope() {
    let sim = sim(SimConfig::default()).await;
    let token = token(&sim).await;
    let cases: &[(&str, Value)] = &[
        ("BusinessShortCode", json!("abc")),
        ("BusinessShortCode", json!(1234)),
        ("BusinessShortCode", json!(null)),
        ("Timestamp", json!("2025")),
        ("Timestamp", json!("20251301120000")),
        ("Timestamp", json!("2025-01-01 12:00")),
        ("TransactionType", json!("CustomerPaybillOnline")),
        ("Amount", json!(0)),
        ("Amount", json!(-5)),
        ("Amount", json!(1.5)),
        ("Amount", json!("1.50")),
        ("Amount", json!("ten")),
        ("Amount", json!(250_001)),
        ("Amount", json!([1])),
        ("PartyA", json!("0712345678")),
        ("PartyB", json!("12")),
        ("PhoneNumber", json!(254812345678u64)),
        ("PhoneNumber", json!("+254712345678")),
        ("CallBackURL", json!(" https://shop.example.com/cb")),
        ("CallBackURL", json!("https://shop.example.com/mpesa/cb")),
        ("CallBackURL", json!("shop.example.com/cb")),
        ("CallBackURL", json!(42)),
        ("AccountReference", json!("")),
        ("AccountReference", json!(12)),
        ("TransactionDesc", json!({"a": 1})),
    ];
    for (field, value) in cases {
        let mut body = valid_push();
        body[*field] = value.clone();
        let answer = push_json(&sim, &token, &body).await;
        assert_envelope(&answer, 400, "400.002.02", &format!("Bad Request - Invalid {field}"));
    }
    let mut missing = valid_push();
    missing.as_object_mut().unwrap().remove("PhoneNumber");
    assert_envelope(&push_json(&sim, &token, &missing).await, 400, "400.002.02", "Bad Request - Invalid PhoneNumber");
    assert!(sim.sim().transactions().is_empty(), "nothing invalid was accepted");
}

#[tokio::test]
async fn credentials_and_merchant_errors() {
    let sim = sim(SimConfig::default()).await;
    let token = token(&sim).await;
    let mut wrong = valid_push();
    wrong["Password"] = json!(password("174379", "20200101000000"));
    assert_envelope(&push_json(&sim, &token, &wrong).await, 500, "500.001.1001", "Wrong credentials");
    let mut missing = valid_push();
    missing.as_object_mut().unwrap().remove("Password");
    assert_envelope(&push_json(&sim, &token, &missing).await, 500, "500.001.1001", "Wrong credentials");
    let mut unknown = valid_push();
    unknown["BusinessShortCode"] = json!(600100);
    assert_envelope(&push_json(&sim, &token, &unknown).await, 500, "500.001.1001", "Merchant does not exist");
}

#[tokio::test]
async fn lenient_where_daraja_is_lenient() {
    let sim = sim(SimConfig::default()).await;
    let token = token(&sim).await;
    let mut body = valid_push();
    for field in ["BusinessShortCode", "PartyA", "PartyB", "PhoneNumber"] {
        body[field] = json!(body[field].to_string());
    }
    body["Amount"] = json!("1.00");
    body["Remarks"] = json!("an undocumented field");
    let (status, answer) = push_json(&sim, &token, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ResponseCode"], "0", "ResponseCode is the string \"0\"");
    assert_eq!(answer["ResponseDescription"], "Success. Request accepted for processing");
    let record = sim.sim().requests().pop().unwrap();
    assert_eq!(record.unknown_fields, ["Remarks"]);

    let mut decimal = valid_push();
    decimal["PhoneNumber"] = json!(254712345600u64);
    decimal["PartyA"] = json!(254712345600u64);
    decimal["Amount"] = json!(1.0);
    assert_eq!(push_json(&sim, &token, &decimal).await.0, 200);
}

#[tokio::test]
async fn strict_mode_refuses_unknown_fields() {
    let sim = sim(SimConfig { strict_fields: true, ..SimConfig::default() }).await;
    let token = token(&sim).await;
    let mut body = valid_push();
    body["Remarks"] = json!("x");
    assert_envelope(&push_json(&sim, &token, &body).await, 400, "400.002.02", "Bad Request - Invalid Remarks");
}

#[tokio::test]
async fn timestamp_skew_check_is_optional() {
    let mut body = valid_push();
    body["Timestamp"] = json!("20200101000000");
    body["Password"] = json!(password("174379", "20200101000000"));
    let lenient = sim(SimConfig::default()).await;
    assert_eq!(push_json(&lenient, &token(&lenient).await, &body).await.0, 200);
    let strict =
        sim(SimConfig { max_timestamp_skew: std::time::Duration::from_secs(300), ..SimConfig::default() }).await;
    assert_envelope(
        &push_json(&strict, &token(&strict).await, &body).await,
        400,
        "400.002.02",
        "Bad Request - Invalid Timestamp",
    );
}

#[tokio::test]
async fn spike_arrest_over_the_configured_rate() {
    let sim = sim(SimConfig { push_rate_limit: 3, ..SimConfig::default() }).await;
    let token = token(&sim).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        let mut body = valid_push();
        body["PhoneNumber"] = json!(254712345600u64 + i);
        body["PartyA"] = json!(254712345600u64 + i);
        let answer = push_json(&sim, &token, &body).await;
        if answer.0 != 200 {
            assert_envelope(&answer, 500, "500.003.02", "Error Occurred: Spike Arrest Violation");
        }
        statuses.push(answer.0);
    }
    // Ten quick requests span at most two wall-clock seconds: at most 3 + 3 are admitted.
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!((3..=6).contains(&admitted), "{statuses:?}");
}

#[tokio::test]
async fn query_envelopes_and_answers() {
    let sim = sim(SimConfig::interactive()).await;
    let token = token(&sim).await;
    let (_, pushed) = push_json(&sim, &token, &valid_push()).await;
    let id = pushed["CheckoutRequestID"].as_str().unwrap().to_owned();
    let ts = now_ts();
    let query = |id: &str| json!({"BusinessShortCode": "174379", "Password": password("174379", &ts), "Timestamp": ts, "CheckoutRequestID": id});
    let post = |body: Value| {
        let sim = &sim;
        let token = token.clone();
        async move {
            send(
                sim,
                reqwest::Method::POST,
                "/mpesa/stkpushquery/v1/query",
                Some(&token),
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    assert_envelope(&post(query(&id)).await, 500, "500.001.1001", "The transaction is being processed");
    assert_envelope(&post(query("ws_CO_000")).await, 400, "400.002.02", "Bad Request - Invalid CheckoutRequestID");
    assert_envelope(
        &post(json!({"BusinessShortCode": 174379, "Password": "x", "Timestamp": ts})).await,
        400,
        "400.002.02",
        "Bad Request - Invalid CheckoutRequestID",
    );
    let mut wrong = query(&id);
    wrong["Password"] = json!("d3Jvbmc=");
    assert_envelope(&post(wrong).await, 500, "500.001.1001", "Wrong credentials");

    assert!(sim.sim().resolve(&id, daraja_sim::Answer::Fail("1032".into())));
    let (status, done) = post(query(&id)).await;
    assert_eq!(status, 200);
    assert_eq!(done["ResultCode"], "1032", "query ResultCode is a string");
    assert_eq!(done["ResponseCode"], "0");
    assert_eq!(done["ResultDesc"], "Request cancelled by user");
    assert_eq!(done["CheckoutRequestID"], id.as_str());
}

#[tokio::test]
async fn query_has_its_own_rate_limit() {
    let sim = sim(SimConfig { query_rate_limit: 1, ..SimConfig::default() }).await;
    let token = token(&sim).await;
    let ts = now_ts();
    let body = json!({"BusinessShortCode": 174379, "Password": password("174379", &ts), "Timestamp": ts, "CheckoutRequestID": "ws_CO_x"}).to_string();
    let mut codes = Vec::new();
    for _ in 0..4 {
        let (_, answer) = send(
            &sim,
            reqwest::Method::POST,
            "/mpesa/stkpushquery/v1/query",
            Some(&token),
            Some("application/json"),
            body.clone().into_bytes(),
        )
        .await;
        codes.push(answer["errorCode"].as_str().unwrap().to_owned());
    }
    assert!(codes.iter().any(|c| c == "500.003.02"), "{codes:?}");
}

#[tokio::test]
async fn injected_errors_reproduce_the_envelopes_a_client_cannot_provoke() {
    use daraja_sim::{DarajaError, Endpoint};
    let sim = sim(SimConfig::default()).await;
    let token = token(&sim).await;
    for (name, code, message) in [
        ("system_busy", "500.003.02", "System is busy. Please try again in few minutes."),
        ("quota", "500.003.03", "Quota Violation"),
        ("internal", "500.003.1001", "Internal Server Error"),
        ("spike_arrest", "500.003.02", "Error Occurred: Spike Arrest Violation"),
    ] {
        sim.sim().inject_error(Endpoint::StkPush, DarajaError::by_name(name).unwrap(), 1);
        assert_envelope(&push_json(&sim, &token, &valid_push()).await, 500, code, message);
    }
    // Over HTTP too, and only for the endpoint named.
    let resp = reqwest::Client::new()
        .post(format!("{}/sim/inject", sim.base_url()))
        .json(&json!({"endpoint": "stk_query", "error": "quota", "count": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(push_json(&sim, &token, &valid_push()).await.0, 200, "pushes are not affected");
    let bad = reqwest::Client::new()
        .post(format!("{}/sim/inject", sim.base_url()))
        .json(&json!({"endpoint": "stk_push", "error": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await.unwrap().contains("system_busy"));
}

#[tokio::test]
async fn spike_arrest_counts_invalid_requests_too() {
    let sim = sim(SimConfig { push_rate_limit: 2, ..SimConfig::default() }).await;
    let token = token(&sim).await;
    let mut invalid = valid_push();
    invalid["Amount"] = json!(0);
    let codes: Vec<String> = {
        let mut out = Vec::new();
        for _ in 0..5 {
            out.push(push_json(&sim, &token, &invalid).await.1["errorCode"].as_str().unwrap().to_owned());
        }
        out
    };
    assert!(codes.iter().any(|c| c == "500.003.02"), "{codes:?}");
}

#[tokio::test]
async fn an_injected_delay_holds_the_answer_back_but_the_push_still_happens() {
    use daraja_sim::Endpoint;
    let sim = sim(SimConfig::default()).await;
    let token = token(&sim).await;
    sim.sim().inject_delay(Endpoint::StkPush, std::time::Duration::from_secs(2), 1);
    // The caller gives up first, as a gateway with a short timeout would.
    let gave_up = reqwest::Client::new()
        .post(format!("{}/mpesa/stkpush/v1/processrequest", sim.base_url()))
        .bearer_auth(&token)
        .json(&valid_push())
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    assert_eq!(sim.sim().transactions().len(), 1, "Daraja did the push; only its answer was lost");
    // The delay was used up: the next push is answered at once.
    let started = std::time::Instant::now();
    assert_eq!(push_json(&sim, &token, &valid_push()).await.0, 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(sim.sim().transactions().len(), 2);
}
