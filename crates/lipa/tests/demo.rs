//! The README's first command: `lipa demo` starts, prints what to open, and its "try it"
//! steps take a payment to `paid`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn the_demo_prints_its_urls_and_a_payment_made_as_it_says_gets_paid() {
    let dir = std::env::temp_dir().join(format!("lipa-demo-{}", lipa_gateway::ids::random_hex(6)));
    let mut child = Command::new(env!("CARGO_BIN_EXE_lipa"))
        .args(["demo", "--auto", "--gateway-port", "0", "--sim-port", "0", "--data-dir"])
        .arg(&dir)
        .env("LIPA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Press Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    let value = |label: &str| {
        printed
            .iter()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {label:?} line in {printed:#?}"))
    };
    let (api, phone, key) = (value("Gateway API"), value("Virtual phone"), value("API key"));
    assert!(phone.ends_with("/phone"), "{phone}");
    assert!(key.starts_with("lipa_sk_"));

    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{api}/v1/payments"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"amount": 45, "phone": "0712345678", "account_reference": "TICKET-42", "description": "Movie ticket"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let paid = loop {
        let p: serde_json::Value =
            http.get(format!("{api}/v1/payments/{id}")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        if p["status"] != "pending" {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "still pending: {p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(paid["status"], "paid", "{paid}");
    assert!(paid["receipt"].is_string());
    assert_eq!(std::fs::read_to_string(dir.join("demo-api-key")).unwrap(), key, "the key is kept for the next run");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
