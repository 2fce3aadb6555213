//! Reversal and Transaction Status: the APIs an org-portal user (the initiator) calls, answered
//! at once with ids and later with a result POSTed to the `ResultURL`.
//!
//! The `SecurityCredential` is checked the way Safaricom does: decrypted with the private key
//! of the certificate clients encrypt with (the simulator's own pair, bundled; clients point at
//! [`CERTIFICATE_PEM`]), then compared with the initiator's password. A reversal moves the
//! whole amount back to the payer's wallet, once. Results take faults
//! ([`ResultFaults`]): a queue timeout instead of the result (the request carried out or
//! not), a forced result code, copies, delay, drop.

mod api;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use rsa::pkcs8::DecodePrivateKey as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::config::Faults;
use crate::delivery::{Delivery, nairobi_digits};
use crate::records::rfc3339;
use crate::sim::Sim;

pub(crate) use api::{documented_fields, routes};

/// The certificate whose key the simulator decrypts credentials with: give it to clients as
/// Safaricom's certificate (`MPESA_CERTIFICATE`).
pub const CERTIFICATE_PEM: &str = include_str!("../keys/simulator-certificate.pem");
/// The simulator's private key. A test key: it protects nothing.
const PRIVATE_KEY_PEM: &str = include_str!("../keys/simulator-key.pem");

/// An org-portal user allowed to call the initiator APIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitiatorAccount {
    /// `Initiator`.
    pub name: String,
    /// The password the `SecurityCredential` must decrypt to.
    pub password: String,
    /// May reverse payments (else result `21`).
    pub can_reverse: bool,
    /// May query transaction status (else result `21`).
    pub can_query_status: bool,
}

impl InitiatorAccount {
    /// The sandbox's `testapi` / `Safaricom999!*!`, with both roles.
    pub fn sandbox() -> Self {
        Self { name: "testapi".into(), password: "Safaricom999!*!".into(), can_reverse: true, can_query_status: true }
    }
}

/// What happens to the result of an initiator request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResultFaults {
    /// Delivery faults of the result (drop = no result ever; copies = duplicates).
    pub delivery: Faults,
    /// Send a notice to the `QueueTimeOutURL` instead of the result.
    pub queue_timeout: bool,
    /// With `queue_timeout`: whether the request was carried out all the same (a reversal
    /// moved the money; Transaction Status then finds it).
    pub executed_despite_timeout: bool,
    /// End with this result code instead of the real outcome (nothing moves).
    pub result_code: Option<String>,
}

/// Which initiator API a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitiatorKind {
    /// `POST /mpesa/reversal/v1/request`.
    Reversal,
    /// `POST /mpesa/transactionstatus/v1/query`.
    TransactionStatus,
}

/// One accepted initiator request and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct InitiatorRequest {
    /// Which API.
    pub kind: InitiatorKind,
    /// `OriginatorConversationID` of the answer.
    pub originator_conversation_id: String,
    /// `ConversationID` of the answer.
    pub conversation_id: String,
    /// `Initiator`.
    pub initiator: String,
    /// `TransactionID` asked about or reversed (empty for a status query by conversation).
    pub transaction_id: String,
    /// `OriginalConversationID` of a status query by conversation.
    pub original_conversation_id: String,
    /// `Amount` of a reversal.
    pub amount: u64,
    /// The shortcode (`ReceiverParty` or `PartyA`).
    pub shortcode: u32,
    /// `ResultURL`.
    pub result_url: String,
    /// `QueueTimeOutURL`.
    pub queue_timeout_url: String,
    /// When it was accepted.
    #[serde(serialize_with = "rfc3339")]
    pub at: OffsetDateTime,
    /// The result code, once decided.
    pub result_code: Option<String>,
    /// A reversal's own receipt, when it moved money.
    pub receipt: Option<String>,
    /// Whether a queue timeout was sent instead of the result.
    pub timed_out: bool,
}

/// Initiator state: requests, reversals, scripted faults and the credentials already opened.
#[derive(Debug, Default)]
pub(crate) struct Desk {
    requests: Vec<InitiatorRequest>,
    /// When each original receipt was reversed.
    reversed: HashMap<String, OffsetDateTime>,
    /// Faults for the next request about a receipt (reversal `TransactionID`).
    scripted: HashMap<String, ResultFaults>,
    /// Faults for requests with none scripted.
    faults: Option<ResultFaults>,
    /// Decrypted credentials by their base64 (bounded).
    opened: HashMap<String, Option<String>>,
}

