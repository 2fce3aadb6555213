//! The merchant API's edges: authentication, validation errors, listing and pagination.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{payment_body, spawn_app, spawn_app_with};
use daraja_sim::SimConfig;
use serde_json::{Value, json};

#[tokio::test]
async fn requests_without_a_valid_key_are_refused() {
    let app = spawn_app().await;
    let url = format!("{}/v1/payments", app.base);
    for auth in [None, Some("Bearer nope"), Some("Bearer lipa_sk_00000000000000000000000000000000"), Some("Basic abc")]
    {
        let mut req = app.http.post(&url).json(&payment_body("0712345678", 1));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(body["error"]["message"].as_str().unwrap().contains("lipa keys create"));
    }
    assert!(app.sim.sim().transactions().is_empty());
}

#[tokio::test]
async fn a_revoked_key_stops_working_and_keys_see_only_their_payments() {
    let app = spawn_app().await;
    let id = app.create("0712345678", 5).await["id"].as_str().unwrap().to_owned();
    let (_, other_key) = lipa_gateway::keys::create(app.gateway.store(), "other", app.gateway.now()).await.unwrap();
    let resp = app.http.get(format!("{}/v1/payments/{id}", app.base)).bearer_auth(&other_key).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404, "another merchant's payment is invisible");
    assert!(app.gateway.store().revoke_api_key("test shop", app.gateway.now()).await.unwrap());
    let (status, _) = app.get(&format!("/v1/payments/{id}")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn every_validation_error_names_the_field_and_the_rule() {
    let app = spawn_app().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"amount": 0}), "amount", "at least KES 1"),
        (json!({"amount": 250001}), "amount", "above the maximum"),
        (json!({"amount": 1.5}), "amount", "not a whole number"),
        (json!({"amount": "10"}), "amount", "must be a number"),
        (json!({"phone": "0812345678"}), "phone", "not a mobile number"),
        (json!({"phone": "+255712345678"}), "phone", "not a Kenyan"),
        (json!({"phone": "07123"}), "phone", "digits"),
        (json!({"account_reference": "ABCDEFGHIJKLM"}), "account_reference", "maximum is 12"),
        (json!({"account_reference": ""}), "account_reference", "empty"),
        (json!({"description": "Fourteen chars"}), "description", "maximum is 13"),
        (json!({"metadata": [1, 2]}), "metadata", "JSON object"),
        (json!({"metadata": {"x": "y".repeat(5000)}}), "metadata", "4 KiB"),
        (json!({"webhook_url": "not a url"}), "webhook_url", "not a URL"),
        (json!({"webhook_url": "ftp://example.com/x"}), "webhook_url", "http(s)"),
        (json!({"customer_email": "nobody"}), "customer_email", "not an email"),
    ];
    for (patch, field, rule) in cases {
        let mut body = payment_body("0712345678", 10);
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, err) = app.post_payment(&body, None).await;
        assert_eq!(status, 422, "{patch}: {err}");
        assert_eq!(err["error"]["code"], "invalid_field");
        assert_eq!(err["error"]["field"], field, "{patch}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}: ")), "{message}");
        assert!(message.contains(rule), "{patch}: {message}");
    }
    assert!(app.sim.sim().transactions().is_empty(), "nothing invalid reached Daraja");
    // JSON has one number type: 10.0 is ten shillings.
    let mut body = payment_body("0712345678", 10);
    body["amount"] = json!(10.0);
    let (status, created) = app.post_payment(&body, None).await;
    assert_eq!((status, created["amount"].as_u64()), (201, Some(10)), "{created}");
}

