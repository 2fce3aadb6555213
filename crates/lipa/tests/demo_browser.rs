//! `lipa demo` end to end in headless Chromium, as a person uses it: book seats in the shop,
//! send the prompt from Lipa's checkout, approve (or cancel) it on the virtual phone, and see
//! the tickets paid (or failed, seats released, then retried and paid).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../gateway/tests/common/webdriver.rs"]
mod webdriver;

use webdriver::Browser;

async fn book_and_send_prompt(browser: &Browser, shop: &str, seats: &str) -> String {
    browser.goto(shop).await;
    browser.wait_for_text("Now showing", 10).await;
    browser.screenshot("shop-programme").await;
    browser.click("a.button").await;
    browser.wait_for_text("Your name", 10).await;
    browser.type_into("#name", "Wanjiku").await;
    browser.type_into("#phone", "0712 345 678").await;
    browser.click(&format!("#quantity option[value='{seats}']")).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Send the M-PESA prompt", 10).await;
    let checkout = browser.current_url().await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your phone", 10).await;
    checkout
}

async fn answer_on_phone(browser: &Browser, phone_url: &str, send: bool) {
    browser.goto(&format!("{phone_url}/0712345678")).await;
    browser.wait_for_text("Enter M-PESA PIN", 10).await;
    browser.screenshot("phone-prompt").await;
    // The answer is a form post: let its page load before the test navigates elsewhere, or the
    // post's redirect can land after (and instead of) the next page. (The old page's own
    // polling can show "No M-PESA request right now" before that.)
    if send {
        browser.type_into("#pin", "1234").await;
        browser.click_and_wait_for_next_page("button.send", 10).await;
    } else {
        browser.click_and_wait_for_next_page("button.cancel", 10).await;
    }
    browser.wait_for_text("No M-PESA request right now", 10).await;
}

#[tokio::test]
async fn book_pay_on_the_virtual_phone_and_see_the_tickets_then_fail_and_retry() {
    let Some(browser) = Browser::start(true).await else { return };
    let demo = common::Demo::start(false);
    let (shop, phone) = (demo.value("Cinema shop"), demo.value("Virtual phone"));

    // Paid: 3 seats, approved with the PIN on the virtual phone.
    let checkout = book_and_send_prompt(&browser, &shop, "3").await;
    assert!(browser.page_text().await.contains("KES 1,350"));
    answer_on_phone(&browser, &phone, true).await;
    browser.goto(&checkout).await;
    browser.wait_for_text("Payment received", 15).await;
    browser.click("a.button").await;
    browser.wait_for_text("Your tickets", 15).await;
    let ticket = browser.page_text().await;
    assert!(ticket.contains("Paid") && ticket.contains("M-PESA receipt"), "{ticket}");
    assert!(!ticket.contains("on its way"), "the receipt number is shown: {ticket}");
    browser.screenshot("shop-ticket-paid").await;
    let receipt = ticket
        .split_whitespace()
        .find(|w| {
            w.len() == 10 && w.starts_with('U') && w.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
        .unwrap_or_else(|| panic!("no receipt number on the ticket: {ticket}"))
        .to_owned();
    browser.goto(&shop).await;
    assert!(browser.page_text().await.contains("37 seats left"));

    // The admin dashboard shows the payment, signed in with the password the demo printed.
    let admin = demo.value("Admin");
    let banner = demo.printed.iter().find(|l| l.trim().starts_with("Admin")).unwrap();
    let password = banner.split("password ").nth(1).unwrap().trim_end_matches(')').trim().to_owned();
    browser.goto(&admin).await;
    browser.type_into("#name", "admin").await;
    browser.type_into("#password", &password).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Overview", 10).await;
    browser.goto(&format!("{admin}/payments")).await;
    browser.wait_for_text(&receipt, 10).await;
    for (page, text) in [
        ("review", "Review queue"),
        ("c2b", "Payments by hand"),
        ("webhooks", "Webhook deliveries"),
        ("keys", "API keys"),
        ("settings", "Settings"),
    ] {
        browser.goto(&format!("{admin}/{page}")).await;
        browser.wait_for_text(text, 10).await;
        browser.screenshot(&format!("admin-{page}")).await;
    }

    // Cancelled: the checkout says why, "Back to shop" shows the failed booking, the seats
    // come back, and "Try again" pays.
    let cancelled = book_and_send_prompt(&browser, &shop, "2").await;
    answer_on_phone(&browser, &phone, false).await;
    browser.goto(&cancelled).await;
    browser.wait_for_text("did not go through", 15).await;
    browser.click("a.secondary").await;
    browser.wait_for_text("Payment failed", 15).await;
    assert!(browser.page_text().await.contains("seats were released"));
    browser.screenshot("shop-ticket-failed").await;
    let ticket_page = browser.current_url().await;
    browser.goto(&shop).await;
    assert!(browser.page_text().await.contains("37 seats left"), "the 2 seats are back on sale");
    browser.goto(&ticket_page).await;
    browser.wait_for_text("Try again", 10).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Send the M-PESA prompt", 10).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your phone", 10).await;
    let second_checkout = browser.current_url().await;
    answer_on_phone(&browser, &phone, true).await;
    browser.goto(&second_checkout).await;
    browser.wait_for_text("Payment received", 15).await;
    browser.click("a.button").await;
    browser.wait_for_text("Your tickets", 15).await;
    browser.goto(&shop).await;
    assert!(browser.page_text().await.contains("35 seats left"));
}

#[tokio::test]
async fn customers_get_short_sentences_and_the_virtual_phone_keeps_what_is_typed() {
    let Some(browser) = Browser::start(true).await else { return };
    let demo = common::Demo::start(false);
    let (shop, phone) = (demo.value("Cinema shop"), demo.value("Virtual phone"));

    // A phone that is not a mobile number: one sentence a customer understands, nothing
    // about prefixes or what a developer would need.
    browser.goto(&shop).await;
    browser.wait_for_text("Now showing", 10).await;
    browser.click("a.button").await;
    browser.wait_for_text("Your name", 10).await;
    browser.type_into("#name", "Wanjiku").await;
    browser.type_into("#phone", "0812 345 678").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Enter your M-PESA number, like 0712", 10).await;
    let text = browser.page_text().await;
    assert!(!text.contains("not a mobile number") && !text.contains("expected"), "{text}");
    browser.screenshot("shop-booking-error").await;

    // The list of phones refreshes itself without wiping what is being typed.
    browser.goto(&phone).await;
    browser.wait_for_text("Virtual phones", 10).await;
    browser.type_into("#m", "0712 345").await;
    let body =
        serde_json::json!({"amount": 50, "phone": "0712345678", "account_reference": "LIST", "description": "list"});
    let created = reqwest::Client::new()
        .post(format!("{}/v1/payments", demo.value("Gateway API")))
        .bearer_auth(demo.value("API key"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    browser.wait_for_text("0712345678: KES 50", 10).await;
    assert_eq!(browser.execute("return document.getElementById('m').value;").await, "0712 345");
    browser.screenshot("phone-list").await;
    // White on the Open button's green: at least 4.5:1 (WCAG AA for text).
    let ratio = browser
        .execute(
            "var rgb = getComputedStyle(document.querySelector('button.send')).backgroundColor.match(/\\d+/g).map(Number);\
             var l = rgb.map(function (c) { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); });\
             return 1.05 / (0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2] + 0.05);",
        )
        .await;
    assert!(ratio.as_f64().unwrap() >= 4.5, "contrast {ratio}");
}