/// A transaction the initiator APIs can find: a paid STK push or a C2B payment by hand.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub receipt: String,
    pub shortcode: u32,
    pub phone: u64,
    pub amount: u64,
    pub at: OffsetDateTime,
    pub reason_type: &'static str,
    pub business: String,
}

impl Sim {
    /// Every accepted Reversal and Transaction Status request, in order.
    pub fn initiator_requests(&self) -> Vec<InitiatorRequest> {
        self.desk().requests.clone()
    }

    /// Faults for the result of the next request about `transaction_id` (a reversal of it,
    /// or a status query for it).
    pub fn script_result(&self, transaction_id: &str, faults: ResultFaults) {
        self.desk().scripted.insert(transaction_id.to_owned(), faults);
    }

    /// Faults for every result with none scripted (`None`: the configured ones).
    pub fn set_result_faults(&self, faults: Option<ResultFaults>) {
        self.desk().faults = faults;
    }

    /// Whether the credential opens to `initiator`'s password: `None` when it does, else the
    /// result code (`2001`).
    fn check_credential(&self, initiator: &InitiatorAccount, credential: &str) -> Option<&'static str> {
        let cached = self.desk().opened.get(credential).cloned();
        let opened = cached.unwrap_or_else(|| {
            let opened = open(&self.config().initiator_key_pem, credential);
            let mut desk = self.desk();
            if desk.opened.len() >= 1024 {
                desk.opened.clear();
            }
            desk.opened.insert(credential.to_owned(), opened.clone());
            opened
        });
        (opened.as_deref() != Some(initiator.password.as_str())).then_some("2001")
    }

    /// Records an accepted request, then decides and delivers its result after the delay.
    fn accepted(&self, request: InitiatorRequest, credential: String) {
        let faults = {
            let mut desk = self.desk();
            let scripted = [request.transaction_id.as_str(), request.original_conversation_id.as_str()]
                .iter()
                .find_map(|k| desk.scripted.remove(*k));
            desk.requests.push(request.clone());
            scripted.or_else(|| desk.faults.clone()).unwrap_or_else(|| self.config().result_faults.clone())
        };
        let sim = self.clone();
        let generation = self.generation();
        let delay = self.config().result_delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            sim.conclude(request, &credential, &faults, generation);
        });
    }

    /// Decides a request's outcome (moving money for a reversal) and sends the result or the
    /// queue timeout.
    fn conclude(&self, request: InitiatorRequest, credential: &str, faults: &ResultFaults, generation: u64) {
        let executes = !faults.queue_timeout || faults.executed_despite_timeout;
        let (code, desc, receipt, parameters) = if let Some(code) = &faults.result_code {
            (code.clone(), result_desc(code).to_owned(), None, Vec::new())
        } else if !executes {
            ("1".to_owned(), String::new(), None, Vec::new())
        } else {
            self.outcome(&request, credential)
        };
        {
            let mut desk = self.desk();
            if let Some(r) = desk.requests.iter_mut().find(|r| r.conversation_id == request.conversation_id) {
                r.timed_out = faults.queue_timeout;
                if executes {
                    r.result_code = Some(code.clone());
                    r.receipt.clone_from(&receipt);
                }
            }
        }
        let ids = (&request.originator_conversation_id, &request.conversation_id);
        let (kind, url, body) = if faults.queue_timeout {
            let body = json!({"Result": {
                "ResultType": 1, "ResultCode": 1, "ResultDesc": "The request timed out in the queue.",
                "OriginatorConversationID": ids.0, "ConversationID": ids.1,
            }});
            ("queue_timeout", &request.queue_timeout_url, body)
        } else {
            let kind = match request.kind {
                InitiatorKind::Reversal => "reversal_result",
                InitiatorKind::TransactionStatus => "status_result",
            };
            (kind, &request.result_url, result_body(ids, &code, &desc, receipt.as_deref(), &parameters))
        };
        let delivery = Delivery::message(
            kind,
            &request.originator_conversation_id,
            url,
            body.to_string(),
            faults.delivery.clone(),
            generation,
        );
        if let Some(d) = delivery {
            tokio::spawn(crate::delivery::deliver(self.clone(), self.http().clone(), d));
        }
    }

    /// The real outcome: `(code, description, receipt, result parameters)`.
    fn outcome(
        &self,
        request: &InitiatorRequest,
        credential: &str,
    ) -> (String, String, Option<String>, Vec<(&'static str, Value)>) {
        let refused = |code: &str| (code.to_owned(), result_desc(code).to_owned(), None, Vec::new());
        let account = self.config().initiators.iter().find(|a| a.name == request.initiator);
        let Some(account) = account else { return refused("2001") };
        if let Some(code) = self.check_credential(account, credential) {
            return refused(code);
        }
        let allowed = match request.kind {
            InitiatorKind::Reversal => account.can_reverse,
            InitiatorKind::TransactionStatus => account.can_query_status,
        };
        if !allowed {
            return refused("21");
        }
        match request.kind {
            InitiatorKind::Reversal => self.reverse(request),
            InitiatorKind::TransactionStatus => self.status(request),
        }
    }

    fn reverse(&self, request: &InitiatorRequest) -> (String, String, Option<String>, Vec<(&'static str, Value)>) {
        let refused = |code: &str| (code.to_owned(), result_desc(code).to_owned(), None, Vec::new());
        let Some(original) = self.find(&request.transaction_id).filter(|f| f.shortcode == request.shortcode) else {
            return refused("R000002");
        };
        if original.amount != request.amount {
            return refused("R000003");
        }
        let now = OffsetDateTime::now_utc();
        let receipt = {
            let mut desk = self.desk();
            if desk.reversed.contains_key(&original.receipt) {
                return refused("R000001");
            }
            let receipt = self.new_receipt();
            desk.reversed.insert(original.receipt.clone(), now);
            receipt
        };
        self.credit(original.phone, original.amount);
        self.c2b_reversed(original.shortcode, original.amount);
        let parameters = vec![
            ("Amount", json!(format!("{}.00", original.amount))),
            ("TransCompletedTime", json!(nairobi_digits(now).parse::<u64>().unwrap_or_default())),
            ("OriginalTransactionID", json!(original.receipt)),
            ("Charge", json!("0.00")),
            ("CreditPartyPublicName", json!(format!("{} - M-PESA customer", original.phone))),
            ("DebitPartyPublicName", json!(format!("{} - {}", original.shortcode, original.business))),
        ];
        ("0".to_owned(), result_desc("0").to_owned(), Some(receipt), parameters)
    }

    fn status(&self, request: &InitiatorRequest) -> (String, String, Option<String>, Vec<(&'static str, Value)>) {
        let refused = |code: &str| (code.to_owned(), result_desc(code).to_owned(), None, Vec::new());
        let details = if request.original_conversation_id.is_empty() {
            self.find(&request.transaction_id).map(|f| (f, None))
        } else {
            let reversal = self
                .desk()
                .requests
                .iter()
                .find(|r| r.originator_conversation_id == request.original_conversation_id && r.receipt.is_some())
                .cloned();
            reversal.and_then(|r| {
                let original = self.find(&r.transaction_id)?;
                let at = self.desk().reversed.get(&original.receipt).copied().unwrap_or(r.at);
                let receipt = r.receipt?;
                Some((Found { receipt, at, reason_type: "Reversal", ..original }, Some(r.originator_conversation_id)))
            })
        };
        let Some((found, conversation)) = details.filter(|(f, _)| f.shortcode == request.shortcode) else {
            return refused("R000002");
        };
        let at = nairobi_digits(found.at).parse::<u64>().unwrap_or_default();
        let reversal = found.reason_type == "Reversal";
        let (debit, credit) = if reversal {
            (format!("{} - {}", found.shortcode, found.business), format!("{} - M-PESA customer", found.phone))
        } else {
            (format!("{} - M-PESA customer", found.phone), format!("{} - {}", found.shortcode, found.business))
        };
        let parameters = vec![
            ("DebitPartyName", json!(debit)),
            ("CreditPartyName", json!(credit)),
            ("OriginatorConversationID", json!(conversation.unwrap_or_default())),
            ("InitiatedTime", json!(at)),
            ("DebitAccountType", json!(if reversal { "Utility Account" } else { "MMF Account For Customer" })),
            ("DebitPartyCharges", json!("")),
            ("TransactionReason", json!("")),
            ("ReasonType", json!(found.reason_type)),
            ("TransactionStatus", json!("Completed")),
            ("FinalisedTime", json!(at)),
            ("Amount", json!(found.amount as f64)),
            ("ConversationID", json!("")),
            ("ReceiptNo", json!(found.receipt)),
        ];
        ("0".to_owned(), result_desc("0").to_owned(), None, parameters)
    }

    /// A paid STK push or C2B payment by its receipt.
    fn find(&self, receipt: &str) -> Option<Found> {
        let business = |shortcode: u32| {
            self.config()
                .merchants
                .iter()
                .find(|m| m.shortcode == shortcode)
                .map_or_else(String::new, |m| m.name.clone())
        };
        if let Some(t) = self.transaction_by_receipt(receipt) {
            let reason_type =
                if t.transaction_type == "CustomerBuyGoodsOnline" { "Pay Merchant Online" } else { "Pay Bill Online" };
            return Some(Found {
                receipt: receipt.to_owned(),
                shortcode: t.shortcode,
                phone: t.phone,
                amount: t.amount,
                at: t.completed_at.unwrap_or(t.created_at),
                reason_type,
                business: t.business_name,
            });
        }
        let c2b = self.c2b_paid(receipt)?;
        Some(Found {
            receipt: receipt.to_owned(),
            shortcode: c2b.shortcode,
            phone: c2b.phone,
            amount: c2b.amount,
            at: c2b.at,
            reason_type: if c2b.transaction_type == "Buy Goods" { "Buy Goods" } else { "Pay Bill" },
            business: business(c2b.shortcode),
        })
    }
}

/// The `Result` envelope.
fn result_body(
    ids: (&String, &String),
    code: &str,
    desc: &str,
    receipt: Option<&str>,
    parameters: &[(&str, Value)],
) -> Value {
    // Numeric codes as numbers, others (`R000001`) as strings, as Safaricom sends them.
    let code_value = code.parse::<u64>().map_or_else(|_| json!(code), |n| json!(n));
    let mut result = json!({
        "ResultType": 0,
        "ResultCode": code_value,
        "ResultDesc": desc,
        "OriginatorConversationID": ids.0,
        "ConversationID": ids.1,
        "TransactionID": receipt.unwrap_or_default(),
        "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://internalsandbox.safaricom.co.ke/mpesa/reversalresults/v1/submit"}},
    });
    if !parameters.is_empty() {
        let list: Vec<Value> = parameters.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
        result["ResultParameters"] = json!({"ResultParameter": list});
    }
    json!({"Result": result})
}

