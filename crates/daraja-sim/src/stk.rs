//! Daraja's endpoints: OAuth, STK Push and STK Query, with Daraja's validation and envelopes.
//!
//! Lenient where Daraja is lenient (numbers or digit strings for shortcode, amount and phones;
//! `1.0` for an amount; unknown fields ignored and recorded), strict where it is strict
//! (password must match, timestamp must be a real instant, JSON content type), and quirky
//! where it is quirky (`ResponseCode` `"0"`, query `ResultCode` as a string).

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::NAIROBI;
use crate::envelope::DarajaError;
use crate::records::{RequestRecord, Status};
use crate::sim::{Endpoint, PushRequest, Sim};

const PUSH_FIELDS: &[&str] = &[
    "BusinessShortCode",
    "Password",
    "Timestamp",
    "TransactionType",
    "Amount",
    "PartyA",
    "PartyB",
    "PhoneNumber",
    "CallBackURL",
    "AccountReference",
    "TransactionDesc",
];
const QUERY_FIELDS: &[&str] = &["BusinessShortCode", "Password", "Timestamp", "CheckoutRequestID"];

/// `GET /oauth/v1/generate?grant_type=client_credentials` with Basic auth.
pub(crate) async fn oauth(
    State(sim): State<Sim>,
    method: Method,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET {
        return DarajaError::method_not_allowed(method.as_str()).into_response();
    }
    if let Err(e) = sim.take_injected(Endpoint::Oauth) {
        return e.into_response();
    }
    if !params.iter().any(|(k, v)| k == "grant_type" && v == "client_credentials") {
        return DarajaError::invalid_grant_type().into_response();
    }
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(encoded) = auth.strip_prefix("Basic ") else {
        return DarajaError::invalid_authentication().into_response();
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok();
    let Some((key, secret)) =
        decoded.as_deref().and_then(|d| std::str::from_utf8(d).ok()).and_then(|s| s.split_once(':'))
    else {
        return DarajaError::invalid_authentication().into_response();
    };
    match sim.issue_token(key, secret) {
        // `expires_in` is a string on the live API.
        Ok((token, secs)) => Json(json!({"access_token": token, "expires_in": secs.to_string()})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /mpesa/stkpush/v1/processrequest`.
pub(crate) async fn push(State(sim): State<Sim>, request: Request<Body>) -> Response {
    let (request_json, unknown, outcome) = match read(&sim, request, Endpoint::StkPush).await {
        Ok((body, unknown)) => {
            let outcome = push_fields(&sim, &body).and_then(|req| sim.accept_push(req));
            (
                Value::Object(body),
                unknown,
                outcome.map(|txn| {
                    json!({
                        "MerchantRequestID": txn.merchant_request_id,
                        "CheckoutRequestID": txn.checkout_request_id,
                        "ResponseCode": "0",
                        "ResponseDescription": "Success. Request accepted for processing",
                        "CustomerMessage": "Success. Request accepted for processing",
                    })
                }),
            )
        }
        Err((raw, e)) => (raw, Vec::new(), Err(e)),
    };
    let response = answer(&sim, "stk_push", request_json, unknown, outcome);
    late(&sim, Endpoint::StkPush, response).await
}

/// `POST /mpesa/stkpushquery/v1/query`.
pub(crate) async fn query(State(sim): State<Sim>, request: Request<Body>) -> Response {
    let (request_json, unknown, outcome) = match read(&sim, request, Endpoint::StkQuery).await {
        Ok((body, unknown)) => {
            let outcome = query_fields(&sim, &body);
            (Value::Object(body), unknown, outcome)
        }
        Err((raw, e)) => (raw, Vec::new(), Err(e)),
    };
    let response = answer(&sim, "stk_query", request_json, unknown, outcome);
    late(&sim, Endpoint::StkQuery, response).await
}

/// Holds an answer back by an injected delay (the work behind it is already done).
pub(crate) async fn late(sim: &Sim, endpoint: Endpoint, response: Response) -> Response {
    if let Some(delay) = sim.take_delay(endpoint) {
        tokio::time::sleep(delay).await;
    }
    response
}

pub(crate) fn answer(
    sim: &Sim,
    endpoint: &'static str,
    request: Value,
    unknown_fields: Vec<String>,
    outcome: Result<Value, DarajaError>,
) -> Response {
    let (status, response) = match outcome {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (e.status, e.body()),
    };
    sim.record_request(RequestRecord {
        endpoint,
        at: OffsetDateTime::now_utc(),
        request,
        unknown_fields,
        status: status.as_u16(),
        response: response.clone(),
    });
    (status, Json(response)).into_response()
}

pub(crate) type Read = Result<(Map<String, Value>, Vec<String>), (Value, DarajaError)>;

/// Method, token, injected errors, rate limit, content type, size and JSON shape: the checks
/// before any field. The rate limit counts every authenticated request, valid or not.
pub(crate) async fn read(sim: &Sim, request: Request<Body>, endpoint: Endpoint) -> Read {
    let documented = match endpoint {
        Endpoint::StkQuery => QUERY_FIELDS,
        Endpoint::StkPush | Endpoint::Oauth => PUSH_FIELDS,
        Endpoint::Reversal | Endpoint::TransactionStatus => crate::initiator::documented_fields(endpoint),
        other => crate::c2b::documented_fields(other),
    };
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return Err((Value::Null, DarajaError::method_not_allowed(parts.method.as_str())));
    }
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    sim.check_token(bearer.trim()).map_err(|e| (Value::Null, e))?;
    sim.take_injected(endpoint).map_err(|e| (Value::Null, e))?;
    let admitted = match endpoint {
        Endpoint::StkQuery => sim.admit_query(),
        Endpoint::StkPush => sim.admit_push(),
        _ => Ok(()),
    };
    admitted.map_err(|e| (Value::Null, e))?;
    // A body too large to be a request is "not JSON", which Daraja reports as below.
    let bytes = axum::body::to_bytes(body, sim.config().max_body_bytes)
        .await
        .map_err(|_| (Value::String("<body over the size limit>".into()), DarajaError::invalid("BusinessShortCode")))?;
    let raw = || Value::String(String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]).into_owned());
    let json_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/json"));
    // Daraja's FAQ: a body not sent as JSON is reported as an invalid BusinessShortCode.
    if !json_type {
        return Err((raw(), DarajaError::invalid("BusinessShortCode")));
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err((raw(), DarajaError::invalid("BusinessShortCode")));
    };
    let unknown: Vec<String> = body.keys().filter(|k| !documented.contains(&k.as_str())).cloned().collect();
    if sim.config().strict_fields
        && let Some(field) = unknown.first()
    {
        let e = DarajaError::invalid(field);
        return Err((Value::Object(body), e));
    }
    Ok((body, unknown))
}

/// A number, or a string of digits.
pub(crate) fn digits(body: &Map<String, Value>, field: &str) -> Option<String> {
    match body.get(field)? {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) if !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.trim().to_owned())
        }
        _ => None,
    }
}

pub(crate) fn shortcode(body: &Map<String, Value>, field: &str) -> Result<u32, DarajaError> {
    digits(body, field)
        .filter(|d| (5..=7).contains(&d.len()) && !d.starts_with('0'))
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| DarajaError::invalid(field))
}

pub(crate) fn msisdn(body: &Map<String, Value>, field: &str) -> Result<u64, DarajaError> {
    digits(body, field)
        .filter(|d| d.len() == 12 && (d.starts_with("2547") || d.starts_with("2541")))
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| DarajaError::invalid(field))
}

pub(crate) fn amount(body: &Map<String, Value>, max: u64) -> Result<u64, DarajaError> {
    let whole = |s: &str| -> Option<u64> {
        let (w, f) = s.trim().split_once('.').unwrap_or((s.trim(), "0"));
        let ok =
            !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) && !f.is_empty() && f.bytes().all(|b| b == b'0');
        if ok { w.parse().ok() } else { None }
    };
    let value = match body.get("Amount") {
        Some(Value::Number(n)) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15).map(|f| f as u64))
        }
        Some(Value::String(s)) => whole(s),
        _ => None,
    };
    value.filter(|a| (1..=max).contains(a)).ok_or_else(|| DarajaError::invalid("Amount"))
}

pub(crate) fn text<'a>(body: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

fn timestamp(sim: &Sim, body: &Map<String, Value>) -> Result<String, DarajaError> {
    let invalid = || DarajaError::invalid("Timestamp");
    let ts = match body.get("Timestamp") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(invalid()),
    };
    if ts.len() != 14 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let format = format_description!("[year][month][day][hour][minute][second]");
    let instant = time::PrimitiveDateTime::parse(&ts, format).map_err(|_| invalid())?.assume_offset(NAIROBI);
    let skew = sim.config().max_timestamp_skew;
    if !skew.is_zero() && (OffsetDateTime::now_utc() - instant).unsigned_abs() > skew {
        return Err(invalid());
    }
    Ok(ts)
}

fn callback_url(body: &Map<String, Value>) -> Result<String, DarajaError> {
    url_field(body, "CallBackURL")
}

/// A URL Daraja will call: absolute http(s) with a host, printable, none of the banned words.
pub(crate) fn url_field(body: &Map<String, Value>, field: &str) -> Result<String, DarajaError> {
    const BANNED: &[&str] = &["m-pesa", "mpesa", "safaricom", "exe", "cmd", "sql", "query"];
    let invalid = || DarajaError::invalid(field);
    let url = text(body, field).ok_or_else(invalid)?;
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(invalid)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let lower = url.to_ascii_lowercase();
    if host.is_empty() || !url.bytes().all(|b| b.is_ascii_graphic()) || BANNED.iter().any(|w| lower.contains(w)) {
        return Err(invalid());
    }
    Ok(url.to_owned())
}

/// Checks that `Password` is base64(shortcode + passkey + timestamp) for a known shortcode.
fn credentials(sim: &Sim, body: &Map<String, Value>, shortcode: u32, ts: &str) -> Result<(), DarajaError> {
    let passkey = sim.passkey(shortcode).ok_or_else(DarajaError::merchant_unknown)?;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{shortcode}{passkey}{ts}"));
    if text(body, "Password") == Some(expected.as_str()) { Ok(()) } else { Err(DarajaError::wrong_credentials()) }
}

fn push_fields(sim: &Sim, body: &Map<String, Value>) -> Result<PushRequest, DarajaError> {
    let config = sim.config();
    let shortcode = shortcode(body, "BusinessShortCode")?;
    let ts = timestamp(sim, body)?;
    let transaction_type = match text(body, "TransactionType") {
        Some(t @ ("CustomerPayBillOnline" | "CustomerBuyGoodsOnline")) => t.to_owned(),
        _ => return Err(DarajaError::invalid("TransactionType")),
    };
    let amount = amount(body, config.max_amount)?;
    // Daraja does not require PartyA to equal PhoneNumber; the prompt goes to PhoneNumber.
    msisdn(body, "PartyA")?;
    let party_b = self::shortcode(body, "PartyB")?;
    let phone = msisdn(body, "PhoneNumber")?;
    let callback_url = callback_url(body)?;
    let account_reference = match text(body, "AccountReference") {
        Some(r) if !r.trim().is_empty() => r.to_owned(),
        _ => return Err(DarajaError::invalid("AccountReference")),
    };
    let description = match body.get("TransactionDesc") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(DarajaError::invalid("TransactionDesc")),
    };
    credentials(sim, body, shortcode, &ts)?;
    Ok(PushRequest {
        shortcode,
        transaction_type,
        amount,
        party_b,
        phone,
        callback_url,
        account_reference,
        description,
    })
}

fn query_fields(sim: &Sim, body: &Map<String, Value>) -> Result<Value, DarajaError> {
    let shortcode = shortcode(body, "BusinessShortCode")?;
    let ts = timestamp(sim, body)?;
    let id = match text(body, "CheckoutRequestID") {
        Some(id) if !id.trim().is_empty() => id.trim(),
        _ => return Err(DarajaError::invalid("CheckoutRequestID")),
    };
    credentials(sim, body, shortcode, &ts)?;
    let txn = sim.query(shortcode, id)?;
    if txn.status == Status::Open {
        return Err(DarajaError::being_processed());
    }
    Ok(json!({
        "ResponseCode": "0",
        // Sic: the live API spells it with three s's.
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": txn.merchant_request_id,
        "CheckoutRequestID": txn.checkout_request_id,
        "ResultCode": txn.result_code.unwrap_or_default(),
        "ResultDesc": txn.result_desc.unwrap_or_default(),
    }))
}
