//! The client against a local stand-in for Daraja: tokens, push, query, errors, transport.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{CONSUMER_SECRET, MockDaraja, PASSKEY, TestClock, sandbox_merchant};
use daraja::{
    AccountReference, Amount, ApiErrorKind, CallbackUrl, CheckoutRequestId, Environment, Error, Msisdn, QueryOutcome,
    ResultCode, StkPush, TransactionDesc,
};
use time::macros::datetime;

const ACCEPTED: &str = r#"{"MerchantRequestID":"29115-34620561-1","CheckoutRequestID":"ws_CO_191220191020363925","ResponseCode":"0","ResponseDescription":"Success. Request accepted for processing","CustomerMessage":"Success. Request accepted for processing"}"#;

fn push() -> StkPush {
    StkPush {
        phone: Msisdn::parse("0712 345 678").unwrap(),
        amount: Amount::new(45).unwrap(),
        account_reference: AccountReference::parse("TICKET-42").unwrap(),
        description: TransactionDesc::parse("Movie ticket").unwrap(),
        callback_url: CallbackUrl::parse("http://127.0.0.1:9/callbacks/stk/tok123").unwrap(),
    }
}

#[tokio::test]
async fn a_hundred_concurrent_calls_on_a_cold_cache_fetch_one_token() {
    let mock = MockDaraja::start().await;
    mock.state.oauth_delay_ms.store(100, Ordering::SeqCst);
    let client = mock.client();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.access_token().await.unwrap().expose().to_owned() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "token-1");
    }
    assert_eq!(mock.oauth_calls(), 1);
}

#[tokio::test]
async fn token_is_refreshed_a_margin_before_expiry_with_expires_in_as_string_or_number() {
    for expires_in in [r#""3599""#, "3599"] {
        let mock = MockDaraja::start().await;
        *mock.state.oauth_body.lock().unwrap() = Some(format!(r#"{{"access_token":"tok","expires_in":{expires_in}}}"#));
        let clock = TestClock::at(datetime!(2025-06-01 12:00:00 UTC));
        let client = mock.client_with(|b| b.clock(clock.clone()).token_refresh_margin(Duration::from_secs(300)));
        client.access_token().await.unwrap();
        clock.advance(3599 - 300 - 1);
        client.access_token().await.unwrap();
        assert_eq!(mock.oauth_calls(), 1, "still fresh one second before the margin ({expires_in})");
        clock.advance(1);
        client.access_token().await.unwrap();
        assert_eq!(mock.oauth_calls(), 2, "refreshed at the margin ({expires_in})");
    }
}

#[tokio::test]
async fn push_sends_exactly_the_eleven_fields_with_nairobi_timestamp_and_matching_password() {
    let mock = MockDaraja::start().await;
    mock.answer(200, ACCEPTED);
    // 21:59:59 UTC is 00:59:59 the next day in Nairobi.
    let clock = TestClock::at(datetime!(2025-12-31 21:59:59 UTC));
    let client = mock.client_with(|b| b.clock(clock.clone()));
    let accepted = client.stk_push(&sandbox_merchant(), &push()).await.unwrap();
    assert_eq!(accepted.checkout_request_id.as_str(), "ws_CO_191220191020363925");
    assert_eq!(accepted.merchant_request_id.as_str(), "29115-34620561-1");
    assert_eq!(accepted.response_code, "0");

    let calls = mock.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.path, "/mpesa/stkpush/v1/processrequest");
    assert_eq!(call.authorization, "Bearer token-1");
    assert_eq!(call.content_type, "application/json");
    let body = call.body.as_object().unwrap();
    let mut keys: Vec<_> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "AccountReference",
            "Amount",
            "BusinessShortCode",
            "CallBackURL",
            "PartyA",
            "PartyB",
            "Password",
            "PhoneNumber",
            "Timestamp",
            "TransactionDesc",
            "TransactionType"
        ]
    );
    assert_eq!(body["Timestamp"], "20260101005959");
    let expected = daraja::password(
        daraja::ShortCode::parse("174379").unwrap(),
        &daraja::Secret::new(PASSKEY),
        daraja::Timestamp::parse("Timestamp", "20260101005959").unwrap(),
    );
    assert_eq!(body["Password"], expected.expose());
    assert_eq!(body["BusinessShortCode"], 174379);
    assert_eq!(body["TransactionType"], "CustomerPayBillOnline");
    assert_eq!(body["PartyA"], 254712345678u64);
    assert_eq!(body["PartyB"], 174379);
    assert_eq!(body["PhoneNumber"], 254712345678u64);
    assert_eq!(body["Amount"], 45);
    assert_eq!(body["AccountReference"], "TICKET-42");
    assert_eq!(body["TransactionDesc"], "Movie ticket");
}

