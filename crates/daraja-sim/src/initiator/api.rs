//! Daraja's Reversal and Transaction Status paths, and the control API's `/sim/initiator/…`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{CERTIFICATE_PEM, InitiatorKind, InitiatorRequest, ResultFaults};
use crate::envelope::DarajaError;
use crate::sim::{Endpoint, Sim};
use crate::stk::{amount, answer, late, read, shortcode, text, url_field};

pub(crate) fn routes() -> axum::Router<Sim> {
    axum::Router::new()
        .route("/mpesa/reversal/v1/request", any(reversal))
        .route("/mpesa/transactionstatus/v1/query", any(status))
        .route(
            "/sim/certificate",
            get(|| async { ([(header::CONTENT_TYPE, "application/x-pem-file")], CERTIFICATE_PEM) }),
        )
        .route("/sim/initiator/requests", get(|State(sim): State<Sim>| async move { Json(sim.initiator_requests()) }))
        .route("/sim/initiator/faults", put(faults))
        .route("/sim/initiator/script", post(script))
}

/// The documented fields of each request (others are recorded, or refused when strict).
pub(crate) fn documented_fields(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::Reversal => &[
            "Initiator",
            "SecurityCredential",
            "CommandID",
            "TransactionID",
            "Amount",
            "ReceiverParty",
            "RecieverIdentifierType",
            "ResultURL",
            "QueueTimeOutURL",
            "Remarks",
            "Occasion",
        ],
        _ => &[
            "Initiator",
            "SecurityCredential",
            "CommandID",
            "TransactionID",
            "OriginalConversationID",
            "PartyA",
            "IdentifierType",
            "ResultURL",
            "QueueTimeOutURL",
            "Remarks",
            "Occasion",
        ],
    }
}

/// Checks the fields both APIs share; returns `(initiator, credential, result URL, timeout URL)`.
fn common(body: &Map<String, Value>, command: &str) -> Result<(String, String, String, String), DarajaError> {
    let initiator = text(body, "Initiator").map(str::trim).filter(|t| !t.is_empty() && t.len() <= 64);
    let initiator = initiator.ok_or_else(|| DarajaError::invalid("Initiator"))?.to_owned();
    let credential = text(body, "SecurityCredential").map(str::trim).filter(|c| {
        !c.is_empty()
            && c.len() <= 2048
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    });
    let credential = credential.ok_or_else(|| DarajaError::invalid("SecurityCredential"))?.to_owned();
    if text(body, "CommandID") != Some(command) {
        return Err(DarajaError::invalid("CommandID"));
    }
    let result_url = url_field(body, "ResultURL")?;
    let timeout_url = url_field(body, "QueueTimeOutURL")?;
    let remarks = text(body, "Remarks").map(str::trim).unwrap_or("");
    if !(2..=100).contains(&remarks.chars().count()) {
        return Err(DarajaError::invalid("Remarks"));
    }
    match body.get("Occasion") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.chars().count() <= 100 => {}
        Some(_) => return Err(DarajaError::invalid("Occasion")),
    }
    Ok((initiator, credential, result_url, timeout_url))
}

fn known_shortcode(sim: &Sim, body: &Map<String, Value>, field: &str) -> Result<u32, DarajaError> {
    let code = shortcode(body, field)?;
    if sim.config().merchants.iter().any(|m| m.shortcode == code) { Ok(code) } else { Err(DarajaError::invalid(field)) }
}

fn receipt(body: &Map<String, Value>, field: &str) -> Result<String, DarajaError> {
    text(body, field)
        .map(str::trim)
        .filter(|r| (1..=20).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_owned)
        .ok_or_else(|| DarajaError::invalid(field))
}

fn accepted_answer(request: &InitiatorRequest) -> Value {
    json!({
        "OriginatorConversationID": request.originator_conversation_id,
        "ConversationID": request.conversation_id,
        "ResponseCode": "0",
        "ResponseDescription": "Accept the service request successfully.",
    })
}

