//! The README's first command: `lipa demo --auto` starts, prints what to open, and its "try
//! it" steps (book seats in the shop, pay on the checkout page) end with the tickets paid; the
//! gateway's API answers with the printed key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

/// Books `seats` of the first movie as a customer would; the shop's answer sends them to
/// Lipa's checkout page, whose URL is returned.
async fn book(http: &reqwest::Client, shop: &str, seats: &str) -> String {
    let booked = http
        .post(format!("{shop}/movies/1"))
        .form(&[("name", "Wanjiku"), ("phone", "0712 345 678"), ("quantity", seats)])
        .send()
        .await
        .unwrap();
    assert_eq!(booked.status().as_u16(), 303);
    booked.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_demo_prints_its_urls_and_a_payment_made_as_it_says_gets_paid() {
    let demo = common::Demo::start(true);
    let (shop, api, phone, key) =
        (demo.value("Cinema shop"), demo.value("Gateway API"), demo.value("Virtual phone"), demo.value("API key"));
    assert!(phone.ends_with("/phone"), "{phone}");
    assert!(key.starts_with("lipa_sk_"));

    // Try it, step 1: book seats in the shop; it sends the customer to Lipa's checkout.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let programme = http.get(&shop).send().await.unwrap().text().await.unwrap();
    assert!(programme.contains("Now showing"), "{programme}");
    let checkout = book(&http, &shop, "2").await;
    assert!(checkout.starts_with(&format!("{api}/checkout/")), "{checkout}");
    let sent = http.post(&checkout).form(&[("phone", "0712 345 678")]).send().await.unwrap();
    assert_eq!(sent.status().as_u16(), 303, "the prompt is sent");

    // Step 2: --auto approves by itself. Step 3: the checkout says paid and returns to the shop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let receipt_page = loop {
        let html = http.get(&checkout).send().await.unwrap().text().await.unwrap();
        if html.contains("Payment received") {
            break html;
        }
        assert!(tokio::time::Instant::now() < deadline, "never paid: {html}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let back = receipt_page.split("href=\"").find(|s| s.starts_with(&shop)).unwrap().split('"').next().unwrap();
    let ticket = http.get(back.replace("&amp;", "&")).send().await.unwrap().text().await.unwrap();
    assert!(ticket.contains("Your tickets") && ticket.contains(">Paid<"), "{ticket}");

    let payments: serde_json::Value =
        http.get(format!("{api}/v1/payments")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(payments["data"][0]["status"], "paid", "{payments}");
    assert!(payments["data"][0]["receipt"].is_string());
    assert_eq!(
        std::fs::read_to_string(demo.dir.join("demo-api-key")).unwrap(),
        key,
        "the key is kept for the next run"
    );
}

#[tokio::test]
async fn the_demo_names_the_settings_it_does_not_read_and_uses_one_business_name() {
    let demo =
        common::Demo::start_with(false, &["--business-name", "Sinema Yetu"], &[("LIPA_BUSINESS_NAME", "Elsewhere")]);
    let note = demo.printed.iter().find(|l| l.starts_with("Note:")).unwrap_or_else(|| panic!("{:#?}", demo.printed));
    assert!(note.contains("does not read") && note.contains("LIPA_BUSINESS_NAME"), "{note}");
    assert!(note.contains("--business-name"), "{note}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let shop = demo.value("Cinema shop");
    let checkout = book(&http, &shop, "1").await;
    let page = http.get(&checkout).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Pay Sinema Yetu") && !page.contains("Elsewhere"), "{page}");
    assert!(http.get(&shop).send().await.unwrap().text().await.unwrap().contains("Sinema Yetu"));
}

#[test]
fn a_taken_gateway_port_names_the_demos_own_option() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = std::env::temp_dir().join(format!("lipa-demo-{}", lipa_gateway::ids::random_hex(6)));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lipa"))
        .args(["demo", "--shop-port", "0", "--sim-port", "0", "--gateway-port", &port, "--data-dir"])
        .arg(&dir)
        .env("LIPA_LOG", "warn")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("use --gateway-port") && !text.contains("LIPA_LISTEN"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}
