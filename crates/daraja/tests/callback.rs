//! The callback parser on recorded shapes of real callbacks, and on hostile bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use daraja::callback::{self, CallbackError, MAX_CALLBACK_BYTES};
use daraja::{Msisdn, ResultCode};
use proptest::prelude::*;
use time::macros::datetime;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn success_with_a_valueless_balance() {
    let cb = callback::parse(&fixture("success_balance_valueless.json")).unwrap();
    assert_eq!(cb.checkout_request_id.as_str(), "ws_CO_191220191020363925");
    assert_eq!(cb.merchant_request_id.as_str(), "29115-34620561-1");
    assert_eq!(cb.result_code, ResultCode::Success);
    let paid = cb.payment.unwrap();
    assert_eq!(paid.amount, 1);
    assert_eq!(paid.receipt.as_str(), "NLJ7RT61SV");
    assert_eq!(paid.phone, Msisdn::parse("254708374149").unwrap());
    // 10:21:15 in Nairobi is 07:21:15 UTC.
    assert_eq!(paid.transaction_date, datetime!(2019-12-19 07:21:15 UTC));
    assert_eq!(paid.transaction_date.offset(), daraja::NAIROBI);
}

#[test]
fn success_without_balance() {
    let paid = callback::parse(&fixture("success_no_balance.json")).unwrap().payment.unwrap();
    assert_eq!(paid.amount, 45);
    assert_eq!(paid.receipt.as_str(), "UKL1A2B3C4");
}

#[test]
fn success_with_a_string_balance() {
    let paid = callback::parse(&fixture("success_balance_string.json")).unwrap().payment.unwrap();
    assert_eq!(paid.amount, 100);
    assert_eq!(paid.phone.as_u64(), 254112345678);
}

#[test]
fn success_with_a_decimal_amount() {
    let paid = callback::parse(&fixture("success_decimal_amount.json")).unwrap().payment.unwrap();
    assert_eq!(paid.amount, 10_500);
}

#[test]
fn unknown_items_and_fields_are_ignored_and_items_found_by_name() {
    let cb = callback::parse(&fixture("success_extra_items.json")).unwrap();
    assert_eq!(cb.result_code, ResultCode::Success);
    let paid = cb.payment.unwrap();
    assert_eq!(paid.amount, 250);
    assert_eq!(paid.receipt.as_str(), "TA1B2C3D4G");
}

#[test]
fn failure_without_metadata() {
    let cb = callback::parse(&fixture("failure_cancelled.json")).unwrap();
    assert_eq!(cb.result_code, ResultCode::Cancelled);
    assert_eq!(cb.result_desc, "Request cancelled by user");
    assert!(cb.payment.is_none());
}

#[test]
fn string_result_code_sfc_ic0003() {
    let cb = callback::parse(&fixture("failure_operator.json")).unwrap();
    assert_eq!(cb.result_code, ResultCode::OperatorDoesNotExist);
    assert_eq!(cb.result_code.cause(), daraja::Cause::MerchantConfig);
    assert!(cb.payment.is_none());
}

#[test]
fn unknown_numeric_codes_are_kept_verbatim() {
    let body = br#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"c","ResultCode":4242,"ResultDesc":"new"}}}"#;
    assert_eq!(callback::parse(body).unwrap().result_code, ResultCode::Other("4242".into()));
}