fn new_request(kind: InitiatorKind, initiator: String, shortcode: u32, urls: (String, String)) -> InitiatorRequest {
    let mut rng = fastrand::Rng::new();
    InitiatorRequest {
        kind,
        originator_conversation_id: format!("{}-{}", rng.u32(10_000..100_000), rng.u64(1_000_000_000..10_000_000_000)),
        conversation_id: format!(
            "AG_{}_{}",
            crate::delivery::nairobi_digits(OffsetDateTime::now_utc()).get(..8).unwrap_or(""),
            crate::ids::request_id(&mut rng).replace('-', "")
        ),
        initiator,
        transaction_id: String::new(),
        original_conversation_id: String::new(),
        amount: 0,
        shortcode,
        result_url: urls.0,
        queue_timeout_url: urls.1,
        at: OffsetDateTime::now_utc(),
        result_code: None,
        receipt: None,
        timed_out: false,
    }
}

async fn handle(
    sim: &Sim,
    request: Request<Body>,
    endpoint: Endpoint,
    name: &'static str,
    fields: impl FnOnce(&Sim, &Map<String, Value>) -> Result<(InitiatorRequest, String), DarajaError>,
) -> Response {
    let (request_json, unknown, outcome) = match read(sim, request, endpoint).await {
        Ok((body, unknown)) => {
            let outcome = fields(sim, &body);
            (Value::Object(body), unknown, outcome)
        }
        Err((raw, e)) => (raw, Vec::new(), Err(e)),
    };
    let outcome = outcome.map(|(request, credential)| {
        let answer = accepted_answer(&request);
        sim.accepted(request, credential);
        answer
    });
    late(sim, endpoint, answer(sim, name, request_json, unknown, outcome)).await
}

/// `POST /mpesa/reversal/v1/request`.
async fn reversal(State(sim): State<Sim>, request: Request<Body>) -> Response {
    handle(&sim, request, Endpoint::Reversal, "reversal", |sim, body| {
        let (initiator, credential, result_url, timeout_url) = common(body, "TransactionReversal")?;
        let transaction_id = receipt(body, "TransactionID")?;
        let amount = amount(body, sim.config().max_amount)?;
        let shortcode = known_shortcode(sim, body, "ReceiverParty")?;
        // Daraja's spelling only: the correct one is refused.
        let identifier = match body.get("RecieverIdentifierType") {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(DarajaError::invalid("RecieverIdentifierType")),
        };
        if identifier != sim.config().reversal_identifier_type {
            return Err(DarajaError::invalid("RecieverIdentifierType"));
        }
        let mut request = new_request(InitiatorKind::Reversal, initiator, shortcode, (result_url, timeout_url));
        request.transaction_id = transaction_id;
        request.amount = amount;
        Ok((request, credential))
    })
    .await
}

/// `POST /mpesa/transactionstatus/v1/query`.
async fn status(State(sim): State<Sim>, request: Request<Body>) -> Response {
    handle(&sim, request, Endpoint::TransactionStatus, "transaction_status", |sim, body| {
        let (initiator, credential, result_url, timeout_url) = common(body, "TransactionStatusQuery")?;
        let shortcode = known_shortcode(sim, body, "PartyA")?;
        let identifier = match body.get("IdentifierType") {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        if identifier != "4" {
            return Err(DarajaError::invalid("IdentifierType"));
        }
        let mut request =
            new_request(InitiatorKind::TransactionStatus, initiator, shortcode, (result_url, timeout_url));
        let by_receipt = text(body, "TransactionID").is_some_and(|t| !t.trim().is_empty());
        let by_conversation = text(body, "OriginalConversationID").map(str::trim).filter(|t| !t.is_empty());
        match (by_receipt, by_conversation) {
            (true, _) => request.transaction_id = receipt(body, "TransactionID")?,
            (false, Some(id)) if id.len() <= 64 => request.original_conversation_id = id.to_owned(),
            _ => return Err(DarajaError::invalid("TransactionID")),
        }
        Ok((request, credential))
    })
    .await
}

/// `PUT /sim/initiator/faults`: faults for every later result (`null` restores the configured).
async fn faults(State(sim): State<Sim>, Json(faults): Json<Option<ResultFaults>>) -> Response {
    sim.set_result_faults(faults);
    Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct Script {
    transaction_id: String,
    faults: ResultFaults,
}

/// `POST /sim/initiator/script`: faults for the next result about one receipt.
async fn script(State(sim): State<Sim>, Json(script): Json<Script>) -> Response {
    sim.script_result(&script.transaction_id, script.faults);
    Json(json!({"ok": true})).into_response()
}
