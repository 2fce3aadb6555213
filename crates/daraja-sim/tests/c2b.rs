//! C2B against the simulator with the `daraja` client: Register URL, payments by hand, external
//! validation and its default action, confirmation faults, Pull Transactions, STK echoes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use common::{client, eventually, merchant, push, sim};
use daraja::c2b::{
    self, DefaultAction, Payer, PullQuery, PullRegister, RegisterUrls, RegisterVersion, TransactionType,
};
use daraja::{ApiErrorKind, CallbackUrl, Msisdn, ShortCode};
use daraja_sim::{C2bStatus, Faults, ManualPayment, MerchantAccount, RegisterPaths, SimConfig, SimHandle};
use tokio::sync::mpsc;

const TILL: u32 = 654_321;
const STORE: u32 = 5_123_456;

/// The business's validation and confirmation URLs: records bodies; validation answers with
/// `answer` after `delay`.
struct Business {
    base: String,
    validations: mpsc::UnboundedReceiver<Vec<u8>>,
    confirmations: mpsc::UnboundedReceiver<Vec<u8>>,
    answer: Arc<Mutex<(String, Duration)>>,
}

#[derive(Clone)]
struct BusinessState {
    validations: mpsc::UnboundedSender<Vec<u8>>,
    confirmations: mpsc::UnboundedSender<Vec<u8>>,
    answer: Arc<Mutex<(String, Duration)>>,
}

impl Business {
    async fn start() -> Self {
        let (vtx, validations) = mpsc::unbounded_channel();
        let (ctx, confirmations) = mpsc::unbounded_channel();
        let answer = Arc::new(Mutex::new((c2b::Validation::Accept.to_json(), Duration::ZERO)));
        let state = BusinessState { validations: vtx, confirmations: ctx, answer: answer.clone() };
        let app = axum::Router::new()
            .route(
                "/c2b/validate",
                axum::routing::post(|State(s): State<BusinessState>, body: Bytes| async move {
                    s.validations.send(body.to_vec()).ok();
                    let (answer, delay) = s.answer.lock().unwrap().clone();
                    tokio::time::sleep(delay).await;
                    answer
                }),
            )
            .route(
                "/c2b/confirm",
                axum::routing::post(|State(s): State<BusinessState>, body: Bytes| async move {
                    s.confirmations.send(body.to_vec()).ok();
                    c2b::CONFIRMATION_ACK
                }),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, validations, confirmations, answer }
    }

    fn validate_with(&self, answer: &str, delay: Duration) {
        *self.answer.lock().unwrap() = (answer.to_owned(), delay);
    }

    fn urls(&self, short_code: u32, response_type: DefaultAction) -> RegisterUrls {
        RegisterUrls {
            short_code: ShortCode::parse(&short_code.to_string()).unwrap(),
            response_type,
            confirmation_url: CallbackUrl::parse(&format!("{}/c2b/confirm", self.base)).unwrap(),
            validation_url: CallbackUrl::parse(&format!("{}/c2b/validate", self.base)).unwrap(),
            version: RegisterVersion::V1,
        }
    }

    async fn next_confirmation(&mut self) -> c2b::C2bPayment {
        let body =
            tokio::time::timeout(Duration::from_secs(5), self.confirmations.recv()).await.expect("no confirmation");
        c2b::parse(&body.unwrap()).unwrap()
    }
}

fn config(external_validation: bool) -> SimConfig {
    let mut config = SimConfig { validation_timeout: Duration::from_millis(300), ..SimConfig::default() };
    config.merchants[0].external_validation = external_validation;
    config.merchants.push(MerchantAccount {
        shortcode: STORE,
        passkey: "store-passkey".into(),
        name: "Cinema Till".into(),
        tills: vec![TILL],
        ..Default::default()
    });
    config
}

fn pay(sim: &SimHandle, account: &str, amount: u64, phone: &str) -> ManualPayment {
    ManualPayment {
        shortcode: sim.shortcode(),
        account: account.into(),
        amount,
        phone: phone.into(),
        pin: None,
        faults: None,
    }
}

