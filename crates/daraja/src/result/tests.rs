use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::reversal::{self, Outcome};
use crate::status::{self, Report};

const REVERSED: &str = r#"{"Result":{"ResultType":0,"ResultCode":0,"ResultDesc":"The service request is processed successfully.","OriginatorConversationID":"f1e2-4b95-a71d-b30d3cdbb7a7942864","ConversationID":"AG_20231025_20106f9e7c6a5c9b2a6d","TransactionID":"SJP3AB12CD","ResultParameters":{"ResultParameter":[{"Key":"DebitAccountBalance","Value":"Utility Account|KES|51661.00|51661.00|0.00|0.00"},{"Key":"Amount","Value":1.00},{"Key":"TransCompletedTime","Value":20231025101112},{"Key":"OriginalTransactionID","Value":"SJP2XY34ZW"},{"Key":"Charge","Value":0.00},{"Key":"CreditPartyPublicName","Value":"254712345678 - Jane Doe"},{"Key":"DebitPartyPublicName","Value":"600992 - Lipa Cinema"}]},"ReferenceData":{"ReferenceItem":{"Key":"QueueTimeoutURL","Value":"https://internalsandbox.safaricom.co.ke/mpesa/reversalresults/v1/submit"}}}}"#;

#[test]
fn a_successful_reversal_reads_with_its_receipts_and_amount() {
    let r = parse(REVERSED.as_bytes()).unwrap();
    assert!(r.is_success());
    assert_eq!(r.result_type, Some(0));
    assert_eq!(r.conversation_id, "AG_20231025_20106f9e7c6a5c9b2a6d");
    assert_eq!(r.parameter("Amount"), Some("1.0"));
    assert_eq!(r.parameter("TransCompletedTime"), Some("20231025101112"));
    assert_eq!(r.reference("QueueTimeoutURL").map(|u| u.starts_with("https://")), Some(true));
    match reversal::outcome(&r) {
        Outcome::Reversed { receipt, original, amount } => {
            assert_eq!(receipt.as_deref(), Some("SJP3AB12CD"));
            assert_eq!(original.as_deref(), Some("SJP2XY34ZW"));
            assert_eq!(amount, Some(1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn codes_come_as_strings_or_numbers_and_are_classified() {
    let body = |code: serde_json::Value| {
        json!({"Result": {"ResultType": 0, "ResultCode": code, "ResultDesc": "x", "OriginatorConversationID": "o", "ConversationID": "c"}})
            .to_string()
    };
    let r = parse(body(json!("R000001")).as_bytes()).unwrap();
    assert_eq!(reversal::outcome(&r), Outcome::AlreadyReversed);
    let r = parse(body(json!(21)).as_bytes()).unwrap();
    assert_eq!(r.kind(), ResultKind::InitiatorLacksRole);
    assert!(r.kind().remedy().unwrap().contains("org portal"));
    assert!(matches!(reversal::outcome(&r), Outcome::Refused { code, .. } if code == "21"));
    let r = parse(body(json!(" R000002 ")).as_bytes()).unwrap();
    assert_eq!(r.kind(), ResultKind::UnknownTransaction);
    assert_eq!(r.transaction_id, None);
    assert!(r.parameters.is_empty());
    let r = parse(body(json!("0")).as_bytes()).unwrap();
    assert!(r.is_success());
    for code in ["2001", "8006", "17"] {
        let r = parse(body(json!(code)).as_bytes()).unwrap();
        assert!(!r.is_success(), "{code}");
    }
}

#[test]
fn malformed_results_say_what_is_wrong() {
    for (body, says) in [
        (&b"not json"[..], "not JSON"),
        (br#"{"result":{}}"#, "no \"Result\""),
        (br#"{"Result":{"ResultDesc":"x"}}"#, "no Result.ResultCode"),
        (br#"{"Result":{"ResultCode":""}}"#, "empty Result.ResultCode"),
        (br#"{"Result":5}"#, "not JSON of that shape"),
    ] {
        let err = parse(body).unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
        assert!(err.contains("not a Daraja result"), "{err}");
    }
    let big = vec![b' '; MAX_CALLBACK_BYTES + 1];
    assert!(matches!(parse(&big), Err(CallbackError::TooLarge { .. })));
    assert!(matches!(parse_timeout(&big), Err(CallbackError::TooLarge { .. })));
}

#[test]
fn a_status_result_gives_the_transaction_details() {
    let body = json!({"Result": {
        "ResultType": 0, "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": "o-1", "ConversationID": "AG_1", "TransactionID": "SJQ0000000",
        "ResultParameters": {"ResultParameter": [
            {"Key": "DebitPartyName", "Value": "254712345678 - Jane Doe"},
            {"Key": "CreditPartyName", "Value": "600992 - Lipa Cinema"},
            {"Key": "OriginatorConversationID", "Value": "o-1"},
            {"Key": "InitiatedTime", "Value": 20231025101010u64},
            {"Key": "DebitAccountType", "Value": "MMF Account For Customer"},
            {"Key": "DebitPartyCharges"},
            {"Key": "TransactionReason"},
            {"Key": "ReasonType", "Value": "Pay Bill Online"},
            {"Key": "TransactionStatus", "Value": "Completed"},
            {"Key": "FinalisedTime", "Value": 20231025101112u64},
            {"Key": "Amount", "Value": 45.0},
            {"Key": "ConversationID", "Value": "AG_0"},
            {"Key": "ReceiptNo", "Value": "SJP2XY34ZW"}
        ]},
        "ReferenceData": {"ReferenceItem": {"Key": "Occasion"}}
    }})
    .to_string();
    let r = parse(body.as_bytes()).unwrap();
    let Report::Found(d) = status::report(&r) else { panic!() };
    assert!(d.is_completed());
    assert_eq!(d.receipt.as_deref(), Some("SJP2XY34ZW"));
    assert_eq!(d.amount, Some(45));
    assert_eq!(d.debit_party.as_deref(), Some("254712345678 - Jane Doe"));
    assert_eq!(d.reason_type.as_deref(), Some("Pay Bill Online"));
    let at = d.finalised_at.unwrap();
    assert_eq!((at.hour(), at.offset().whole_hours()), (10, 3), "Nairobi time");
    assert_eq!(r.reference("Occasion"), Some(""));
    let refused =
        parse(br#"{"Result":{"ResultCode":"R000002","ResultDesc":"The OriginalTransactionID is invalid."}}"#).unwrap();
    assert!(matches!(status::report(&refused), Report::Refused { kind: ResultKind::UnknownTransaction, .. }));
}

#[test]
fn timeouts_are_read_whatever_their_shape() {
    let t = parse_timeout(br#"{"Result":{"OriginatorConversationID":"o-9","ResultDesc":"The request timed out"}}"#)
        .unwrap();
    assert_eq!(t.originator_conversation_id.as_deref(), Some("o-9"));
    assert_eq!(t.description.as_deref(), Some("The request timed out"));
    let t = parse_timeout(br#"{"requestId":"1","errorCode":"500.003.1001","errorMessage":"Queue timeout"}"#).unwrap();
    assert_eq!(t.description.as_deref(), Some("Queue timeout"));
    assert_eq!(parse_timeout(b"  ").unwrap(), QueueTimeout::default());
    assert!(parse_timeout(b"<html>").is_err());
}

#[test]
fn long_and_control_text_is_cut_and_flattened() {
    let desc = format!("a\nb{}", "x".repeat(2000));
    let body = json!({"Result": {"ResultCode": 1, "ResultDesc": desc}}).to_string();
    let r = parse(body.as_bytes()).unwrap();
    assert!(r.result_desc.starts_with("a b"));
    assert_eq!(r.result_desc.chars().count(), MAX_TEXT + 1);
    let many: Vec<_> = (0..500).map(|i| json!({"Key": format!("k{i}"), "Value": i})).collect();
    let body = json!({"Result": {"ResultCode": 0, "ResultParameters": {"ResultParameter": many}}}).to_string();
    assert_eq!(parse(body.as_bytes()).unwrap().parameters.len(), MAX_ITEMS);
}

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("Key".to_owned()),
                    Just("Value".to_owned()),
                    Just("ResultParameter".to_owned()),
                    "[A-Za-z]{1,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_bytes_are_a_result_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
        let _ = parse_timeout(&bytes);
    }

    #[test]
    fn any_value_in_any_field_never_panics(
        field in prop_oneof![Just("ResultCode"), Just("ResultType"), Just("TransactionID"), Just("ResultParameters"), Just("ReferenceData"), Just("ResultDesc")],
        value in any_json(),
    ) {
        let mut body = json!({"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "ok", "OriginatorConversationID": "o", "ConversationID": "c"}});
        body["Result"][field] = value;
        if let Ok(r) = parse(body.to_string().as_bytes()) {
            let _ = reversal::outcome(&r);
            let _ = status::report(&r);
        }
    }

    #[test]
    fn well_formed_results_read_back(
        code in prop_oneof![Just("0".to_owned()), Just("R000001".to_owned()), "[0-9]{1,4}"],
        numeric in any::<bool>(),
        items in proptest::collection::vec(("[A-Za-z]{1,12}", "[A-Za-z0-9 |.]{0,20}"), 0..6),
        single in any::<bool>(),
    ) {
        let code_value = if numeric && code.parse::<u32>().is_ok() { json!(code.parse::<u32>().unwrap()) } else { json!(code) };
        let list: Vec<_> = items.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
        let params = if single && list.len() == 1 { list[0].clone() } else { json!(list) };
        let body = json!({"Result": {"ResultCode": code_value, "ResultParameters": {"ResultParameter": params}}});
        let r = parse(body.to_string().as_bytes()).unwrap();
        let expected_code = if numeric && code.parse::<u32>().is_ok() { code.parse::<u32>().unwrap().to_string() } else { code.clone() };
        prop_assert_eq!(&r.result_code, &expected_code);
        let expected: Vec<_> = items.iter().map(|(k, v)| (k.clone(), v.trim().to_owned())).collect();
        prop_assert_eq!(r.parameters, expected);
    }
}