#[tokio::test]
async fn till_push_uses_buy_goods_with_the_till_as_party_b() {
    let mock = MockDaraja::start().await;
    mock.answer(200, ACCEPTED);
    let merchant = daraja::Merchant::till(
        daraja::ShortCode::parse("5123456").unwrap(),
        daraja::TillNumber::parse("654321").unwrap(),
        daraja::Secret::new("till-passkey"),
    );
    mock.client().stk_push(&merchant, &push()).await.unwrap();
    let body = &mock.calls()[0].body;
    assert_eq!(body["TransactionType"], "CustomerBuyGoodsOnline");
    assert_eq!(body["BusinessShortCode"], 5123456);
    assert_eq!(body["PartyB"], 654321);
}

#[tokio::test]
async fn invalid_token_is_refreshed_once_and_the_call_retried_once() {
    let mock = MockDaraja::start().await;
    mock.state.rejected_tokens.lock().unwrap().push("token-1".into());
    mock.answer(200, ACCEPTED);
    let accepted = mock.client().stk_push(&sandbox_merchant(), &push()).await.unwrap();
    assert_eq!(accepted.checkout_request_id.as_str(), "ws_CO_191220191020363925");
    assert_eq!(mock.oauth_calls(), 2);
    let auths: Vec<_> = mock.calls().into_iter().map(|c| c.authorization).collect();
    assert_eq!(auths, ["Bearer token-1", "Bearer token-2"]);
}

#[tokio::test]
async fn a_token_rejected_twice_fails_without_looping() {
    let mock = MockDaraja::start().await;
    mock.state.rejected_tokens.lock().unwrap().extend(["token-1".into(), "token-2".into(), "token-3".into()]);
    let err = mock.client().stk_push(&sandbox_merchant(), &push()).await.unwrap_err();
    assert_eq!(err.api_kind(), Some(&ApiErrorKind::InvalidToken));
    assert_eq!(mock.calls().len(), 2);
    assert_eq!(mock.oauth_calls(), 2);
}

#[tokio::test]
async fn concurrent_rejections_of_one_token_cause_one_refresh() {
    let mock = MockDaraja::start().await;
    mock.state.rejected_tokens.lock().unwrap().push("token-1".into());
    mock.default_answer(200, ACCEPTED);
    let client = mock.client();
    client.access_token().await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.stk_push(&sandbox_merchant(), &push()).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(mock.oauth_calls(), 2);
}

#[tokio::test]
async fn every_documented_push_error_envelope_maps_to_its_kind() {
    use ApiErrorKind as K;
    let cases = [
        (400, "400.002.02", "Bad Request - Invalid BusinessShortCode", K::InvalidField("BusinessShortCode".into())),
        (400, "400.002.02", "Bad Request - Invalid Timestamp", K::InvalidField("Timestamp".into())),
        (400, "400.002.02", "Bad Request - Invalid Amount", K::InvalidField("Amount".into())),
        (400, "400.002.02", "Bad Request - Invalid PhoneNumber", K::InvalidField("PhoneNumber".into())),
        (400, "400.002.02", "Bad Request - Invalid CallBackURL", K::InvalidField("CallBackURL".into())),
        (400, "400.002.02", "Bad Request - Invalid PartyB", K::InvalidField("PartyB".into())),
        (404, "404.001.01", "Resource not found", K::ResourceNotFound),
        (405, "405.001", "GET Method Not Allowed", K::MethodNotAllowed),
        (500, "500.001.1001", "Merchant does not exist", K::MerchantUnknown),
        (500, "500.001.1001", "Wrong credentials", K::WrongCredentials),
        (
            500,
            "500.001.1001",
            "Unable to lock subscriber, a transaction is already in process for the current subscriber",
            K::SubscriberLocked,
        ),
        (500, "500.003.02", "System is busy. Please try again in few minutes.", K::SystemBusy),
        (500, "500.003.02", "Error Occurred: Spike Arrest Violation", K::SpikeArrest),
        (500, "500.003.03", "Quota Violation", K::QuotaExceeded),
        (500, "500.003.1001", "Internal Server Error", K::Internal),
    ];
    let mock = MockDaraja::start().await;
    let client = mock.client();
    for (status, code, message, kind) in cases {
        mock.envelope(status, code, message);
        let err = client.stk_push(&sandbox_merchant(), &push()).await.unwrap_err();
        let Error::Api(api) = &err else { panic!("{code} {message}: {err:?}") };
        assert_eq!(api.kind, kind, "{code} {message}");
        assert_eq!(api.status, status);
        assert_eq!(api.code, code);
        assert_eq!(api.message, message);
        assert_eq!(api.request_id, "1234-5678-1");
    }
}

