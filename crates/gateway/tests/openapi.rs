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

/// A pattern the document publishes for a field, compiled.
fn pattern(schema: &serde_json::Value) -> regex::Regex {
    regex::Regex::new(schema["pattern"].as_str().expect("a pattern")).unwrap()
}

/// Phones built the ways people type them: a prefix, a first digit, eight more digits (now and
/// then one more or less), and spaces or dashes here and there.
fn typed_phone() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let prefix = prop::sample::select(vec!["", "0", "254", "+254", " +254", "00254", "-0", "+", "+0", "2540", "00"]);
    let first = prop::sample::select(vec!['7', '1', '0', '2']);
    let rest = prop_oneof![8 => Just(8usize), 1 => Just(7usize), 1 => Just(9usize)]
        .prop_flat_map(|n| proptest::collection::vec(prop::sample::select(vec!['0', '1', '5', '9']), n));
    let seps = proptest::collection::vec(prop::sample::select(vec!["", "", "", " ", "-"]), 12);
    (prefix, first, rest, seps).prop_map(|(prefix, first, rest, seps)| {
        let mut s = prefix.to_owned();
        for (d, sep) in std::iter::once(&first).chain(&rest).zip(seps.iter().cycle()) {
            s.push_str(sep);
            s.push(*d);
        }
        s
    })
}

proptest::proptest! {
    /// The published phone pattern is exactly what the API accepts: generated requests that
    /// match it are accepted, and nothing else is.
    #[test]
    fn the_phone_pattern_is_exactly_what_the_api_accepts(
        phone in proptest::prop_oneof![4 => typed_phone(), 1 => "[0-9 +-]{0,16}"]
    ) {
        let doc = lipa_gateway::api::openapi::document();
        let re = pattern(&doc["components"]["schemas"]["CreatePayment"]["properties"]["phone"]);
        proptest::prop_assert_eq!(re.is_match(&phone), daraja::Msisdn::parse(&phone).is_ok(), "{:?}", phone);
    }

    /// Text matching the published reference pattern and length is accepted; accepted text
    /// without surrounding spaces matches it.
    #[test]
    fn the_reference_pattern_agrees_with_the_api(text in "[A-Za-z0-9 _.#/!é-]{0,14}") {
        let doc = lipa_gateway::api::openapi::document();
        let schema = &doc["components"]["schemas"]["CreatePayment"]["properties"]["account_reference"];
        let documented = pattern(schema).is_match(&text) && text.chars().count() <= 12;
        let accepted = daraja::AccountReference::parse(&text).is_ok();
        if documented {
            proptest::prop_assert!(accepted, "{:?} matches the document but is refused", text);
        }
        if accepted && text.trim() == text {
            proptest::prop_assert!(documented, "{:?} is accepted but the document refuses it", text);
        }
    }
}