fn malformed(body: &[u8]) -> String {
    match callback::parse(body) {
        Err(CallbackError::Malformed(why)) => why,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn invalid(body: &str) -> (&'static str, String) {
    match callback::parse(body.as_bytes()) {
        Err(CallbackError::InvalidField { field, reason }) => (field, reason),
        other => panic!("expected InvalidField, got {other:?}"),
    }
}

#[test]
fn truncated_and_invalid_json_are_errors() {
    let full = fixture("success_no_balance.json");
    for cut in [0, 1, 10, full.len() / 2, full.len() - 2] {
        malformed(&full[..cut]);
    }
    malformed(b"not json");
    malformed(&[0xff, 0xfe, 0x00]);
    malformed(b"[]");
    malformed(br#"{"Body":{}}"#);
    assert!(
        malformed(br#"{"Body":{"stkCallback":{"MerchantRequestID":"m","ResultCode":0}}}"#)
            .contains("CheckoutRequestID")
    );
}

#[test]
fn wrong_types_are_errors() {
    malformed(br#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"c","ResultCode":{"a":1}}}}"#);
    malformed(br#"{"Body":{"stkCallback":{"MerchantRequestID":7,"CheckoutRequestID":"c","ResultCode":0}}}"#);
    malformed(br#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"c","ResultCode":1.5}}}"#);
    let template = |amount: &str, receipt: &str, date: &str, phone: &str| {
        format!(
            r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m","CheckoutRequestID":"c","ResultCode":0,"ResultDesc":"ok","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":{amount}}},{{"Name":"MpesaReceiptNumber","Value":{receipt}}},{{"Name":"TransactionDate","Value":{date}}},{{"Name":"PhoneNumber","Value":{phone}}}]}}}}}}}}"#
        )
    };
    let ok = template("10", r#""UAB1C2D3E4""#, "20250101120000", "254712345678");
    assert!(callback::parse(ok.as_bytes()).is_ok());
    assert_eq!(invalid(&template("10.5", r#""UAB1C2D3E4""#, "20250101120000", "254712345678")).0, "Amount");
    assert_eq!(invalid(&template("0", r#""UAB1C2D3E4""#, "20250101120000", "254712345678")).0, "Amount");
    assert_eq!(invalid(&template("-5", r#""UAB1C2D3E4""#, "20250101120000", "254712345678")).0, "Amount");
    assert_eq!(invalid(&template(r#""ten""#, r#""UAB1C2D3E4""#, "20250101120000", "254712345678")).0, "Amount");
    assert_eq!(invalid(&template("10", "12345", "20250101120000", "254712345678")).0, "MpesaReceiptNumber");
    assert_eq!(invalid(&template("10", r#""UAB 1""#, "20250101120000", "254712345678")).0, "MpesaReceiptNumber");
    assert_eq!(invalid(&template("10", r#""UAB1C2D3E4""#, "20251301120000", "254712345678")).0, "TransactionDate");
    assert_eq!(invalid(&template("10", r#""UAB1C2D3E4""#, "2025", "254712345678")).0, "TransactionDate");
    assert_eq!(invalid(&template("10", r#""UAB1C2D3E4""#, "20250101120000", "255712345678")).0, "PhoneNumber");
    assert_eq!(invalid(&template("10", r#""UAB1C2D3E4""#, "20250101120000", "null")).0, "PhoneNumber");
}

#[test]
fn success_without_metadata_is_an_error() {
    let (field, reason) = invalid(
        r#"{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"c","ResultCode":0,"ResultDesc":"ok"}}}"#,
    );
    assert_eq!(field, "CallbackMetadata");
    assert!(reason.contains("missing"));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let valid = String::from_utf8(fixture("success_no_balance.json")).unwrap();
    // Deep nesting where a value is read (the ResultCode) is refused as the wrong type.
    let deep_code =
        valid.replace(r#""ResultCode":0"#, &format!(r#""ResultCode":{}0{}"#, "[".repeat(5_000), "]".repeat(5_000)));
    assert!(malformed(deep_code.as_bytes()).contains("invalid type"));
    // Deep nesting in what is skipped (an unknown field, an odd Balance) is skipped without
    // recursion: the payment still parses.
    let deep = format!("{}0{}", "[".repeat(20_000), "]".repeat(20_000));
    let skipped_field = valid.replacen(r#""ResultCode":0"#, &format!(r#""Extra":{deep},"ResultCode":0"#), 1);
    assert_eq!(callback::parse(skipped_field.as_bytes()).unwrap().payment.unwrap().amount, 45);
    let deep_balance =
        valid.replacen(r#"{"Name":"Amount""#, &format!(r#"{{"Name":"Balance","Value":{deep}}},{{"Name":"Amount""#), 1);
    assert_eq!(callback::parse(deep_balance.as_bytes()).unwrap().payment.unwrap().amount, 45);
}

#[test]
fn bodies_over_the_limit_are_refused_unparsed() {
    let mut body = fixture("success_no_balance.json");
    body.resize(1024 * 1024, b' ');
    assert_eq!(callback::parse(&body), Err(CallbackError::TooLarge { len: 1024 * 1024 }));
    let at_limit = vec![b' '; MAX_CALLBACK_BYTES];
    assert!(matches!(callback::parse(&at_limit), Err(CallbackError::Malformed(_))));
}

#[test]
fn error_messages_say_what_is_wrong() {
    let err = callback::parse(b"{").unwrap_err();
    assert!(err.to_string().starts_with("callback body is not an STK callback"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = callback::parse(&body);
    }

    #[test]
    fn mutated_real_callbacks_never_panic(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let mut body = fixture("success_balance_valueless.json");
        let len = body.len();
        body[pos % len] = byte;
        body.truncate(len - (cut % len));
        let _ = callback::parse(&body);
    }

    #[test]
    fn any_amount_value_shape_is_handled(value in prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        "\\PC{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]) {
        let body = format!(
            r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m","CheckoutRequestID":"c","ResultCode":0,"ResultDesc":"ok","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":{value}}},{{"Name":"MpesaReceiptNumber","Value":"UAB1C2D3E4"}},{{"Name":"TransactionDate","Value":20250101120000}},{{"Name":"PhoneNumber","Value":254712345678}}]}}}}}}}}"#
        );
        if let Ok(cb) = callback::parse(body.as_bytes()) {
            prop_assert!(cb.payment.unwrap().amount > 0);
        }
    }
}
