//! The OpenAPI document covers every route the router has, and each documented route is
//! served (none falls through to the "no such endpoint" fallback).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::spawn_app;

/// Every path passed to `.route(` in the router's source, with `{param}` kept as written.
fn routed_paths() -> Vec<String> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs")).unwrap();
    source.split(".route(\"").skip(1).map(|rest| rest.split('"').next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let doc = lipa_gateway::api::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed = routed_paths();
    assert!(routed.len() >= 8, "found the router's routes: {routed:?}");
    for path in &routed {
        assert!(documented.contains(path), "route {path} is not in /openapi.json");
    }

    let app = spawn_app().await;
    let served: serde_json::Value =
        app.http.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(served, doc);
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "pay_000000000000000000000000").replace("{token}", &"0".repeat(32));
        for method in item.as_object().unwrap().keys() {
            let req = app.http.request(method.to_uppercase().parse().unwrap(), format!("{}{concrete}", app.base));
            let resp = req.bearer_auth(&app.key).json(&serde_json::json!({})).send().await.unwrap();
            let body = resp.text().await.unwrap();
            assert!(!body.contains("no such endpoint"), "{method} {path} is documented but not served");
        }
    }
}
