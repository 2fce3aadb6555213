use proptest::prelude::*;
use time::macros::datetime;

use super::*;

/// A confirmation as Daraja's portal shows it.
const CONFIRMATION: &str = r#"{
    "TransactionType": "Pay Bill",
    "TransID": "RKTQDM7W6S",
    "TransTime": "20191122063845",
    "TransAmount": "10.00",
    "BusinessShortCode": "600638",
    "BillRefNumber": "invoice008",
    "InvoiceNumber": "",
    "OrgAccountBalance": "49197.00",
    "ThirdPartyTransID": "",
    "MSISDN": "25470****149",
    "FirstName": "John",
    "MiddleName": "",
    "LastName": "Doe"
}"#;

fn with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(CONFIRMATION).unwrap();
    v[field] = serde_json::from_str(value).unwrap();
    v.to_string()
}

fn invalid_field(body: &str) -> &'static str {
    match parse(body.as_bytes()) {
        Err(CallbackError::InvalidField { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn a_portal_confirmation_reads_in_full() {
    let p = parse(CONFIRMATION.as_bytes()).unwrap();
    assert_eq!(p.transaction_type, TransactionType::PayBill);
    assert_eq!(p.trans_id.as_str(), "RKTQDM7W6S");
    assert_eq!(p.trans_time, datetime!(2019-11-22 06:38:45 +3));
    assert_eq!(p.amount, 10);
    assert_eq!(p.business_short_code.get(), 600_638);
    assert_eq!(p.bill_ref_number, "invoice008");
    assert_eq!(p.org_account_balance, "49197.00");
    assert_eq!(p.payer, Payer::Masked("25470****149".into()));
    assert_eq!(p.payer_name(), "John Doe");
}

#[test]
fn the_three_msisdn_forms_and_an_empty_one_are_accepted() {
    let phone = Msisdn::parse("254708374149").unwrap();
    let plain = parse(with("MSISDN", "\"254708374149\"").as_bytes()).unwrap().payer;
    assert_eq!(plain, Payer::Plain(phone));
    let as_number = parse(with("MSISDN", "254708374149").as_bytes()).unwrap().payer;
    assert_eq!(as_number, Payer::Plain(phone));
    let spaced = parse(with("MSISDN", "\"2547 ***** 126\"").as_bytes()).unwrap().payer;
    assert_eq!(spaced, Payer::Masked("2547 ***** 126".into()));
    let hashed = format!("\"{}\"", hash(phone).to_ascii_uppercase());
    let hashed = parse(with("MSISDN", &hashed).as_bytes()).unwrap().payer;
    assert!(hashed.is(phone), "the hash of the number is that number");
    assert!(!hashed.is(Msisdn::parse("254708374148").unwrap()));
    assert_eq!(parse(with("MSISDN", "\"\"").as_bytes()).unwrap().payer, Payer::Unknown);
    assert_eq!(parse(with("MSISDN", "null").as_bytes()).unwrap().payer, Payer::Unknown);
    assert!(!Payer::Masked("25470****149".into()).is(phone), "a masked number matches no phone");
}

#[test]
fn the_hash_is_sha256_of_the_twelve_digits() {
    // echo -n 254708374149 | sha256sum
    let phone = Msisdn::parse("0708374149").unwrap();
    assert_eq!(hash(phone), "bbff37cea44ac0b2d964ee0dfb8d2df8513dc7ba1b36129a929fc3fbd6dd4af4");
}

#[test]
fn amounts_are_whole_shillings_as_text_or_numbers() {
    for (wire, amount) in [("\"5.00\"", 5), ("\"5\"", 5), ("5", 5), ("5.0", 5), ("\" 1500.00 \"", 1500)] {
        assert_eq!(parse(with("TransAmount", wire).as_bytes()).unwrap().amount, amount, "{wire}");
    }
    for bad in ["\"5.50\"", "\"0.00\"", "\"-5\"", "\"\"", "\"five\"", "null", "5.5"] {
        assert_eq!(invalid_field(&with("TransAmount", bad)), "TransAmount", "{bad}");
    }
}

#[test]
fn empty_and_missing_optional_fields_are_empty() {
    let mut v: serde_json::Value = serde_json::from_str(CONFIRMATION).unwrap();
    for field in ["TransactionType", "BillRefNumber", "InvoiceNumber", "OrgAccountBalance", "FirstName", "LastName"] {
        v.as_object_mut().unwrap().remove(field);
    }
    v["MiddleName"] = serde_json::Value::Null;
    let p = parse(v.to_string().as_bytes()).unwrap();
    assert_eq!((p.bill_ref_number.as_str(), p.payer_name().as_str()), ("", ""));
    assert_eq!(p.transaction_type, TransactionType::Other(String::new()));
}

#[test]
fn transaction_types_in_every_spelling() {
    for (wire, kind) in [
        ("Pay Bill", TransactionType::PayBill),
        ("CustomerPayBillOnline", TransactionType::PayBill),
        ("Buy Goods", TransactionType::BuyGoods),
        ("CustomerBuyGoodsOnline", TransactionType::BuyGoods),
        ("Something New", TransactionType::Other("Something New".into())),
    ] {
        assert_eq!(parse(with("TransactionType", &format!("\"{wire}\"")).as_bytes()).unwrap().transaction_type, kind);
    }
}

#[test]
fn required_fields_that_are_wrong_name_the_field() {
    assert_eq!(invalid_field(&with("TransID", "\"RKT QDM\"")), "TransID");
    assert_eq!(invalid_field(&with("TransTime", "\"20191322063845\"")), "TransTime");
    assert_eq!(invalid_field(&with("BusinessShortCode", "\"12\"")), "BusinessShortCode");
    assert_eq!(invalid_field(&with("MSISDN", "\"0812 abc\"")), "MSISDN");
    assert_eq!(invalid_field(&with("BillRefNumber", &format!("\"{}\"", "x".repeat(101)))), "BillRefNumber");
    assert_eq!(invalid_field(&with("FirstName", "\"a\\u0000b\"")), "FirstName");
    let mut v: serde_json::Value = serde_json::from_str(CONFIRMATION).unwrap();
    v.as_object_mut().unwrap().remove("TransID");
    match parse(v.to_string().as_bytes()) {
        Err(e @ CallbackError::Malformed(_)) => assert!(e.to_string().contains("TransID"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&vec![b' '; MAX_CALLBACK_BYTES + 1]), Err(CallbackError::TooLarge { .. })));
    assert!(matches!(parse(&with("TransAmount", "[1]").into_bytes()), Err(CallbackError::Malformed(_))));
}

#[test]
fn validation_answers_are_daraja_bodies_and_read_back() {
    assert_eq!(Validation::Accept.to_json(), r#"{"ResultCode":"0","ResultDesc":"Accepted"}"#);
    for code in RejectCode::ALL {
        let json = Validation::Reject(code).to_json();
        assert!(json.contains(code.code()));
        assert_eq!(Validation::parse_answer(json.as_bytes()), Some(Validation::Reject(code)));
    }
    assert_eq!(Validation::parse_answer(br#"{"ResultCode":0,"ResultDesc":"ok"}"#), Some(Validation::Accept));
    assert_eq!(Validation::parse_answer(br#"{"ResultCode":"1"}"#), None);
    assert_eq!(Validation::parse_answer(b"<html>"), None);
    assert_eq!(RejectCode::from_code(" c2b00012 "), Some(RejectCode::InvalidAccountNumber));
}

#[test]
fn pulled_pages_read_nested_and_flat_lists_and_keep_odd_entries_apart() {
    let body = br#"{"ResponseRefID":"r","ResponseCode":"1000","ResponseMessage":"Success","Response":[[
        {"transactionId":"OHR0ABC123","trxDate":"2020-08-05T10:13:00Z","msisdn":254722000000,"sender":"UTILITY",
         "transactiontype":"c2b-pay-bill-debit","billreference":"AB7K","amount":"100.00","organizationname":"Shop"},
        {"transactionId":"OHR0ABC124","trxDate":"2020-08-05 9:13:00","msisdn":"","transactiontype":"c2b-buy-goods-debit",
         "billreference":"","amount":"50"},
        {"transactionId":"OHR0ABC125","trxDate":"yesterday","msisdn":"254722000000","amount":"5"}
    ]]}"#;
    let page = pull::parse_page(body).unwrap();
    assert_eq!(page.len(), 3);
    assert_eq!(page.transactions[0].time, datetime!(2020-08-05 10:13:00 UTC));
    assert_eq!(page.transactions[0].bill_reference, "AB7K");
    assert_eq!(page.transactions[0].transaction_type, TransactionType::PayBill);
    assert_eq!(page.transactions[1].time, datetime!(2020-08-05 09:13:00 +3));
    assert_eq!(page.transactions[1].transaction_type, TransactionType::BuyGoods);
    assert_eq!(page.unreadable, vec!["OHR0ABC125: trxDate is not a date".to_owned()]);
    let flat = br#"{"Response":[{"transactionId":"OHR0ABC123","trxDate":"20200805101300","msisdn":"","amount":"1"}]}"#;
    assert_eq!(pull::parse_page(flat).unwrap().transactions.len(), 1);
    assert!(pull::parse_page(br#"{"ResponseCode":"1001","Response":[]}"#).unwrap().is_empty());
    assert_eq!(pull::wire_date(datetime!(2020-08-04 05:36:00 UTC)), "2020-08-04 08:36:00");
}

fn payment_json(p: &(u32, u64, String, String, u32, i64)) -> String {
    let (code, amount, account, phone_digits, trans, secs) = p;
    let time = Timestamp::at(time::OffsetDateTime::from_unix_timestamp(*secs).unwrap()).to_wire();
    serde_json::json!({
        "TransactionType": "Pay Bill", "TransID": format!("T{trans:09}"), "TransTime": time,
        "TransAmount": format!("{amount}.00"), "BusinessShortCode": code.to_string(),
        "BillRefNumber": account, "MSISDN": format!("2547{phone_digits}"), "FirstName": "A"
    })
    .to_string()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
        let _ = Validation::parse_answer(&body);
        let _ = pull::parse_page(&body);
    }

    #[test]
    fn arbitrary_json_values_in_any_field_never_panic(field in "[A-Za-z]{1,20}", value in "[\\[\\]{}\"a-z0-9.,: -]{0,30}") {
        let mut v: serde_json::Value = serde_json::from_str(CONFIRMATION).unwrap();
        v[field] = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
        let _ = parse(v.to_string().as_bytes());
    }

    #[test]
    fn well_formed_payments_read_back_what_was_sent(
        p in (10_000u32..9_999_999, 1u64..1_000_000, "[A-Za-z0-9 ]{0,20}", "[0-9]{8}", any::<u32>(), 0i64..4_000_000_000)
    ) {
        let read = parse(payment_json(&p).as_bytes()).unwrap();
        prop_assert_eq!(read.business_short_code.get(), p.0);
        prop_assert_eq!(read.amount, p.1);
        prop_assert_eq!(read.bill_ref_number, p.2.trim());
        let phone = Msisdn::parse(&format!("2547{}", p.3)).unwrap();
        prop_assert!(read.payer.is(phone), "payer {:?}", read.payer);
        prop_assert_eq!(read.trans_time.unix_timestamp(), p.5);
    }

    #[test]
    fn masked_forms_never_read_as_a_phone(visible in "[0-9]{3,6}", stars in 1usize..6) {
        let masked = format!("{}{}{}", &visible[..2], "*".repeat(stars), &visible[2..]);
        prop_assert_eq!(Payer::parse(&masked), Some(Payer::Masked(masked.clone())));
    }
}
