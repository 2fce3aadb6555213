//! The `daraja` client against the simulator: push, callback, query, magic numbers, wallets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Receiver, client, eventually, merchant, push, sim};
use daraja::{QueryOutcome, ResultCode, callback};
use daraja_sim::{Answer, DefaultAnswer, MAGIC_NUMBERS, PhoneAction, Scripted, SimConfig, Status};

#[tokio::test]
async fn push_then_callback_then_query_agree() {
    let sim = sim(SimConfig::default()).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    let accepted = client.stk_push(&merchant(&sim), &push("0712 345 678", 45, &receiver.url)).await.unwrap();
    assert!(accepted.checkout_request_id.as_str().starts_with("ws_CO_"));
    assert!(accepted.checkout_request_id.as_str().ends_with("712345678"));

    let cb = callback::parse(&receiver.next_raw().await).unwrap();
    assert_eq!(cb.checkout_request_id, accepted.checkout_request_id);
    assert_eq!(cb.merchant_request_id, accepted.merchant_request_id);
    assert_eq!(cb.result_code, ResultCode::Success);
    let paid = cb.payment.unwrap();
    assert_eq!(paid.amount, 45);
    assert_eq!(paid.phone.as_u64(), 254712345678);
    assert_eq!(paid.receipt.as_str().len(), 10);

    let QueryOutcome::Completed(q) = client.stk_query(&merchant(&sim), &accepted.checkout_request_id).await.unwrap()
    else {
        panic!("query should be final")
    };
    assert_eq!(q.result_code, ResultCode::Success);

    // The raw callback keeps Daraja's quirks: decimal Amount, valueless Balance, numeric code.
    let txn = sim.sim().transaction(accepted.checkout_request_id.as_str()).unwrap();
    let attempt = &sim.sim().callback_attempts_for(&txn.checkout_request_id)[0];
    assert!(attempt.body.contains(r#"{"Name":"Amount","Value":45.00}"#), "{}", attempt.body);
    assert!(attempt.body.contains(r#"{"Name":"Balance"}"#));
    assert!(attempt.body.contains(r#""ResultCode":0,"#));
    assert!(attempt.acknowledged());
    assert_eq!(attempt.response_body, r#"{"ResultCode":0,"ResultDesc":"Accepted"}"#);
}

#[tokio::test]
async fn each_magic_number_yields_its_result_code_in_callback_and_query() {
    let config = SimConfig { late_callback_delay: Duration::from_millis(200), ..SimConfig::default() };
    let sim = sim(config).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    for magic in MAGIC_NUMBERS {
        let accepted =
            client.stk_push(&merchant(&sim), &push(&magic.msisdn.to_string(), 10, &receiver.url)).await.unwrap();
        let id = accepted.checkout_request_id.clone();
        let txn_done = || sim.sim().transaction(id.as_str()).is_some_and(|t| t.status == Status::Completed);
        eventually("transaction ends", txn_done).await;
        let QueryOutcome::Completed(q) = client.stk_query(&merchant(&sim), &id).await.unwrap() else {
            panic!("{}: query should be final", magic.msisdn)
        };
        assert_eq!(q.result_code.as_str(), magic.result_code, "query for {}", magic.msisdn);

        if magic.msisdn == 254700090001 {
            assert!(sim.sim().callback_attempts_for(id.as_str()).is_empty(), "no callback ever");
            continue;
        }
        let cb = callback::parse(&receiver.next_raw().await).unwrap();
        assert_eq!(cb.checkout_request_id, id);
        assert_eq!(cb.result_code.as_str(), magic.result_code, "callback for {}", magic.msisdn);
        assert_eq!(cb.payment.is_some(), magic.result_code == "0");
    }
}

#[tokio::test]
async fn a_late_callback_arrives_after_the_query_already_shows_the_result() {
    let config = SimConfig { late_callback_delay: Duration::from_secs(2), ..SimConfig::default() };
    let sim = sim(config).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    let accepted = client.stk_push(&merchant(&sim), &push("254700090002", 10, &receiver.url)).await.unwrap();
    let id = accepted.checkout_request_id;
    eventually("completed", || sim.sim().transaction(id.as_str()).is_some_and(|t| t.status == Status::Completed)).await;
    assert!(matches!(client.stk_query(&merchant(&sim), &id).await.unwrap(), QueryOutcome::Completed(_)));
    assert!(sim.sim().callback_attempts_for(id.as_str()).is_empty(), "callback not yet sent");
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().checkout_request_id, id);
}

#[tokio::test]
async fn query_says_being_processed_while_the_prompt_is_open() {
    let sim = sim(SimConfig::interactive()).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    let accepted = client.stk_push(&merchant(&sim), &push("0712345678", 45, &receiver.url)).await.unwrap();
    let id = accepted.checkout_request_id;
    assert_eq!(client.stk_query(&merchant(&sim), &id).await.unwrap(), QueryOutcome::Pending);

    assert!(sim.sim().respond(254712345678, id.as_str(), PhoneAction::Cancel));
    let cb = callback::parse(&receiver.next_raw().await).unwrap();
    assert_eq!(cb.result_code, ResultCode::Cancelled);
    let QueryOutcome::Completed(q) = client.stk_query(&merchant(&sim), &id).await.unwrap() else { panic!() };
    assert_eq!(q.result_code, ResultCode::Cancelled);
}

#[tokio::test]
async fn a_second_push_to_a_phone_with_an_open_prompt_is_refused_with_the_subscriber_lock() {
    let sim = sim(SimConfig::interactive()).await;
    let receiver = Receiver::start().await;
    let client = client(&sim);
    let first = client.stk_push(&merchant(&sim), &push("0712345678", 45, &receiver.url)).await.unwrap();
    let err = client.stk_push(&merchant(&sim), &push("0712345678", 45, &receiver.url)).await.unwrap_err();
    assert_eq!(err.api_kind(), Some(&daraja::ApiErrorKind::SubscriberLocked));
    let daraja::Error::Api(api) = &err else { panic!() };
    assert_eq!((api.status, api.code.as_str()), (500, "500.001.1001"));
    // Another phone is not affected; once the first prompt ends the phone is free again.
    client.stk_push(&merchant(&sim), &push("0712345679", 45, &receiver.url)).await.unwrap();
    assert!(sim.sim().resolve(first.checkout_request_id.as_str(), Answer::Fail("1032".into())));
    client.stk_push(&merchant(&sim), &push("0712345678", 45, &receiver.url)).await.unwrap();
}

#[tokio::test]
async fn the_virtual_phone_times_out_with_1037() {
    let config = SimConfig { prompt_lifetime: Duration::from_millis(200), ..SimConfig::interactive() };
    let sim = sim(config).await;
    let mut receiver = Receiver::start().await;
    client(&sim).stk_push(&merchant(&sim), &push("0712345678", 45, &receiver.url)).await.unwrap();
    let cb = callback::parse(&receiver.next_raw().await).unwrap();
    assert_eq!(cb.result_code, ResultCode::Unreachable);
}

#[tokio::test]
async fn wallets_are_debited_and_run_out_with_insufficient_balance() {
    let config = SimConfig { default_balance: 100, ..SimConfig::default() };
    let sim = sim(config).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    client.stk_push(&merchant(&sim), &push("0712345678", 60, &receiver.url)).await.unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::Success);
    assert_eq!(sim.sim().phone(254712345678).balance, 40);
    client.stk_push(&merchant(&sim), &push("0712345678", 60, &receiver.url)).await.unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::InsufficientBalance);
    assert_eq!(sim.sim().phone(254712345678).balance, 40, "a failed payment takes nothing");
}

#[tokio::test]
async fn the_daily_limit_declines_with_code_4() {
    let config = SimConfig { default_balance: 1_000_000, daily_limit: 1_000, ..SimConfig::default() };
    let sim = sim(config).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    client.stk_push(&merchant(&sim), &push("0712345678", 900, &receiver.url)).await.unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::Success);
    client.stk_push(&merchant(&sim), &push("0712345678", 200, &receiver.url)).await.unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::DailyLimit);
    assert_eq!(sim.sim().phone(254712345678).spent_today, 900);
}

#[tokio::test]
async fn wrong_pins_fail_with_2001_and_too_many_lock_with_8006() {
    let sim = sim(SimConfig::interactive()).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    let mut codes = Vec::new();
    for pin in ["0000", "1111", "2222", "1234"] {
        let accepted = client.stk_push(&merchant(&sim), &push("0712345678", 5, &receiver.url)).await.unwrap();
        assert!(sim.sim().respond(
            254712345678,
            accepted.checkout_request_id.as_str(),
            PhoneAction::Send { pin: pin.into() }
        ));
        codes.push(callback::parse(&receiver.next_raw().await).unwrap().result_code);
    }
    assert_eq!(
        codes,
        [ResultCode::WrongPin, ResultCode::WrongPin, ResultCode::CredentialLocked, ResultCode::CredentialLocked]
    );
}

#[tokio::test]
async fn the_right_pin_pays() {
    let sim = sim(SimConfig::interactive()).await;
    let mut receiver = Receiver::start().await;
    let accepted = client(&sim).stk_push(&merchant(&sim), &push("0712345678", 5, &receiver.url)).await.unwrap();
    let id = accepted.checkout_request_id.as_str();
    assert!(!sim.sim().respond(254712345679, id, PhoneAction::Cancel), "another phone cannot answer");
    assert!(sim.sim().respond(254712345678, id, PhoneAction::Send { pin: "1234".into() }));
    assert!(!sim.sim().respond(254712345678, id, PhoneAction::Cancel), "a prompt ends once");
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::Success);
}

#[tokio::test]
async fn scripted_outcomes_come_before_magic_numbers_and_defaults() {
    let sim = sim(SimConfig::default()).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    sim.sim().script(254700000000, Scripted { result: Answer::Fail("1037".into()), after_ms: None, faults: None });
    client.stk_push(&merchant(&sim), &push("254700000000", 5, &receiver.url)).await.unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::Unreachable);
    // The script is used once; the magic number applies again afterwards.
    client.stk_push(&merchant(&sim), &push("254700000000", 5, &receiver.url)).await.unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::Success);
}