#[tokio::test]
async fn a_paybill_payment_by_hand_is_confirmed_to_the_registered_url() {
    let sim = sim(config(false)).await;
    let mut business = Business::start().await;
    client(&sim).c2b_register_urls(&business.urls(sim.shortcode(), DefaultAction::Completed)).await.unwrap();
    let before = sim.sim().phone(254_712_345_678).balance;

    let txn = sim.sim().c2b_pay(pay(&sim, " AB7K 2Q ", 150, "0712 345 678")).await.unwrap();
    assert_eq!(txn.status, C2bStatus::Completed);
    let confirmed = business.next_confirmation().await;
    assert_eq!(confirmed.trans_id.as_str(), txn.trans_id);
    assert_eq!((confirmed.amount, confirmed.bill_ref_number.as_str()), (150, "AB7K 2Q"));
    assert_eq!(confirmed.transaction_type, TransactionType::PayBill);
    assert_eq!(confirmed.business_short_code.get(), sim.shortcode());
    assert!(matches!(confirmed.payer, Payer::Hashed(_)), "production hides the number");
    assert!(confirmed.payer.is(Msisdn::parse("0712345678").unwrap()));
    assert_eq!(confirmed.org_account_balance, "150.00");
    assert_eq!(sim.sim().phone(254_712_345_678).balance, before - 150);
    assert!(business.validations.try_recv().is_err(), "no validation without external validation");
    let acknowledged =
        || sim.sim().callback_attempts().iter().any(|a| a.kind == "c2b_confirmation" && a.acknowledged());
    eventually("the confirmation's attempt is recorded as acknowledged", acknowledged).await;
}

#[tokio::test]
async fn a_till_payment_has_no_account_number() {
    let sim = sim(config(false)).await;
    let mut business = Business::start().await;
    client(&sim).c2b_register_urls(&business.urls(STORE, DefaultAction::Completed)).await.unwrap();
    let txn = sim.sim().c2b_pay(ManualPayment { shortcode: TILL, ..pay(&sim, "", 80, "0712345678") }).await.unwrap();
    let confirmed = business.next_confirmation().await;
    assert_eq!((confirmed.transaction_type, confirmed.bill_ref_number.as_str()), (TransactionType::BuyGoods, ""));
    assert_eq!((confirmed.business_short_code.get(), txn.paid_to), (STORE, TILL));
    let refused = sim.sim().c2b_pay(ManualPayment { shortcode: TILL, ..pay(&sim, "X1", 80, "0712345678") }).await;
    assert!(refused.unwrap_err().contains("takes no account number"));
}

