//! Reversal and Transaction Status against the simulator with the `daraja` client: the
//! credential decrypted with the simulator's key, money moved back once, result codes, the
//! misspelled identifier field, and the result faults (queue timeout, duplicates).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Receiver, client, eventually, merchant, push, sim, token};
use daraja::result::{self, ResultKind};
use daraja::reversal::{self, IdentifierType, Outcome, Remarks, Reversal};
use daraja::status::{self, Report, StatusQuery, Target};
use daraja::{Amount, CallbackUrl, Certificate, Initiator, ReceiptNumber, Secret, ShortCode};
use daraja_sim::{CERTIFICATE_PEM, Faults, InitiatorAccount, ManualPayment, ResultFaults, SimConfig, SimHandle};

const APPROVES: &str = "254700000000";

fn initiator(name: &str, password: &str) -> Initiator {
    let cert = Certificate::parse(CERTIFICATE_PEM.as_bytes()).unwrap();
    Initiator::new(name, cert.encrypt(&Secret::new(password)).unwrap()).unwrap()
}

struct Urls {
    results: Receiver,
    timeouts: Receiver,
}

impl Urls {
    async fn start() -> Self {
        Self { results: Receiver::start().await, timeouts: Receiver::start().await }
    }
}

fn reversal_of(sim: &SimHandle, urls: &Urls, receipt: &str, amount: u64, who: Initiator) -> Reversal {
    Reversal {
        initiator: who,
        transaction_id: ReceiptNumber::parse(receipt).unwrap(),
        amount: Amount::new(amount).unwrap(),
        receiver_party: ShortCode::parse(&sim.shortcode().to_string()).unwrap(),
        receiver_identifier_type: IdentifierType::default(),
        result_url: CallbackUrl::parse(&urls.results.url).unwrap(),
        queue_timeout_url: CallbackUrl::parse(&urls.timeouts.url).unwrap(),
        remarks: Remarks::parse("Screening cancelled").unwrap(),
        occasion: None,
    }
}

fn status_of(sim: &SimHandle, urls: &Urls, target: Target) -> StatusQuery {
    StatusQuery {
        initiator: initiator("testapi", "Safaricom999!*!"),
        target,
        party_a: ShortCode::parse(&sim.shortcode().to_string()).unwrap(),
        result_url: CallbackUrl::parse(&urls.results.url).unwrap(),
        queue_timeout_url: CallbackUrl::parse(&urls.timeouts.url).unwrap(),
        remarks: Remarks::parse("Receipt check").unwrap(),
        occasion: None,
    }
}

/// Pays `amount` from the always-approving number; returns the receipt.
async fn paid(sim: &SimHandle, amount: u64) -> String {
    let mut callbacks = Receiver::start().await;
    client(sim).stk_push(&merchant(sim), &push(APPROVES, amount, &callbacks.url)).await.unwrap();
    let body = callbacks.next_raw().await;
    daraja::callback::parse(&body).unwrap().payment.unwrap().receipt.to_string()
}

