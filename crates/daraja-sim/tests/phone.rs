//! The virtual phone page over HTTP: shows the prompt, answers it with a form, escapes input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Receiver, client, merchant, push, sim, token};
use daraja::{ResultCode, callback};
use daraja_sim::SimConfig;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn the_phone_shows_the_prompt_and_a_form_answer_pays() {
    let sim = sim(SimConfig::interactive()).await;
    let mut receiver = Receiver::start().await;
    let accepted = client(&sim).stk_push(&merchant(&sim), &push("0712345678", 45, &receiver.url)).await.unwrap();
    let id = accepted.checkout_request_id.as_str();

    let page = reqwest::get(format!("{}/phone/0712%20345%20678", sim.base_url())).await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Do you want to pay <b>KES 45</b> to <b>Lipa Demo Shop</b>, account no. <b>TICKET-42</b>?"),
        "{page}"
    );
    assert!(page.contains("Enter M-PESA PIN"));
    assert!(page.contains(id));

    let list = reqwest::get(format!("{}/phone", sim.base_url())).await.unwrap().text().await.unwrap();
    assert!(list.contains("/phone/254712345678"), "{list}");

    let state: serde_json::Value =
        reqwest::get(format!("{}/phone/254712345678/state", sim.base_url())).await.unwrap().json().await.unwrap();
    assert_eq!(state["prompt_id"], id);

    let resp = no_redirects()
        .post(format!("{}/phone/254712345678/respond", sim.base_url()))
        .form(&[("checkout_request_id", id), ("action", "send"), ("pin", "1234")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/phone/254712345678");
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::Success);

    let after = reqwest::get(format!("{}/phone/254712345678", sim.base_url())).await.unwrap().text().await.unwrap();
    assert!(after.contains("Confirmed. KES 45.00 sent to Lipa Demo Shop"), "{after}");
    assert!(after.contains("Balance: KES <span id=\"balance\">99955</span>"));
}

#[tokio::test]
async fn the_cancel_button_fails_the_payment_with_1032() {
    let sim = sim(SimConfig::interactive()).await;
    let mut receiver = Receiver::start().await;
    let accepted = client(&sim).stk_push(&merchant(&sim), &push("0712345678", 45, &receiver.url)).await.unwrap();
    no_redirects()
        .post(format!("{}/phone/0712345678/respond", sim.base_url()))
        .form(&[("checkout_request_id", accepted.checkout_request_id.as_str()), ("action", "cancel")])
        .send()
        .await
        .unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::Cancelled);
}

#[tokio::test]
async fn text_from_the_push_is_escaped_on_the_page() {
    let sim = sim(SimConfig::interactive()).await;
    let token = token(&sim).await;
    let ts = "20250101120000";
    let password = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("174379{}{ts}", daraja_sim::SANDBOX_PASSKEY),
    );
    let body = serde_json::json!({
        "BusinessShortCode": 174379, "Password": password, "Timestamp": ts,
        "TransactionType": "CustomerPayBillOnline", "Amount": 1, "PartyA": 254712345678u64,
        "PartyB": 174379, "PhoneNumber": 254712345678u64,
        "CallBackURL": "https://shop.example.com/cb", "AccountReference": "<b>x</b>", "TransactionDesc": "t"
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/mpesa/stkpush/v1/processrequest", sim.base_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let page = reqwest::get(format!("{}/phone/254712345678", sim.base_url())).await.unwrap().text().await.unwrap();
    assert!(page.contains("&lt;b&gt;x&lt;/b&gt;"));
    assert!(!page.contains("<b>x</b>"));
}

#[tokio::test]
async fn a_bad_phone_in_the_url_gets_a_clear_400() {
    let sim = sim(SimConfig::default()).await;
    let resp = reqwest::get(format!("{}/phone/not-a-phone", sim.base_url())).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("is not a Kenyan mobile number"));
}
