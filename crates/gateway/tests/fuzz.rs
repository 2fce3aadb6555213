//! Property tests over hostile input at the gateway's edges, through real HTTP: arbitrary JSON
//! for the merchant API, arbitrary bytes for the callback endpoint, arbitrary signature
//! headers. The properties: never a 5xx, never a panic, nothing paid by junk, and signatures
//! verify only when made with the secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::Value;

/// One gateway for all cases (an interactive simulator: no prompt is ever answered).
struct Shared {
    runtime: tokio::runtime::Runtime,
    app: common::TestApp,
    callback_url: String,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (app, callback_url) = runtime.block_on(async {
            let app = common::spawn_app_with(daraja_sim::SimConfig::interactive(), |_| {}).await;
            let created = app.create("0712345678", 45).await;
            let checkout = created["checkout_request_id"].as_str().unwrap().to_owned();
            let url = app.sim.sim().transaction(&checkout).unwrap().callback_url;
            (app, url)
        });
        Shared { runtime, app, callback_url }
    })
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
        prop_oneof![
            Just("0712345678"),
            Just("254712345678"),
            Just("+254 712 345 678"),
            Just("TICKET-42"),
            Just("a\u{0}b")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::hash_map(
                prop_oneof![
                    Just("amount".to_owned()),
                    Just("phone".to_owned()),
                    Just("account_reference".to_owned()),
                    Just("description".to_owned()),
                    Just("metadata".to_owned()),
                    Just("webhook_url".to_owned()),
                    Just("customer_email".to_owned()),
                    Just("success_url".to_owned()),
                    Just("cancel_url".to_owned()),
                    "\\PC{0,12}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn post(path: &str, body: Vec<u8>) -> u16 {
    let s = shared();
    s.runtime.block_on(async {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", s.app.base) };
        let r = s.app.http.post(url).bearer_auth(&s.app.key).header("content-type", "application/json").body(body);
        r.send().await.unwrap().status().as_u16()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_json_to_the_merchant_api_gets_an_answer_below_500(body in json()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        for path in ["/v1/payments", "/v1/checkout-sessions"] {
            let status = post(path, bytes.clone());
            prop_assert!(status < 500, "{path} answered {status} to {body}");
        }
    }

    #[test]
    fn any_bytes_to_the_merchant_api_get_an_answer_below_500(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for path in ["/v1/payments", "/v1/checkout-sessions"] {
            let status = post(path, body.clone());
            prop_assert!(status < 500, "{path} answered {status}");
        }
    }

    #[test]
    fn any_bytes_to_a_real_callback_url_pay_nothing_and_never_fail_with_5xx(body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let s = shared();
        let status = post(&s.callback_url.clone(), body);
        prop_assert!(status < 500, "callback answered {status}");
        let paid = s.runtime.block_on(s.app.gateway.store().count_by_status()).unwrap();
        prop_assert!(!paid.iter().any(|(st, n)| st == "paid" && *n > 0), "{paid:?}");
    }

    #[test]
    fn signature_headers_verify_only_when_made_with_the_secret(header in "\\PC{0,120}", body in "\\PC{0,64}", t in 0i64..4_000_000_000) {
        prop_assert!(!lipa_gateway::webhooks::verify("whsec_fuzz", &header, &body, t, 300));
        let signed = lipa_gateway::webhooks::signature("whsec_fuzz", t, &body);
        prop_assert!(lipa_gateway::webhooks::verify("whsec_fuzz", &signed, &body, t, 300));
        prop_assert!(!lipa_gateway::webhooks::verify("whsec_other", &signed, &body, t, 300));
    }
}