#[tokio::test]
async fn bodies_that_are_not_the_right_json_get_a_clear_400() {
    let app = spawn_app().await;
    let url = format!("{}/v1/payments", app.base);
    let send = |body: &'static str| {
        app.http.post(&url).bearer_auth(&app.key).header("content-type", "application/json").body(body).send()
    };
    for (body, hint) in [
        ("{", "EOF"),
        ("[]", "expected struct CreatePayment"),
        (r#"{"amount": 1}"#, "missing field"),
        (
            r#"{"amount":1,"phone":"0712345678","account_reference":"A","description":"B","colour":"red"}"#,
            "unknown field",
        ),
    ] {
        let resp = send(body).await.unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "invalid_json");
        assert!(err["error"]["message"].as_str().unwrap().contains(hint), "{body}: {err}");
    }
    let resp = app
        .http
        .post(&url)
        .bearer_auth(&app.key)
        .header("Idempotency-Key", "")
        .json(&payment_body("0712345678", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn unknown_and_malformed_payment_ids_are_404() {
    let app = spawn_app().await;
    for id in ["pay_000000000000000000000000", "nope", "pay_%2e%2e"] {
        let (status, body) = app.get(&format!("/v1/payments/{id}")).await;
        assert_eq!(status, 404, "{id}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn listing_filters_and_pages_with_a_cursor() {
    let app = spawn_app_with(SimConfig::default(), |s| s.payments.pushes_per_phone_per_hour = 100).await;
    let mut ids = Vec::new();
    for i in 0..7u64 {
        let phone = if i % 2 == 0 { "254700000000" } else { "254700001032" };
        let id = app.create(phone, 10 + i).await["id"].as_str().unwrap().to_owned();
        app.settled(&id).await;
        ids.push(id);
    }
    let (_, page) = app.get("/v1/payments?limit=3").await;
    let first: Vec<_> = page["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(first.len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page2) = app.get(&format!("/v1/payments?limit=3&cursor={cursor}")).await;
    let second: Vec<_> =
        page2["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(second.len(), 3);
    assert!(first.iter().all(|id| !second.contains(id)), "pages do not overlap");
    let (_, page3) = app.get(&format!("/v1/payments?limit=3&cursor={}", page2["next_cursor"].as_str().unwrap())).await;
    assert_eq!(page3["data"].as_array().unwrap().len(), 1);
    assert!(page3["next_cursor"].is_null());

    let (_, paid) = app.get("/v1/payments?status=paid").await;
    assert_eq!(paid["data"].as_array().unwrap().len(), 4);
    let (_, failed) = app.get("/v1/payments?phone=0700%20001%20032").await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 3);
    assert!(failed["data"].as_array().unwrap().iter().all(|p| p["status"] == "failed"));
    let receipt = paid["data"][0]["receipt"].as_str().unwrap();
    let (_, by_receipt) = app.get(&format!("/v1/payments?receipt={receipt}")).await;
    assert_eq!(by_receipt["data"].as_array().unwrap().len(), 1);
    let (_, none) = app.get("/v1/payments?created_from=2099-01-01T00:00:00Z").await;
    assert!(none["data"].as_array().unwrap().is_empty());

    for (query, field) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("cursor=zzz", "cursor"),
        ("created_to=yesterday", "created_to"),
        ("phone=12", "phone"),
    ] {
        let (status, err) = app.get(&format!("/v1/payments?{query}")).await;
        assert_eq!(status, 422, "{query}");
        assert_eq!(err["error"]["field"], field);
    }
    let (status, _) = app.get("/v1/payments?colour=red").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.http.get(format!("{}/healthz", app.base)).send().await.unwrap().text().await.unwrap(), "ok");
    assert_eq!(app.http.get(format!("{}/readyz", app.base)).send().await.unwrap().status().as_u16(), 200);
    let (status, body) = app.get("/v2/nothing").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn an_idempotency_key_must_be_1_to_255_visible_ascii_characters() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    for key in ["", "order 17", "order\t17", long.as_str()] {
        let (status, err) = app.post_payment(&payment_body("0712345678", 10), Some(key)).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_idempotency_key")), "{key:?}");
    }
    assert!(app.sim.sim().transactions().is_empty(), "nothing was pushed");
    let (status, _) = app.post_payment(&payment_body("0712345678", 10), Some(&"k".repeat(255))).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn the_gateways_address_answers_people_with_links_and_the_api_reference() {
    let app = common::spawn_app().await;
    let page = app.http.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    for needle in [
        "href=\"/admin\"",
        "href=\"/openapi.json\"",
        "href=\"/healthz\"",
        "/v1/payments/{id}/refunds",
        "Refund a paid payment",
    ] {
        assert!(html.contains(needle), "{needle} missing from {html}");
    }
}