/// Descriptions of the initiator APIs' result codes.
pub fn result_desc(code: &str) -> &'static str {
    match code {
        "0" => "The service request is processed successfully.",
        "1" => "The request timed out in the queue.",
        "21" => "The initiator is not allowed to initiate this request.",
        "2001" => "The initiator information is invalid.",
        "8006" => "The security credential is locked.",
        "R000001" => "The transaction has already been reversed.",
        "R000002" => "The OriginalTransactionID is invalid.",
        "R000003" => {
            "The reversal amount differs from the transaction's amount (the simulator's own code: Daraja documents no partial reversal)."
        }
        _ => "The request could not be completed.",
    }
}

/// Decrypts a credential with the simulator's key (PKCS#1 v1.5): the password, or `None`.
fn open(key_pem: &Option<String>, credential: &str) -> Option<String> {
    let pem = key_pem.as_deref().unwrap_or(PRIVATE_KEY_PEM);
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let key = rsa::RsaPrivateKey::from_pkcs8_der(&der).ok()?;
    let sealed = base64::engine::general_purpose::STANDARD.decode(credential.trim()).ok()?;
    let opened = key.decrypt(rsa::Pkcs1v15Encrypt, &sealed).ok()?;
    String::from_utf8(opened).ok()
}

/// The configured default delay before a result.
pub(crate) const RESULT_DELAY: Duration = Duration::from_millis(200);