#[tokio::test]
async fn till_pushes_need_a_known_till_and_buy_goods() {
    let mut config = SimConfig::default();
    config.merchants.push(daraja_sim::MerchantAccount {
        shortcode: 5123456,
        passkey: "store-passkey".into(),
        name: "Cinema Till".into(),
        tills: vec![654321],
        ..Default::default()
    });
    let sim = sim(config).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    let till = |till: &str| {
        daraja::Merchant::till(
            daraja::ShortCode::parse("5123456").unwrap(),
            daraja::TillNumber::parse(till).unwrap(),
            daraja::Secret::new("store-passkey"),
        )
    };
    client.stk_push(&till("654321"), &push("0712345678", 5, &receiver.url)).await.unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::Success);
    client.stk_push(&till("111111"), &push("0712345678", 5, &receiver.url)).await.unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::OperatorDoesNotExist);
}

#[tokio::test]
async fn auto_answer_can_be_switched_on_for_a_running_simulator() {
    let sim = sim(SimConfig::interactive()).await;
    sim.sim().set_default_answer(DefaultAnswer::Approve);
    let mut receiver = Receiver::start().await;
    client(&sim).stk_push(&merchant(&sim), &push("0712345678", 5, &receiver.url)).await.unwrap();
    assert_eq!(callback::parse(&receiver.next_raw().await).unwrap().result_code, ResultCode::Success);
}

#[tokio::test]
async fn expired_tokens_are_refreshed_by_the_client() {
    let sim = sim(SimConfig::default()).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    client.access_token().await.unwrap();
    sim.sim().expire_tokens();
    client.stk_push(&merchant(&sim), &push("0712345678", 5, &receiver.url)).await.unwrap();
    receiver.next().await;
    let statuses: Vec<u16> = sim.sim().requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 200], "one refused with 404.001.03, then one accepted");
}
