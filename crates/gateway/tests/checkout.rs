//! Hosted checkout over plain HTTP: sessions through the API, the pages' states, languages,
//! refusals and what unknown or expired sessions show. (The browser suite drives the same
//! pages in Chromium.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, spawn_app_with, spawn_app_with_slow_pushes};
use daraja_sim::{Answer, SimConfig};
use serde_json::{Value, json};

fn session_body() -> Value {
    json!({
        "amount": 45, "account_reference": "TICKET-42", "description": "2 tickets",
        "success_url": "https://shop.example/paid?order=42", "cancel_url": "https://shop.example/cart"
    })
}

async fn create_session(app: &TestApp, body: &Value, key: Option<&str>) -> (u16, Value, bool) {
    let mut req = app.http.post(format!("{}/v1/checkout-sessions", app.base)).bearer_auth(&app.key).json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let r = req.send().await.unwrap();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    (r.status().as_u16(), r.json().await.unwrap(), replayed)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn page(url: &str, lang: Option<&str>) -> (u16, String) {
    let mut req = no_redirects().get(url);
    if let Some(lang) = lang {
        req = req.header("Accept-Language", lang);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn submit(url: &str, phone: &str) -> (u16, String) {
    let r = no_redirects().post(url).form(&[("phone", phone)]).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Waits until the page no longer shows the waiting state.
async fn final_page(url: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, html) = page(url, None).await;
        if !html.contains("data-status=\"pending\"") {
            return html;
        }
        assert!(tokio::time::Instant::now() < deadline, "still waiting: {html}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn app(sim: SimConfig) -> TestApp {
    spawn_app_with(sim, |s| s.business_name = "Lipa Cinema".into()).await
}

#[tokio::test]
async fn a_session_page_takes_a_typed_phone_and_ends_on_the_receipt() {
    let app = app(SimConfig::default()).await;
    let (status, session, _) = create_session(&app, &session_body(), None).await;
    assert_eq!(status, 201, "{session}");
    let url = session["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/checkout/cs_", app.base)), "{url}");

    let (status, html) = page(&url, None).await;
    assert_eq!(status, 200);
    for expected in ["Pay Lipa Cinema", "KES 45", "2 tickets", "TICKET-42", "name=\"phone\""] {
        assert!(html.contains(expected), "{expected:?} missing");
    }

    let (status, _) = submit(&url, "0712 345 678").await;
    assert_eq!(status, 303);
    let html = final_page(&url).await;
    assert!(html.contains("Payment received"), "{html}");
    let id = session["id"].as_str().unwrap();
    let api: Value = app.get(&format!("/v1/checkout-sessions/{id}")).await.1;
    assert_eq!(api["payment_status"], "paid");
    let payment = app.payment(api["payment_id"].as_str().unwrap()).await;
    assert!(html.contains(payment["receipt"].as_str().unwrap()));
    assert_eq!(payment["metadata"]["checkout_session"], id);
    assert!(html.contains(&format!("https://shop.example/paid?order=42&amp;session_id={id}")), "{html}");

    let pushes = app.sim.sim().transactions().len();
    assert_eq!(submit(&url, "0712345678").await.0, 303, "a paid checkout shows its receipt again");
    assert_eq!(app.sim.sim().transactions().len(), pushes, "and pushes nothing");
}

#[tokio::test]
async fn a_mistyped_phone_is_explained_on_the_page_and_nothing_is_pushed() {
    let app = app(SimConfig::default()).await;
    let (_, session, _) = create_session(&app, &session_body(), None).await;
    let url = session["url"].as_str().unwrap();
    let (status, html) = submit(url, "0712 34").await;
    assert_eq!(status, 422);
    assert!(html.contains("10 digits starting with 07 or 01"), "{html}");
    assert!(html.contains("value=\"0712 34\""), "what was typed is kept");
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(app.sim.sim().transactions().is_empty());
}

#[tokio::test]
async fn a_cancelled_prompt_shows_why_and_can_be_sent_again_once_final() {
    let app = app(SimConfig::interactive()).await;
    let (_, session, _) = create_session(&app, &session_body(), None).await;
    let url = session["url"].as_str().unwrap();
    assert_eq!(submit(url, "+254 712 345 678").await.0, 303);

    let (_, html) = page(url, None).await;
    assert!(html.contains("07•• ••• 678"), "{html}");
    assert!(html.contains("data-deadline"));
    assert!(html.contains("http-equiv=\"refresh\""), "works without JavaScript");
    assert!(html.contains("data-stale=\"Lost contact"), "the script can say when live updates stop");
    let (status, html) = submit(url, "0712345678").await;
    assert_eq!(status, 422, "the first prompt is still open");
    assert!(html.contains("still open"));
    assert_eq!(app.sim.sim().transactions().len(), 1);

    let checkout = app.sim.sim().transactions()[0].checkout_request_id.clone();
    assert!(app.sim.sim().resolve(&checkout, Answer::Fail("1032".into())));
    let html = final_page(url).await;
    assert!(html.contains("did not go through"), "{html}");
    assert!(html.contains(daraja::ResultCode::from_wire("1032").customer_message_en()), "{html}");
    assert!(html.contains("https://shop.example/cart"));

    assert_eq!(submit(url, "0712345678").await.0, 303, "send again");
    assert_eq!(app.sim.sim().transactions().len(), 2);
    let (_, html) = page(url, None).await;
    assert!(html.contains("data-status=\"pending\""));
}

#[tokio::test]
async fn pages_speak_swahili_when_asked_and_remember_it() {
    let app = app(SimConfig::default()).await;
    let (_, session, _) = create_session(&app, &session_body(), None).await;
    let url = session["url"].as_str().unwrap();
    let (_, html) = page(url, Some("sw-KE,sw;q=0.9,en;q=0.8")).await;
    assert!(html.contains("lang=\"sw\"") && html.contains("Nambari ya simu ya M-PESA"), "{html}");

    let r = no_redirects().get(format!("{url}?lang=sw")).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("lipa_lang=sw"));
    let r = no_redirects().get(url).header("Cookie", "lipa_lang=sw").send().await.unwrap();
    assert!(r.text().await.unwrap().contains("Tuma ombi la M-PESA"));
    let (_, english) = page(url, Some("en-GB")).await;
    assert!(english.contains("Send the M-PESA prompt"));
}

#[tokio::test]
async fn unknown_and_expired_sessions_get_a_friendly_404() {
    let app = app(SimConfig::default()).await;
    let (status, html) = page(&format!("{}/checkout/cs_0123456789abcdef0123456789abcdef", app.base), None).await;
    assert_eq!(status, 404);
    assert!(html.contains("unknown or has expired"));

    let (_, session, _) = create_session(&app, &session_body(), None).await;
    let url = session["url"].as_str().unwrap();
    app.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(page(url, None).await.0, 404);
    assert_eq!(submit(url, "0712345678").await.0, 404);
    assert!(app.sim.sim().transactions().is_empty());
}

#[tokio::test]
async fn sessions_are_idempotent_validated_and_private_to_their_key() {
    let app = app(SimConfig::default()).await;
    let (s1, first, replayed1) = create_session(&app, &session_body(), Some("order-42")).await;
    let (s2, again, replayed2) = create_session(&app, &session_body(), Some("order-42")).await;
    assert_eq!((s1, s2, replayed1, replayed2), (201, 201, false, true));
    assert_eq!(first["id"], again["id"]);
    let mut other = session_body();
    other["amount"] = 50.into();
    let (status, err, _) = create_session(&app, &other, Some("order-42")).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("idempotency_key_reused")));

    for (field, value) in [("success_url", json!("/relative")), ("amount", json!(0)), ("phone", json!("12345"))] {
        let mut bad = session_body();
        bad[field] = value;
        let (status, err, _) = create_session(&app, &bad, None).await;
        assert_eq!((status, err["error"]["field"].as_str()), (422, Some(field)), "{err}");
    }

    let (_, other_key) =
        lipa_gateway::keys::create(app.gateway.store(), "another shop", app.gateway.now()).await.unwrap();
    let r = app
        .http
        .get(format!("{}/v1/checkout-sessions/{}", app.base, first["id"].as_str().unwrap()))
        .bearer_auth(other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn a_submit_dropped_while_the_prompt_is_sent_still_gives_the_session_its_payment() {
    let app = spawn_app_with_slow_pushes(SimConfig::interactive(), Duration::from_millis(600)).await;
    let (_, session, _) = create_session(&app, &session_body(), None).await;
    let url = session["url"].as_str().unwrap();
    let id = session["id"].as_str().unwrap();
    // The customer's browser gives up (closed tab, second click) while Daraja is still answering.
    let send = no_redirects().post(url).form(&[("phone", "0712345678")]).send();
    let in_flight = tokio::spawn(send);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.sim.sim().transactions().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the prompt was never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    in_flight.abort();
    assert!(in_flight.await.is_err_and(|e| e.is_cancelled()), "dropped mid-push");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, s) = app.get(&format!("/v1/checkout-sessions/{id}")).await;
        if let Some(payment_id) = s["payment_id"].as_str() {
            let payment = app.payment(payment_id).await;
            assert_eq!(payment["metadata"]["checkout_session"], id);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the session never learnt of its payment: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.sim.sim().transactions().len(), 1, "one prompt");
    // The page now waits on that prompt, and a new submit is refused while it is open.
    let (_, html) = page(url, None).await;
    assert!(html.contains("data-status=\"pending\""), "{html}");
    assert_eq!(submit(url, "0712345678").await.0, 422);
    assert_eq!(app.sim.sim().transactions().len(), 1);
}

