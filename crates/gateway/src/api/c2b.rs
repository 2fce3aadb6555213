//! Paybill and Till payments (C2B): Daraja's confirmation and validation at
//! `/callbacks/c2b/{secret}/…`, and `GET /v1/c2b-transactions` for merchants.
//!
//! A confirmation is stored and applied in one commit and acknowledged only after it; if the
//! store cannot commit, the answer is 503 and Daraja may send it again (a copy is recorded once).

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::callbacks::{Received, allowed_source, receive};
use super::{ApiError, Merchant};
use crate::service::Gateway;
use crate::store::StoreError;

/// The token malformed C2B bodies are stored under (no payment has it), for review.
const MALFORMED_TOKEN: &str = "c2b";

/// The secret path segment, checked before anything else is read.
fn our_path(gateway: &Gateway, token: &str) -> Result<(), ApiError> {
    if gateway.is_c2b_path(token) {
        return Ok(());
    }
    gateway.metrics().callback_refused();
    Err(ApiError::not_found("callback endpoint"))
}

/// A body that is not a C2B payment: stored for review like a malformed STK callback (within
/// the same budget), and refused.
async fn malformed(gateway: &Gateway, body: Vec<u8>, why: daraja::CallbackError, source: String) -> Response {
    let too_large = matches!(why, daraja::CallbackError::TooLarge { .. });
    if let Err(e) = gateway.ingest_callback(MALFORMED_TOKEN, body, Err(why), Some(source)).await {
        tracing::error!(error = %e, "a malformed C2B body was not stored");
        return ApiError::from(StoreError::unavailable(e)).into_response();
    }
    let status = if too_large { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
    let body = serde_json::json!({"ResultCode": 1, "ResultDesc": "Rejected: the body is not a C2B payment; it was stored for review"});
    (status, Json(body)).into_response()
}

/// `POST /callbacks/c2b/{secret}/confirmation`.
pub(super) async fn confirmation(
    State(gateway): State<Gateway>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    our_path(&gateway, &token)?;
    let ip = allowed_source(&gateway, &headers, peer)?;
    let bytes = match receive(body, &headers).await? {
        Received::Whole(bytes) => bytes,
        Received::TooLarge { first, len } => {
            return Ok(malformed(&gateway, first, daraja::CallbackError::TooLarge { len }, ip.to_string()).await);
        }
    };
    let payment = match daraja::c2b::parse(&bytes) {
        Ok(payment) => payment,
        Err(why) => return Ok(malformed(&gateway, bytes, why, ip.to_string()).await),
    };
    // It parsed as JSON, so it is UTF-8.
    let body = String::from_utf8_lossy(&bytes).into_owned();
    if let Err(e) = gateway.ingest_confirmation(body, payment, "confirmation").await {
        // Not stored, so not acknowledged: Daraja should send it again.
        tracing::error!(error = %e, "C2B confirmation not stored");
        return Err(ApiError::from(StoreError::unavailable(e)));
    }
    Ok((StatusCode::OK, [("content-type", "application/json")], daraja::c2b::CONFIRMATION_ACK).into_response())
}

/// `POST /callbacks/c2b/{secret}/validation`: accept or refuse before the customer's money moves.
pub(super) async fn validation(
    State(gateway): State<Gateway>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    our_path(&gateway, &token)?;
    allowed_source(&gateway, &headers, peer)?;
    let answer = match receive(body, &headers).await? {
        Received::Whole(bytes) => match daraja::c2b::parse(&bytes) {
            Ok(payment) => gateway.validate_c2b(&payment).await.map_err(ApiError::from)?,
            // Nothing to look up: refused when validating, else let through as Daraja would.
            Err(_) if gateway.settings().c2b.validation => {
                daraja::c2b::Validation::Reject(daraja::c2b::RejectCode::OtherError)
            }
            Err(_) => daraja::c2b::Validation::Accept,
        },
        Received::TooLarge { .. } => daraja::c2b::Validation::Reject(daraja::c2b::RejectCode::OtherError),
    };
    Ok((StatusCode::OK, [("content-type", "application/json")], answer.to_json()).into_response())
}

/// The filters of `GET /v1/c2b-transactions`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

const STATUSES: [&str; 5] = ["applied", "same_as_stk", "unmatched", "assigned", "refunded_outside"];

/// `GET /v1/c2b-transactions?status=unmatched`: payments by hand, newest first.
pub(super) async fn list(
    State(gateway): State<Gateway>,
    Merchant(_): Merchant,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "limit: must be between 1 and 500"));
    }
    let status = q.status.as_deref();
    if let Some(status) = status.filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::invalid_field(
            "status",
            format!("status: {status:?} is not one of {}", STATUSES.join(", ")),
        ));
    }
    let after = q
        .cursor
        .map(|c| {
            c.split_once('_')
                .and_then(|(at, id)| {
                    Some((at.parse::<i64>().ok()?, daraja::ReceiptNumber::parse(id).ok()?.to_string()))
                })
                .ok_or_else(|| {
                    ApiError::invalid_field("cursor", "cursor: pass back next_cursor from the previous page")
                })
        })
        .transpose()?;
    let mut page = gateway.store().c2b_transactions(status, after, limit + 1).await?;
    let next_cursor = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|t| format!("{}_{}", t.received_at, t.trans_id))
    } else {
        None
    };
    Ok(Json(serde_json::json!({ "data": page, "next_cursor": next_cursor })))
}