#[tokio::test]
async fn a_reversal_moves_the_money_back_once() {
    let sim = sim(SimConfig::default()).await;
    let mut urls = Urls::start().await;
    let receipt = paid(&sim, 45).await;
    let before = sim.sim().phone(254_700_000_000).balance;

    let who = initiator("testapi", "Safaricom999!*!");
    let accepted = client(&sim).reversal(&reversal_of(&sim, &urls, &receipt, 45, who.clone())).await.unwrap();
    assert!(accepted.conversation_id.starts_with("AG_"), "{accepted:?}");
    let r = result::parse(&urls.results.next_raw().await).unwrap();
    assert_eq!(r.originator_conversation_id, accepted.originator_conversation_id);
    match reversal::outcome(&r) {
        Outcome::Reversed { receipt: own, original, amount } => {
            assert_eq!(original.as_deref(), Some(receipt.as_str()));
            assert_eq!(amount, Some(45));
            assert!(own.is_some_and(|o| o.as_str() != receipt));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.sim().phone(254_700_000_000).balance, before + 45);

    client(&sim).reversal(&reversal_of(&sim, &urls, &receipt, 45, who.clone())).await.unwrap();
    let again = result::parse(&urls.results.next_raw().await).unwrap();
    assert_eq!(reversal::outcome(&again), Outcome::AlreadyReversed);
    assert_eq!(sim.sim().phone(254_700_000_000).balance, before + 45, "no second refund");

    client(&sim).reversal(&reversal_of(&sim, &urls, "SXX0000000", 45, who)).await.unwrap();
    let unknown = result::parse(&urls.results.next_raw().await).unwrap();
    assert_eq!(unknown.kind(), ResultKind::UnknownTransaction);
    assert_eq!(sim.sim().initiator_requests().len(), 3);
}

#[tokio::test]
async fn credentials_roles_and_amounts_are_checked() {
    let mut config = SimConfig::default();
    config.initiators.push(InitiatorAccount {
        name: "viewer".into(),
        password: "viewer-pass".into(),
        can_reverse: false,
        can_query_status: true,
    });
    let sim = sim(config).await;
    let mut urls = Urls::start().await;
    let receipt = paid(&sim, 20).await;
    let before = sim.sim().phone(254_700_000_000).balance;

    for (who, amount, code) in [
        (initiator("testapi", "wrong password"), 20, "2001"),
        (initiator("nobody", "Safaricom999!*!"), 20, "2001"),
        (initiator("viewer", "viewer-pass"), 20, "21"),
        (initiator("testapi", "Safaricom999!*!"), 19, "R000003"),
    ] {
        client(&sim).reversal(&reversal_of(&sim, &urls, &receipt, amount, who)).await.unwrap();
        let r = result::parse(&urls.results.next_raw().await).unwrap();
        assert_eq!(r.result_code, code);
        assert!(matches!(reversal::outcome(&r), Outcome::Refused { .. }));
    }
    assert_eq!(sim.sim().phone(254_700_000_000).balance, before, "nothing moved");

    // A credential encrypted with another certificate (the real sandbox's) does not open.
    let foreign =
        Initiator::new("testapi", Certificate::sandbox().unwrap().encrypt(&Secret::new("Safaricom999!*!")).unwrap())
            .unwrap();
    client(&sim).reversal(&reversal_of(&sim, &urls, &receipt, 20, foreign)).await.unwrap();
    assert_eq!(result::parse(&urls.results.next_raw().await).unwrap().result_code, "2001");
}

#[tokio::test]
async fn the_misspelled_identifier_field_is_required_with_the_configured_value() {
    let sim = sim(SimConfig::default()).await;
    let urls = Urls::start().await;
    let token = token(&sim).await;
    let who = initiator("testapi", "Safaricom999!*!");
    let body = |field: &str, value: &str| {
        serde_json::json!({
            "Initiator": "testapi", "SecurityCredential": who.credential().expose(), "CommandID": "TransactionReversal",
            "TransactionID": "SXX0000001", "Amount": 10, "ReceiverParty": sim.shortcode(), field: value,
            "ResultURL": urls.results.url, "QueueTimeOutURL": urls.timeouts.url, "Remarks": "Refund",
        })
    };
    let send = |body: serde_json::Value| {
        reqwest::Client::new()
            .post(format!("{}/mpesa/reversal/v1/request", sim.base_url()))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    for (field, value, ok) in [
        ("ReceiverIdentifierType", "11", false),
        ("RecieverIdentifierType", "4", false),
        ("RecieverIdentifierType", "11", true),
    ] {
        let answer = send(body(field, value)).await.unwrap();
        let status = answer.status();
        let json: serde_json::Value = answer.json().await.unwrap();
        if ok {
            assert_eq!(json["ResponseCode"], "0", "{json}");
        } else {
            assert_eq!(status, 400, "{field}={value}: {json}");
            assert_eq!(json["errorMessage"], "Bad Request - Invalid RecieverIdentifierType");
        }
    }

    // Acting as the Postman collection's Daraja: 4 is the value, and the client sends it.
    let postman =
        daraja_sim::spawn(SimConfig { reversal_identifier_type: "4".into(), ..SimConfig::default() }).await.unwrap();
    let mut request = reversal_of(&postman, &urls, "SXX0000002", 10, who.clone());
    assert!(client(&postman).reversal(&request).await.is_err(), "11 refused where 4 is expected");
    request.receiver_identifier_type = IdentifierType::SHORTCODE;
    client(&postman).reversal(&request).await.unwrap();
}

#[tokio::test]
async fn a_queue_timeout_is_answered_by_transaction_status() {
    let sim = sim(SimConfig::default()).await;
    let mut urls = Urls::start().await;
    let who = initiator("testapi", "Safaricom999!*!");

    // Timed out and not carried out: the status query does not find the reversal.
    let receipt = paid(&sim, 30).await;
    let timed_out = ResultFaults { queue_timeout: true, ..ResultFaults::default() };
    sim.sim().script_result(&receipt, timed_out.clone());
    let accepted = client(&sim).reversal(&reversal_of(&sim, &urls, &receipt, 30, who.clone())).await.unwrap();
    let notice = result::parse_timeout(&urls.timeouts.next_raw().await).unwrap();
    assert_eq!(notice.originator_conversation_id.as_deref(), Some(accepted.originator_conversation_id.as_str()));
    client(&sim)
        .transaction_status(&status_of(&sim, &urls, Target::Conversation(accepted.originator_conversation_id)))
        .await
        .unwrap();
    let report = status::report(&result::parse(&urls.results.next_raw().await).unwrap());
    assert!(matches!(report, Report::Refused { kind: ResultKind::UnknownTransaction, .. }), "{report:?}");

    // Timed out but carried out: the status query finds the reversal and its receipt.
    let before = sim.sim().phone(254_700_000_000).balance;
    sim.sim().script_result(&receipt, ResultFaults { executed_despite_timeout: true, ..timed_out });
    let accepted = client(&sim).reversal(&reversal_of(&sim, &urls, &receipt, 30, who)).await.unwrap();
    result::parse_timeout(&urls.timeouts.next_raw().await).unwrap();
    assert_eq!(sim.sim().phone(254_700_000_000).balance, before + 30);
    client(&sim)
        .transaction_status(&status_of(&sim, &urls, Target::Conversation(accepted.originator_conversation_id)))
        .await
        .unwrap();
    let Report::Found(found) = status::report(&result::parse(&urls.results.next_raw().await).unwrap()) else {
        panic!("the executed reversal is found")
    };
    assert_eq!(found.reason_type.as_deref(), Some("Reversal"));
    assert!(found.is_completed());
    assert_eq!(found.amount, Some(30));
    let requests = sim.sim().initiator_requests();
    let reversal_receipt = requests.iter().rev().find_map(|r| r.receipt.clone()).unwrap();
    assert_eq!(found.receipt.as_deref(), Some(reversal_receipt.as_str()));
}

#[tokio::test]
async fn results_can_be_duplicated_dropped_or_forced() {
    let sim = sim(SimConfig::default()).await;
    let mut urls = Urls::start().await;
    let who = initiator("testapi", "Safaricom999!*!");
    let receipt = paid(&sim, 12).await;
    sim.sim().script_result(
        &receipt,
        ResultFaults { delivery: Faults { copies: 2, ..Faults::default() }, ..ResultFaults::default() },
    );
    client(&sim).reversal(&reversal_of(&sim, &urls, &receipt, 12, who.clone())).await.unwrap();
    let (a, b) = (urls.results.next_raw().await, urls.results.next_raw().await);
    assert_eq!(a, b, "the same result twice");

    let receipt = paid(&sim, 13).await;
    sim.sim().script_result(&receipt, ResultFaults { result_code: Some("8006".into()), ..ResultFaults::default() });
    client(&sim).reversal(&reversal_of(&sim, &urls, &receipt, 13, who.clone())).await.unwrap();
    let r = result::parse(&urls.results.next_raw().await).unwrap();
    assert_eq!(r.kind(), ResultKind::CredentialLocked);

    let receipt = paid(&sim, 14).await;
    sim.sim().script_result(
        &receipt,
        ResultFaults { delivery: Faults { drop: true, ..Faults::default() }, ..ResultFaults::default() },
    );
    client(&sim).reversal(&reversal_of(&sim, &urls, &receipt, 14, who)).await.unwrap();
    eventually("the dropped reversal is carried out", || {
        sim.sim().initiator_requests().last().is_some_and(|r| r.receipt.is_some())
    })
    .await;
    assert!(tokio::time::timeout(std::time::Duration::from_millis(600), urls.results.bodies.recv()).await.is_err());
}

#[tokio::test]
async fn status_by_receipt_describes_stk_and_paybill_payments() {
    let sim = sim(SimConfig::default()).await;
    let mut urls = Urls::start().await;
    let receipt = paid(&sim, 45).await;
    client(&sim)
        .transaction_status(&status_of(&sim, &urls, Target::Receipt(ReceiptNumber::parse(&receipt).unwrap())))
        .await
        .unwrap();
    let Report::Found(d) = status::report(&result::parse(&urls.results.next_raw().await).unwrap()) else { panic!() };
    assert_eq!(d.receipt.as_deref(), Some(receipt.as_str()));
    assert_eq!((d.amount, d.reason_type.as_deref()), (Some(45), Some("Pay Bill Online")));
    assert!(d.debit_party.unwrap().starts_with("254700000000"));
    assert!(d.finalised_at.is_some());

    let c2b = sim
        .sim()
        .c2b_pay(ManualPayment {
            shortcode: sim.shortcode(),
            account: "ABC1234".into(),
            amount: 70,
            phone: "0712345678".into(),
            pin: None,
            faults: None,
        })
        .await
        .unwrap();
    client(&sim)
        .transaction_status(&status_of(&sim, &urls, Target::Receipt(ReceiptNumber::parse(&c2b.trans_id).unwrap())))
        .await
        .unwrap();
    let Report::Found(d) = status::report(&result::parse(&urls.results.next_raw().await).unwrap()) else { panic!() };
    assert_eq!((d.amount, d.reason_type.as_deref()), (Some(70), Some("Pay Bill")));

    let before = sim.sim().phone(254_712_345_678).balance;
    let who = initiator("testapi", "Safaricom999!*!");
    client(&sim).reversal(&reversal_of(&sim, &urls, &c2b.trans_id, 70, who)).await.unwrap();
    assert!(result::parse(&urls.results.next_raw().await).unwrap().is_success());
    assert_eq!(sim.sim().phone(254_712_345_678).balance, before + 70, "a Paybill payment reversed too");
}