#[tokio::test]
async fn a_prompt_that_never_came_offers_the_paybill_way_and_the_page_turns_paid() {
    let app = app(SimConfig::default()).await;
    let (_, session, _) = create_session(&app, &session_body(), None).await;
    let url = session["url"].as_str().unwrap().to_owned();
    submit(&url, "0700 001 037").await;
    let failed = final_page(&url).await;
    assert!(failed.contains("The payment did not go through"), "{failed}");
    assert!(failed.contains("Pay from the M-PESA menu instead"), "{failed}");
    assert!(failed.contains(&format!("<dd class=\"code\">{}</dd>", app.sim.shortcode())), "{failed}");
    let account = failed.split("<dd class=\"code\">").nth(2).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(account.len(), 7, "{failed}");
    assert!(failed.contains("data-status=\"failed\""), "the page follows the payment while it can be paid");
    let (_, swahili) = page(&url, Some("sw")).await;
    assert!(swahili.contains("Lipa kupitia menyu ya M-PESA badala yake"), "{swahili}");

    let payment = daraja_sim::ManualPayment {
        shortcode: app.sim.shortcode(),
        account: account.clone(),
        amount: 20,
        phone: "0712345678".into(),
        pin: None,
        faults: None,
    };
    app.sim.sim().c2b_pay(payment.clone()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, html) = page(&url, None).await;
        if html.contains("KES 20</strong> received so far") {
            assert!(html.contains("KES 25"), "what is left: {html}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the part paid is not shown: {html}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.sim.sim().c2b_pay(daraja_sim::ManualPayment { amount: 25, ..payment }).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, html) = page(&url, None).await;
        if html.contains("Payment received") {
            assert!(!html.contains("Pay from the M-PESA menu"), "{html}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never paid: {html}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_merchants_display_name_heads_its_checkout_in_both_languages() {
    let app = app(SimConfig::default()).await;
    let key = lipa_gateway::keys::authenticate(app.gateway.store(), &app.key).await.unwrap().unwrap();
    assert!(app.gateway.store().set_display_name(&key.id, Some("Lipa Tours & Safaris")).await.unwrap());
    let (_, session, _) = create_session(&app, &session_body(), None).await;
    let url = session["url"].as_str().unwrap();
    let (_, html) = page(url, None).await;
    assert!(html.contains("<h1>Pay Lipa Tours &amp; Safaris</h1>"), "{html}");
    assert!(!html.contains("Lipa Cinema"), "the merchant's name, not the installation's: {html}");
    let (_, html) = page(url, Some("sw")).await;
    assert!(html.contains("<h1>Malipo kwa Lipa Tours &amp; Safaris</h1>"), "{html}");
}

#[tokio::test]
async fn a_failed_page_names_the_business_and_amount_and_tells_an_unanswered_prompt_from_an_unreachable_phone() {
    let app = app(SimConfig::interactive()).await;
    let mut reasons = Vec::new();
    for waited in [Duration::from_secs(45), Duration::from_secs(2)] {
        let (_, session, _) = create_session(&app, &session_body(), None).await;
        let url = session["url"].as_str().unwrap().to_owned();
        assert_eq!(submit(&url, "0712345678").await.0, 303);
        let (_, waiting) = page(&url, None).await;
        assert!(waiting.contains("data-deadline=\"60\""), "the countdown is the prompt's lifetime: {waiting}");
        app.clock.advance(waited);
        let prompt = app.sim.sim().transactions().last().unwrap().checkout_request_id.clone();
        assert!(app.sim.sim().resolve(&prompt, Answer::Fail("1037".into())));
        let html = final_page(&url).await;
        assert!(html.contains("Lipa Cinema") && html.contains("KES 45") && html.contains("TICKET-42"), "{html}");
        reasons.push(html);
    }
    assert!(reasons[0].contains("was not answered in time"), "{}", reasons[0]);
    assert!(!reasons[0].contains("Check it is on and has signal"), "{}", reasons[0]);
    assert!(reasons[1].contains("Check it is on and has signal"), "{}", reasons[1]);
}
