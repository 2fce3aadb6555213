//! Daraja's C2B paths (Register URL and Simulate, v1 and v2; Pull Transactions register and
//! query) and the control API's `/sim/c2b/…`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::{ManualPayment, Registration, payee};
use crate::NAIROBI;
use crate::config::RegisterPaths;
use crate::envelope::DarajaError;
use crate::sim::{Endpoint, Sim};
use crate::stk::{amount, answer, digits, late, msisdn, read, shortcode, text, url_field};

pub(crate) fn routes() -> axum::Router<Sim> {
    axum::Router::new()
        .route("/mpesa/c2b/v1/registerurl", any(|s, r| register(s, r, RegisterPaths::V1)))
        .route("/mpesa/c2b/v2/registerurl", any(|s, r| register(s, r, RegisterPaths::V2)))
        .route("/mpesa/c2b/v1/simulate", any(simulate))
        .route("/mpesa/c2b/v2/simulate", any(simulate))
        .route("/pulltransactions/v1/register", any(pull_register))
        .route("/pulltransactions/v1/query", any(pull_query))
        .route("/sim/c2b/pay", post(pay))
        .route("/sim/c2b/transactions", get(|State(sim): State<Sim>| async move { Json(sim.c2b_transactions()) }))
        .route("/sim/c2b/registrations", get(|State(sim): State<Sim>| async move { Json(sim.c2b_registrations()) }))
}

/// The documented fields of each C2B request (others are recorded, or refused when strict).
pub(crate) fn documented_fields(endpoint: Endpoint) -> &'static [&'static str] {
    match endpoint {
        Endpoint::C2bRegister => &["ShortCode", "ResponseType", "ConfirmationURL", "ValidationURL"],
        Endpoint::C2bSimulate => &["ShortCode", "CommandID", "Amount", "Msisdn", "BillRefNumber"],
        Endpoint::PullRegister => &["ShortCode", "RequestType", "NominatedNumber", "CallBackURL"],
        _ => &["ShortCode", "StartDate", "EndDate", "OffSetValue"],
    }
}

/// Reads, validates and answers one request the way the STK endpoints do.
async fn handle(
    sim: &Sim,
    request: Request<Body>,
    endpoint: Endpoint,
    name: &'static str,
    fields: impl FnOnce(&Sim, &Map<String, Value>) -> Result<Value, DarajaError>,
) -> Response {
    let (request_json, unknown, outcome) = match read(sim, request, endpoint).await {
        Ok((body, unknown)) => {
            let outcome = fields(sim, &body);
            (Value::Object(body), unknown, outcome)
        }
        Err((raw, e)) => (raw, Vec::new(), Err(e)),
    };
    late(sim, endpoint, answer(sim, name, request_json, unknown, outcome)).await
}

fn conversation_id() -> String {
    crate::ids::request_id(&mut fastrand::Rng::new())
}

/// `POST /mpesa/c2b/{v1,v2}/registerurl`.
async fn register(State(sim): State<Sim>, request: Request<Body>, path: RegisterPaths) -> Response {
    let allowed = matches!(sim.config().register_paths, RegisterPaths::Both) || sim.config().register_paths == path;
    if !allowed {
        let e = DarajaError::other(
            StatusCode::UNAUTHORIZED,
            "401.003.01",
            "Error occurred: Unauthorized - no apiproduct match found for the path",
        );
        return handle(&sim, request, Endpoint::C2bRegister, "c2b_register", |_, _| Err(e)).await;
    }
    handle(&sim, request, Endpoint::C2bRegister, "c2b_register", |sim, body| {
        let shortcode = shortcode(body, "ShortCode")?;
        if !sim.config().merchants.iter().any(|m| m.shortcode == shortcode || m.tills.contains(&shortcode)) {
            return Err(DarajaError::invalid("ShortCode"));
        }
        // Sentence case only, as Daraja.
        let response_type = match text(body, "ResponseType") {
            Some(t @ ("Completed" | "Cancelled")) => t.to_owned(),
            _ => return Err(DarajaError::invalid("ResponseType")),
        };
        let registration = Registration {
            shortcode,
            response_type,
            confirmation_url: url_field(body, "ConfirmationURL")?,
            validation_url: url_field(body, "ValidationURL")?,
        };
        let mut book = sim.c2b_book();
        if sim.config().register_once && book.registrations.contains_key(&shortcode) {
            return Err(DarajaError::other(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500.003.1001",
                "Urls are already registered",
            ));
        }
        book.registrations.insert(shortcode, registration);
        // Sic: Daraja spells it "Coversation".
        Ok(json!({"OriginatorCoversationID": conversation_id(), "ResponseCode": "0", "ResponseDescription": "Success"}))
    })
    .await
}

