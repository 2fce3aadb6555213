//! The hosted checkout in a real headless Chromium: typing a phone, the waiting page updating
//! live, failure and "send again", inline validation, and the same flow with JavaScript off.
//! `LIPA_SCREENSHOTS=1` saves the pages under `docs/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::webdriver::Browser;
use common::{TestApp, spawn_app_with};
use daraja_sim::{Answer, SimConfig};
use serde_json::json;

async fn app() -> TestApp {
    spawn_app_with(SimConfig::interactive(), |s| s.business_name = "Lipa Cinema".into()).await
}

async fn session_url(app: &TestApp) -> (String, String) {
    let body = json!({
        "amount": 45, "account_reference": "TICKET-42", "description": "2 tickets",
        "success_url": "https://shop.example/paid", "cancel_url": "https://shop.example/cart"
    });
    let r = app.http.post(format!("{}/v1/checkout-sessions", app.base)).bearer_auth(&app.key).json(&body);
    let session: serde_json::Value = r.send().await.unwrap().json().await.unwrap();
    (session["url"].as_str().unwrap().to_owned(), session["id"].as_str().unwrap().to_owned())
}

/// The simulator's open prompt for the latest push, once it is there.
async fn latest_prompt(app: &TestApp, pushes: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let all = app.sim.sim().transactions();
        if all.len() >= pushes {
            return all[pushes - 1].checkout_request_id.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no push arrived");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn checkout_waits_live_and_lands_on_the_receipt_when_the_callback_arrives() {
    let Some(browser) = Browser::start(true).await else { return };
    let app = app().await;
    let (url, id) = session_url(&app).await;
    browser.goto(&url).await;
    browser.wait_for_text("Pay Lipa Cinema", 5).await;
    browser.type_into("#phone", "0712 345 678").await;
    browser.screenshot("checkout-phone").await;
    browser.click("button[type=submit]").await;

    browser.wait_for_text("Check your phone", 10).await;
    let text = browser.page_text().await;
    assert!(text.contains("07•• ••• 678") && text.contains("KES 45"), "{text}");
    browser.screenshot("checkout-waiting").await;

    // Nobody reloads the page: the callback's settlement reaches it over server-sent events.
    let prompt = latest_prompt(&app, 1).await;
    assert!(app.sim.sim().resolve(&prompt, Answer::Approve));
    browser.wait_for_text("Payment received", 10).await;
    browser.screenshot("checkout-paid").await;
    let href = browser.attribute("a.button", "href").await.unwrap();
    assert_eq!(href, format!("https://shop.example/paid?session_id={id}"));
}

#[tokio::test]
async fn a_cancelled_prompt_shows_the_reason_and_send_again_pushes_once_more() {
    let Some(browser) = Browser::start(true).await else { return };
    let app = app().await;
    let (url, _) = session_url(&app).await;
    browser.goto(&url).await;
    browser.type_into("#phone", "+254712345678").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your phone", 10).await;

    let prompt = latest_prompt(&app, 1).await;
    assert!(app.sim.sim().resolve(&prompt, Answer::Fail("1032".into())));
    browser.wait_for_text("did not go through", 10).await;
    let reason = daraja::ResultCode::from_wire("1032").customer_message_en();
    assert!(browser.page_text().await.contains(reason));
    browser.screenshot("checkout-failed").await;

    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your phone", 10).await;
    latest_prompt(&app, 2).await;
    assert_eq!(app.sim.sim().transactions().len(), 2, "one new prompt");
}

#[tokio::test]
async fn a_mistyped_phone_is_flagged_before_anything_is_sent() {
    let Some(browser) = Browser::start(true).await else { return };
    let app = app().await;
    let (url, _) = session_url(&app).await;
    browser.goto(&url).await;
    browser.type_into("#phone", "0812 345 678").await;
    browser.wait_for_text("10 digits starting with 07 or 01", 5).await;
    assert_eq!(browser.attribute("#phone", "aria-invalid").await.as_deref(), Some("true"));
    browser.click("button[type=submit]").await;
    assert!(browser.current_url().await.ends_with(&url[url.rfind('/').unwrap()..]), "still on the form");
    assert!(app.sim.sim().transactions().is_empty());

    browser.goto(&format!("{url}?lang=sw")).await;
    browser.wait_for_text("Nambari ya simu ya M-PESA", 5).await;
}

#[tokio::test]
async fn a_prompt_that_never_came_is_paid_from_the_m_pesa_menu_and_the_page_turns_paid() {
    let Some(browser) = Browser::start(true).await else { return };
    let app = app().await;
    let (url, _) = session_url(&app).await;
    browser.goto(&url).await;
    browser.type_into("#phone", "0712345678").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your phone", 10).await;
    // The Paybill way is there while the prompt is open, under "No prompt on your phone?".
    browser.click("details summary").await;
    browser.wait_for_text("Pay from the M-PESA menu instead", 5).await;
    let account =
        browser.page_text().await.split("Account number").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert_eq!(account.len(), 7, "{account}");

    let prompt = latest_prompt(&app, 1).await;
    assert!(app.sim.sim().resolve(&prompt, Answer::Fail("1037".into())));
    browser.wait_for_text("did not go through", 10).await;
    browser.wait_for_text("Pay from the M-PESA menu instead", 5).await;
    browser.screenshot("checkout-paybill").await;

    // The customer pays by hand; nobody reloads the page.
    let payment = daraja_sim::ManualPayment {
        shortcode: app.sim.shortcode(),
        account: account.to_lowercase(),
        amount: 45,
        phone: "0712345678".into(),
        pin: None,
        faults: None,
    };
    app.sim.sim().c2b_pay(payment).await.unwrap();
    browser.wait_for_text("Payment received", 10).await;
}

#[tokio::test]
async fn without_javascript_the_waiting_page_refreshes_itself_to_the_result() {
    let Some(browser) = Browser::start(false).await else { return };
    let app = app().await;
    let (url, _) = session_url(&app).await;
    browser.goto(&url).await;
    browser.type_into("#phone", "0712345678").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your phone", 10).await;
    assert!(browser.page_text().await.contains("refreshes itself"), "the no-JS note is shown");

    let prompt = latest_prompt(&app, 1).await;
    assert!(app.sim.sim().resolve(&prompt, Answer::Approve));
    browser.wait_for_text("Payment received", 15).await;
}

#[tokio::test]
async fn staff_sign_in_find_a_payment_by_the_phone_as_typed_and_resolve_its_review() {
    let Some(browser) = Browser::start(true).await else { return };
    let app = spawn_app_with(SimConfig::default(), |s| s.business_name = "Lipa Cinema".into()).await;
    let now = app.gateway.now();
    lipa_gateway::admin::auth::create_user(
        app.gateway.store(),
        "amina",
        "correct horse battery",
        lipa_gateway::store::admin::Role::Admin,
        now,
    )
    .await
    .unwrap();
    for (phone, amount) in [("0722000111", 250), ("0733000222", 1200)] {
        let p = app.create(phone, amount).await;
        app.settled(p["id"].as_str().unwrap()).await;
    }
    let paid = app.create("0712345678", 45).await;
    let id = paid["id"].as_str().unwrap().to_owned();
    app.settled(&id).await;
    // A forged second callback with another amount flags the payment for review.
    let checkout = paid["checkout_request_id"].as_str().unwrap();
    let url = app.sim.sim().transaction(checkout).unwrap().callback_url;
    let forged = json!({"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":checkout,"ResultCode":0,"ResultDesc":"ok",
        "CallbackMetadata":{"Item":[{"Name":"Amount","Value":4500},{"Name":"MpesaReceiptNumber","Value":"UZZZZZZZZZ"},{"Name":"TransactionDate","Value":20261130120000_u64},{"Name":"PhoneNumber","Value":254712345678_u64}]}}}});
    app.http.post(&url).json(&forged).send().await.unwrap();
    lipa_gateway::admin::rollups::fill(&app.gateway).await.unwrap();

    browser.goto(&format!("{}/admin", app.base)).await;
    browser.wait_for_text("Lipa admin", 10).await;
    browser.type_into("#name", "amina").await;
    browser.type_into("#password", "correct horse battery").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Needs review", 10).await;
    browser.screenshot("admin-overview").await;

    browser.click("nav a[href='/admin/payments']").await;
    browser.wait_for_text("Export CSV", 10).await;
    browser.type_into("input[name=q]", "0712 345 678").await;
    browser.click(".filters button[type=submit]").await;
    // The unfiltered list shows that phone too: wait for the filtered page itself.
    browser.wait_for_url("q=", 10).await;
    browser.wait_for_text("0712 345 678", 10).await;
    let listed = browser.page_text().await;
    assert!(!listed.contains("0722 000 111"), "only the searched phone: {listed}");
    browser.screenshot("admin-payments").await;

    // On a phone the table scrolls sideways inside its box, and says so.
    assert!(browser.displayed(".scroll-hint").await, "the hint is shown at 390 px");
    let scrolls = browser
        .execute("var s = document.querySelector('.scroll'); s.scrollLeft = 10000; return [s.scrollWidth > s.clientWidth, s.scrollLeft > 0];")
        .await;
    assert_eq!(scrolls, json!([true, true]), "the columns past the screen are reached by scrolling");

    // Search ignores case: the receipt as someone might type it.
    let receipt = app.payment(&id).await["receipt"].as_str().unwrap().to_lowercase();
    browser.type_into("input[name=q]", &receipt).await;
    browser.click(".filters button[type=submit]").await;
    browser.wait_for_url(&format!("q={receipt}"), 10).await;
    browser.wait_for_text("0712 345 678", 10).await;
    assert!(!browser.page_text().await.contains("0722 000 111"));

    browser.click("tbody a").await;
    browser.wait_for_text("Callbacks received (2)", 10).await;
    let detail = browser.page_text().await;
    assert!(detail.contains("applied") && detail.contains("mismatch"), "{detail}");
    browser.screenshot("admin-detail").await;
    browser.type_into("#note", "Forged amount; the payment stays KES 45.").await;
    browser.click("form[action$='/resolve'] button").await;
    browser.wait_for_text("Review resolved.", 10).await;
    assert_eq!(app.payment(&id).await["needs_review"], false);
}

#[tokio::test]
async fn the_merchants_own_name_heads_the_swahili_page_and_the_countdown_is_the_prompts_lifetime() {
    let Some(browser) = Browser::start(true).await else { return };
    let app = app().await;
    let key = lipa_gateway::keys::authenticate(app.gateway.store(), &app.key).await.unwrap().unwrap();
    app.gateway.store().set_display_name(&key.id, Some("Nairobi Cinemas")).await.unwrap();
    let (url, _) = session_url(&app).await;
    browser.goto(&format!("{url}?lang=sw")).await;
    browser.wait_for_text("Malipo kwa Nairobi Cinemas", 5).await;
    assert!(!browser.page_text().await.contains("Lipa Cinema"), "one name throughout");
    browser.type_into("#phone", "0712 345 678").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Angalia simu yako", 10).await;
    let left: u64 = browser.text_of(".countdown").await.trim().parse().unwrap();
    assert!((45..=60).contains(&left), "counts down from the prompt's 60 s, shows {left}");
    assert!(browser.page_text().await.contains("Nairobi Cinemas"));
}