#[tokio::test]
async fn a_rejecting_validation_stops_the_money_and_no_confirmation_follows() {
    let sim = sim(config(true)).await;
    let mut business = Business::start().await;
    client(&sim).c2b_register_urls(&business.urls(sim.shortcode(), DefaultAction::Completed)).await.unwrap();
    business.validate_with(&c2b::Validation::Reject(c2b::RejectCode::InvalidAccountNumber).to_json(), Duration::ZERO);
    let before = sim.sim().phone(254_712_345_678).balance;

    let txn = sim.sim().c2b_pay(pay(&sim, "NOPE", 100, "0712345678")).await.unwrap();
    assert_eq!((txn.status, txn.result_code.as_deref()), (C2bStatus::Rejected, Some("C2B00012")));
    let asked = c2b::parse(&business.validations.recv().await.unwrap()).unwrap();
    assert_eq!((asked.trans_id.as_str(), asked.org_account_balance.as_str()), (txn.trans_id.as_str(), ""));
    assert_eq!(sim.sim().phone(254_712_345_678).balance, before);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(business.confirmations.try_recv().is_err());

    business
        .validate_with(r#"{"ResultCode":"0","ResultDesc":"Accepted","ThirdPartyTransID":"shop-7"}"#, Duration::ZERO);
    sim.sim().c2b_pay(pay(&sim, "AB7K", 100, "0712345678")).await.unwrap();
    assert_eq!(business.next_confirmation().await.third_party_trans_id, "shop-7");
}

#[tokio::test]
async fn a_validation_url_that_does_not_answer_in_time_gets_the_default_action() {
    for (action, status) in
        [(DefaultAction::Completed, C2bStatus::Completed), (DefaultAction::Cancelled, C2bStatus::Cancelled)]
    {
        let sim = sim(config(true)).await;
        let business = Business::start().await;
        client(&sim).c2b_register_urls(&business.urls(sim.shortcode(), action)).await.unwrap();
        business.validate_with(&c2b::Validation::Reject(c2b::RejectCode::OtherError).to_json(), Duration::from_secs(2));
        let txn = sim.sim().c2b_pay(pay(&sim, "AB7K", 100, "0712345678")).await.unwrap();
        assert_eq!(txn.status, status, "{action:?}");
    }
}

#[tokio::test]
async fn a_dropped_confirmation_is_recovered_by_pulling_page_by_page() {
    let sim = sim(SimConfig { pull_page_size: 2, ..config(false) }).await;
    let business = Business::start().await;
    let client = client(&sim);
    client.c2b_register_urls(&business.urls(sim.shortcode(), DefaultAction::Completed)).await.unwrap();
    let short_code = ShortCode::parse(&sim.shortcode().to_string()).unwrap();
    let nominated = Msisdn::parse("0712345678").unwrap();
    let callback_url = CallbackUrl::parse(&format!("{}/c2b/pull", business.base)).unwrap();
    client
        .pull_register(&PullRegister { short_code, nominated_number: nominated, callback_url: callback_url.clone() })
        .await
        .unwrap();
    client.pull_register(&PullRegister { short_code, nominated_number: nominated, callback_url }).await.unwrap();

    let dropped = Faults { drop: true, ..Faults::default() };
    let mut paid = Vec::new();
    for (i, account) in ["A1", "B2", "C3"].into_iter().enumerate() {
        let payment =
            ManualPayment { faults: Some(dropped.clone()), ..pay(&sim, account, 10 + i as u64, "0712345678") };
        paid.push(sim.sim().c2b_pay(payment).await.unwrap().trans_id);
    }
    let now = time::OffsetDateTime::now_utc();
    let mut query = PullQuery {
        short_code,
        start: now - time::Duration::hours(1),
        end: now + time::Duration::minutes(1),
        offset: 0,
    };
    let mut pulled = Vec::new();
    loop {
        let page = client.pull_transactions(&query).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2 && page.unreadable.is_empty());
        query.offset += u32::try_from(page.len()).unwrap();
        pulled.extend(page.transactions);
    }
    let ids: Vec<_> = pulled.iter().map(|t| t.trans_id.to_string()).collect();
    assert_eq!(ids, paid);
    assert_eq!((pulled[1].amount, pulled[1].bill_reference.as_str()), (11, "B2"));
    assert!(pulled[0].payer.is(nominated));

    let early =
        PullQuery { start: now - time::Duration::hours(3), end: now - time::Duration::hours(2), offset: 0, short_code };
    assert!(client.pull_transactions(&early).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_stk_payment_is_echoed_as_a_c2b_confirmation_where_the_shortcode_says_so() {
    let mut config = config(false);
    config.merchants[0].c2b_echo_stk = true;
    config.merchants[0].msisdn_style = daraja_sim::MsisdnStyle::Plain;
    let sim = sim(config).await;
    let mut business = Business::start().await;
    let mut receiver = common::Receiver::start().await;
    let client = client(&sim);
    client.c2b_register_urls(&business.urls(sim.shortcode(), DefaultAction::Completed)).await.unwrap();
    client.stk_push(&merchant(&sim), &push("0712345678", 45, &receiver.url)).await.unwrap();
    let stk = daraja::callback::parse(&receiver.next_raw().await).unwrap().payment.unwrap();
    let echo = business.next_confirmation().await;
    assert_eq!((echo.trans_id, echo.amount, echo.bill_ref_number.as_str()), (stk.receipt, 45, "TICKET-42"));
    assert_eq!(echo.payer, Payer::Plain(Msisdn::parse("0712345678").unwrap()));
}

#[tokio::test]
async fn simulate_pays_through_the_registered_urls() {
    let sim = sim(config(false)).await;
    let mut business = Business::start().await;
    let client = client(&sim);
    client.c2b_register_urls(&business.urls(sim.shortcode(), DefaultAction::Completed)).await.unwrap();
    let payment = c2b::C2bSimulate {
        short_code: ShortCode::parse(&sim.shortcode().to_string()).unwrap(),
        msisdn: Msisdn::parse("254708374149").unwrap(),
        amount: daraja::Amount::new(5).unwrap(),
        bill_ref_number: Some("INV-8".into()),
    };
    assert!(!client.c2b_simulate(&payment).await.unwrap().originator_conversation_id.is_empty());
    let confirmed = business.next_confirmation().await;
    assert_eq!((confirmed.amount, confirmed.bill_ref_number.as_str()), (5, "INV-8"));
    let till = c2b::C2bSimulate { bill_ref_number: None, ..payment };
    let e = client.c2b_simulate(&till).await.unwrap_err();
    assert!(e.to_string().contains("CommandID"), "a paybill cannot be paid as a till: {e}");
}

#[tokio::test]
async fn registration_follows_the_apps_product_and_production_registers_once() {
    let sim = sim(SimConfig { register_paths: RegisterPaths::V2, register_once: true, ..config(false) }).await;
    let business = Business::start().await;
    let client = client(&sim);
    let v1 = business.urls(sim.shortcode(), DefaultAction::Completed);
    let e = client.c2b_register_urls(&v1).await.unwrap_err();
    assert!(e.to_string().contains("401.003.01"), "{e}");
    let v2 = RegisterUrls { version: RegisterVersion::V2, ..v1 };
    client.c2b_register_urls(&v2).await.unwrap();
    let again = client.c2b_register_urls(&v2).await.unwrap_err();
    assert_eq!(again.api_kind(), Some(&ApiErrorKind::UrlsAlreadyRegistered), "{again}");
    assert_eq!(sim.sim().c2b_registrations().len(), 1);

    let cancelled_lower = serde_json::json!({"ShortCode": "174379", "ResponseType": "completed",
        "ConfirmationURL": format!("{}/c2b/confirm", business.base), "ValidationURL": format!("{}/c2b/validate", business.base)});
    let token = common::token(&sim).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/mpesa/c2b/v2/registerurl", sim.base_url()))
        .bearer_auth(token)
        .json(&cancelled_lower)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().contains("Invalid ResponseType"), "sentence case only");
}

#[tokio::test]
async fn the_control_api_pays_by_hand_and_says_what_is_wrong() {
    let sim = sim(config(false)).await;
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| http.post(format!("{}/sim/c2b/pay", sim.base_url())).json(&body).send();
    let ok =
        post(serde_json::json!({"shortcode": sim.shortcode(), "account": "AB7K", "amount": 20, "phone": "0712345678"}))
            .await
            .unwrap();
    assert_eq!(ok.status(), 200);
    let ok: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(ok["status"], "completed");
    let trans_id = ok["trans_id"].as_str().unwrap().to_owned();
    eventually("recorded", || sim.sim().c2b_transactions().iter().any(|t| t.trans_id == trans_id)).await;
    for (body, says) in [
        (serde_json::json!({"shortcode": 999_999, "account": "A", "amount": 20, "phone": "0712345678"}), "no business"),
        (
            serde_json::json!({"shortcode": sim.shortcode(), "account": " ", "amount": 20, "phone": "0712345678"}),
            "account number",
        ),
        (
            serde_json::json!({"shortcode": sim.shortcode(), "account": "A", "amount": 0, "phone": "0712345678"}),
            "amount",
        ),
        (
            serde_json::json!({"shortcode": sim.shortcode(), "account": "A", "amount": 5, "phone": "12"}),
            "mobile number",
        ),
    ] {
        let answer = post(body).await.unwrap();
        assert_eq!(answer.status(), 400);
        assert!(answer.text().await.unwrap().contains(says), "{says}");
    }
    let broke =
        serde_json::json!({"shortcode": sim.shortcode(), "account": "A", "amount": 200_000, "phone": "0712345678"});
    let broke: serde_json::Value = post(broke).await.unwrap().json().await.unwrap();
    assert_eq!((broke["status"].as_str(), broke["result_code"].as_str()), (Some("failed"), Some("1")));
}

#[tokio::test]
async fn the_virtual_phone_pays_a_bill_from_its_menu() {
    let sim = sim(config(false)).await;
    let mut business = Business::start().await;
    client(&sim).c2b_register_urls(&business.urls(sim.shortcode(), DefaultAction::Completed)).await.unwrap();
    let page = reqwest::get(format!("{}/phone/0712345678", sim.base_url())).await.unwrap().text().await.unwrap();
    assert!(page.contains("Lipa na M-PESA") && page.contains("Buy Goods and Services"), "{page}");

    let http = reqwest::Client::new();
    let shortcode = sim.shortcode().to_string();
    let form = |pin: &'static str| {
        http.post(format!("{}/phone/0712345678/pay", sim.base_url()))
            .form(&[("shortcode", shortcode.as_str()), ("account", "AB7K"), ("amount", "120"), ("pin", pin)])
            .send()
    };
    let wrong = form("9999").await.unwrap().text().await.unwrap();
    assert!(wrong.contains("did not go through: wrong PIN"), "{wrong}");
    let paid = form("1234").await.unwrap().text().await.unwrap();
    let confirmed = business.next_confirmation().await;
    assert!(
        paid.contains(&format!(
            "<b>{}</b> Confirmed. KES 120.00 paid to Lipa Demo Shop for account AB7K.",
            confirmed.trans_id
        )),
        "{paid}"
    );
    assert_eq!(sim.sim().phone(254_712_345_678).balance, 100_000 - 120);

    let typo = http
        .post(format!("{}/phone/0712345678/pay", sim.base_url()))
        .form(&[("shortcode", "12x"), ("amount", "5"), ("pin", "1234")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(typo.contains("in digits"), "{typo}");
}