#[tokio::test]
async fn oauth_error_envelopes_are_reported_with_their_kind() {
    let mock = MockDaraja::start().await;
    mock.state.oauth_status.store(400, Ordering::SeqCst);
    for (code, message, kind) in [
        ("400.008.01", "Invalid Authentication passed", ApiErrorKind::InvalidAuthentication),
        ("400.008.02", "Invalid grant type passed", ApiErrorKind::InvalidGrantType),
    ] {
        *mock.state.oauth_body.lock().unwrap() = Some(common::envelope_json(code, message));
        let err = mock.client().access_token().await.unwrap_err();
        assert_eq!(err.api_kind(), Some(&kind), "{err:?}");
        assert!(!err.is_retryable());
        assert!(!format!("{err} {err:?}").contains(CONSUMER_SECRET));
    }
}

#[tokio::test]
async fn query_pending_and_final_with_string_or_number_result_code() {
    let mock = MockDaraja::start().await;
    let client = mock.client();
    let id = CheckoutRequestId::parse("ws_CO_191220191020363925").unwrap();

    mock.envelope(500, "500.001.1001", "The transaction is being processed");
    assert_eq!(client.stk_query(&sandbox_merchant(), &id).await.unwrap(), QueryOutcome::Pending);

    for code in [r#""1032""#, "1032"] {
        mock.answer(
            200,
            format!(
                r#"{{"ResponseCode":"0","ResponseDescription":"The service request has been accepted successsfully","MerchantRequestID":"m","CheckoutRequestID":"ws_CO_191220191020363925","ResultCode":{code},"ResultDesc":"Request cancelled by user"}}"#
            ),
        );
        let QueryOutcome::Completed(result) = client.stk_query(&sandbox_merchant(), &id).await.unwrap() else {
            panic!("expected a final answer")
        };
        assert_eq!(result.result_code, ResultCode::Cancelled);
        assert_eq!(result.result_desc, "Request cancelled by user");
        assert!(result.is_about("ws_CO_191220191020363925", Some("m")));
    }

    // The ids Daraja echoed come back as they were, so the caller can see an answer about
    // another transaction (or about none) for what it is.
    mock.answer(
        200,
        r#"{"ResponseCode":"0","MerchantRequestID":"m2","CheckoutRequestID":"ws_CO_OTHER","ResultCode":"0","ResultDesc":"ok"}"#,
    );
    let QueryOutcome::Completed(other) = client.stk_query(&sandbox_merchant(), &id).await.unwrap() else {
        panic!("expected a final answer")
    };
    assert_eq!((other.checkout_request_id.as_str(), other.merchant_request_id.as_str()), ("ws_CO_OTHER", "m2"));
    assert!(!other.is_about(id.as_str(), None));
    mock.answer(200, r#"{"ResponseCode":"0","ResultCode":"0","ResultDesc":"ok"}"#);
    let QueryOutcome::Completed(nameless) = client.stk_query(&sandbox_merchant(), &id).await.unwrap() else {
        panic!("expected a final answer")
    };
    assert!(!nameless.is_about(id.as_str(), None), "an answer naming no transaction is about none");

    mock.envelope(500, "500.001.1001", "Wrong credentials");
    let err = client.stk_query(&sandbox_merchant(), &id).await.unwrap_err();
    assert_eq!(err.api_kind(), Some(&ApiErrorKind::WrongCredentials));

    mock.envelope(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID");
    let err = client.stk_query(&sandbox_merchant(), &id).await.unwrap_err();
    assert_eq!(err.api_kind(), Some(&ApiErrorKind::UnknownCheckoutRequest));

    let calls = mock.calls();
    let body = calls[0].body.as_object().unwrap();
    let mut keys: Vec<_> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["BusinessShortCode", "CheckoutRequestID", "Password", "Timestamp"]);
    assert_eq!(calls[0].path, "/mpesa/stkpushquery/v1/query");
}

#[tokio::test]
async fn a_timeout_after_sending_says_the_request_may_have_reached_safaricom() {
    let mock = MockDaraja::start().await;
    let client = mock.client_with(|b| b.request_timeout(Duration::from_millis(300)));
    client.access_token().await.unwrap();
    mock.state.api_delay_ms.store(3_000, Ordering::SeqCst);
    let err = client.stk_push(&sandbox_merchant(), &push()).await.unwrap_err();
    let Error::Transport { may_have_reached_safaricom, timed_out, .. } = &err else { panic!("{err:?}") };
    assert!(timed_out);
    assert!(may_have_reached_safaricom);
    assert!(!err.is_retryable(), "a push that may be on the phone must not be sent again");

    // The same timeout on a query is safe to repeat.
    let id = CheckoutRequestId::parse("ws_CO_1").unwrap();
    let err = client.stk_query(&sandbox_merchant(), &id).await.unwrap_err();
    assert!(matches!(err, Error::Transport { timed_out: true, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_refused_connection_says_the_request_did_not_reach_safaricom() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = daraja::Client::builder(
        Environment::Custom(url::Url::parse(&url).unwrap()),
        daraja::Credentials::new("k", "s").unwrap(),
    )
    .build()
    .unwrap();
    let err = client.stk_push(&sandbox_merchant(), &push()).await.unwrap_err();
    // The token request is the first to fail; nothing reached Safaricom.
    let Error::Transport { operation, may_have_reached_safaricom, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*operation, "oauth");
    assert!(!may_have_reached_safaricom);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn http_callback_urls_are_refused_for_sandbox_and_production_before_sending() {
    for env in [Environment::Sandbox, Environment::Production] {
        let client = daraja::Client::builder(env, daraja::Credentials::new("k", "s").unwrap()).build().unwrap();
        let err = client.stk_push(&sandbox_merchant(), &push()).await.unwrap_err();
        let Error::InvalidInput(field) = &err else { panic!("{err:?}") };
        assert_eq!(field.field, "CallBackURL");
        assert!(field.reason.contains("https"));
    }
}

#[tokio::test]
async fn an_unexpected_body_is_a_decode_error_with_a_truncated_excerpt() {
    let mock = MockDaraja::start().await;
    mock.answer(502, format!("<html>{}</html>", "x".repeat(5_000)));
    let err = mock.client().stk_push(&sandbox_merchant(), &push()).await.unwrap_err();
    let Error::Decode { status, body, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*status, 502);
    assert!(body.len() < 600, "{}", body.len());
    assert!(!err.is_retryable(), "an unreadable answer to a push may hide an accepted push");
}

#[tokio::test]
async fn debug_output_of_client_and_config_hides_secrets() {
    let mock = MockDaraja::start().await;
    let client = mock.client();
    client.access_token().await.unwrap();
    let merchant = sandbox_merchant();
    let text =
        format!("{client:?} {merchant:?} {:?}", daraja::Credentials::new("consumer-key", CONSUMER_SECRET).unwrap());
    assert!(!text.contains(CONSUMER_SECRET), "{text}");
    assert!(!text.contains(PASSKEY), "{text}");
    assert!(!text.contains("consumer-key"), "{text}");
    assert!(!text.contains("token-1"), "{text}");
}

#[tokio::test]
async fn a_failed_token_refresh_is_not_repeated_by_every_waiting_caller() {
    let mock = MockDaraja::start().await;
    mock.state.oauth_status.store(503, Ordering::SeqCst);
    mock.state.oauth_delay_ms.store(100, Ordering::SeqCst);
    *mock.state.oauth_body.lock().unwrap() = Some("<html>maintenance</html>".into());
    let client = mock.client();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.access_token().await.is_err() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(mock.oauth_calls(), 1, "the waiters share the one failure");
    // A later call tries again.
    mock.state.oauth_status.store(0, Ordering::SeqCst);
    *mock.state.oauth_body.lock().unwrap() = None;
    mock.state.oauth_delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(client.access_token().await.unwrap().expose(), "token-2");
}

#[tokio::test]
async fn an_unreadable_oauth_answer_never_puts_the_token_in_the_error() {
    let mock = MockDaraja::start().await;
    *mock.state.oauth_body.lock().unwrap() = Some(r#"{"access_token":"SECRETTOKEN123","expires_in":"soon"}"#.into());
    let err = mock.client().access_token().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("SECRETTOKEN123"), "{text}");
    assert!(text.contains("expires_in"), "{text}");
}