/// `POST /mpesa/c2b/{v1,v2}/simulate`: answers at once; validation and confirmation follow.
async fn simulate(State(sim): State<Sim>, request: Request<Body>) -> Response {
    handle(&sim, request, Endpoint::C2bSimulate, "c2b_simulate", |sim, body| {
        let number = shortcode(body, "ShortCode")?;
        let kind = payee(&sim.config().merchants, number)
            .map(|(_, kind)| kind)
            .ok_or_else(|| DarajaError::invalid("ShortCode"))?;
        let command_ok = match text(body, "CommandID") {
            Some("CustomerPayBillOnline") => kind == "Pay Bill",
            Some("CustomerBuyGoodsOnline") => kind == "Buy Goods",
            _ => false,
        };
        if !command_ok {
            return Err(DarajaError::invalid("CommandID"));
        }
        let amount = amount(body, sim.config().max_amount)?;
        let phone = msisdn(body, "Msisdn")?;
        let account = match (kind, body.get("BillRefNumber")) {
            ("Buy Goods", None | Some(Value::Null)) => String::new(),
            (_, Some(Value::String(s))) if kind == "Pay Bill" && !s.trim().is_empty() => s.trim().to_owned(),
            (_, Some(Value::Number(n))) if kind == "Pay Bill" => n.to_string(),
            _ => return Err(DarajaError::invalid("BillRefNumber")),
        };
        let payment =
            ManualPayment { shortcode: number, account, amount, phone: phone.to_string(), pin: None, faults: None };
        let sim = sim.clone();
        tokio::spawn(async move {
            if let Err(why) = sim.c2b_pay(payment).await {
                tracing::warn!(%why, "simulated C2B payment refused");
            }
        });
        Ok(json!({
            "OriginatorCoversationID": conversation_id(),
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully.",
        }))
    })
    .await
}

/// `POST /pulltransactions/v1/register`.
async fn pull_register(State(sim): State<Sim>, request: Request<Body>) -> Response {
    handle(&sim, request, Endpoint::PullRegister, "pull_register", |sim, body| {
        let shortcode = shortcode(body, "ShortCode")?;
        if !sim.config().merchants.iter().any(|m| m.shortcode == shortcode) {
            return Err(DarajaError::invalid("ShortCode"));
        }
        if text(body, "RequestType") != Some("Pull") {
            return Err(DarajaError::invalid("RequestType"));
        }
        digits(body, "NominatedNumber")
            .and_then(|d| crate::normalize_msisdn(&d))
            .ok_or_else(|| DarajaError::invalid("NominatedNumber"))?;
        url_field(body, "CallBackURL")?;
        let fresh = sim.c2b_book().pull_registered.insert(shortcode);
        let (status, description) = if fresh {
            ("1000", "Shortcode registered successfully")
        } else {
            ("1001", "Shortcode already registered")
        };
        Ok(json!({
            "ResponseRefID": conversation_id(),
            "ResponseStatus": status,
            "ShortCode": shortcode.to_string(),
            "ResponseDescription": description,
        }))
    })
    .await
}

/// `YYYY-MM-DD HH:MM:SS` (hour with or without its leading zero), Nairobi time.
fn date(body: &Map<String, Value>, field: &str) -> Result<OffsetDateTime, DarajaError> {
    let format = format_description!("[year]-[month]-[day] [hour padding:none]:[minute]:[second]");
    text(body, field)
        .and_then(|t| time::PrimitiveDateTime::parse(t.trim(), format).ok())
        .map(|t| t.assume_offset(NAIROBI))
        .ok_or_else(|| DarajaError::invalid(field))
}

/// `POST /pulltransactions/v1/query`.
async fn pull_query(State(sim): State<Sim>, request: Request<Body>) -> Response {
    handle(&sim, request, Endpoint::PullQuery, "pull_query", |sim, body| {
        let shortcode = shortcode(body, "ShortCode")?;
        if !sim.c2b_book().pull_registered.contains(&shortcode) {
            return Err(DarajaError::other(
                StatusCode::BAD_REQUEST,
                "400.002.02",
                "Bad Request - ShortCode is not registered for Pull Transactions",
            ));
        }
        let (start, end) = (date(body, "StartDate")?, date(body, "EndDate")?);
        let offset = digits(body, "OffSetValue").and_then(|d| d.parse().ok()).ok_or_else(|| DarajaError::invalid("OffSetValue"))?;
        let page = sim.pulled(shortcode, start, end, offset);
        let name = sim.config().merchants.iter().find(|m| m.shortcode == shortcode).map_or("", |m| m.name.as_str());
        if page.is_empty() {
            return Ok(json!({"ResponseRefID": conversation_id(), "ResponseCode": "1001", "ResponseMessage": "No transactions found", "Response": []}));
        }
        let style = sim.config().merchants.iter().find(|m| m.shortcode == shortcode).map(|m| m.msisdn_style).unwrap_or_default();
        let entries: Vec<Value> = page
            .iter()
            .map(|t| {
                let kind = if t.transaction_type.contains("Goods") { "c2b-buy-goods-debit" } else { "c2b-pay-bill-debit" };
                let at = t.at.to_offset(NAIROBI).format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                json!({
                    "transactionId": t.trans_id,
                    "trxDate": at,
                    "msisdn": super::msisdn(t.phone, style),
                    "sender": "UTILITY",
                    "transactiontype": kind,
                    "billreference": t.account,
                    "amount": format!("{}.00", t.amount),
                    "organizationname": name,
                })
            })
            .collect();
        Ok(json!({"ResponseRefID": conversation_id(), "ResponseCode": "1000", "ResponseMessage": "Success", "Response": [entries]}))
    })
    .await
}

/// `POST /sim/c2b/pay`: the virtual customer pays by hand, without the phone's screens.
async fn pay(State(sim): State<Sim>, Json(payment): Json<ManualPayment>) -> Response {
    match sim.c2b_pay(payment).await {
        Ok(txn) => Json(json!({
            "trans_id": txn.trans_id,
            "status": txn.status,
            "result_code": txn.result_code,
        }))
        .into_response(),
        Err(why) => (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response(),
    }
}
