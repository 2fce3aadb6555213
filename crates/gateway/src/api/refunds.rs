//! `/v1/payments/{id}/refunds` and `/v1/refunds/{id}` for merchants;
//! `/callbacks/refund/{token}/{kind}` where Daraja answers about a refund's reversal, and
//! `/callbacks/receipt-check/{token}/{kind}` where it answers a receipt check.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::callbacks::{Received, allowed_source, receive};
use super::payments::idempotency_key;
use super::{ApiError, Merchant};
use crate::payment::PaymentId;
use crate::refund::{Refund, RefundId};
use crate::service::{Gateway, RefundRequest};
use crate::store::{MessageKind, StoreError};

/// `POST /v1/payments/{id}/refunds`: refunds the whole payment (once; `Idempotency-Key` as
/// for payments).
pub(super) async fn create(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RefundRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let Json(request) = body.map_err(super::json_rejection)?;
    let id = PaymentId::parse(&id).ok_or_else(|| ApiError::not_found("payment"))?;
    let created = gateway.request_refund(&id, Some(&key.id), idempotency_key, "api", request).await?;
    let mut response = (StatusCode::CREATED, Json(created.refund)).into_response();
    if created.replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /v1/refunds/{id}`.
pub(super) async fn show(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    Path(id): Path<String>,
) -> Result<Json<Refund>, ApiError> {
    let id = RefundId::parse(&id).ok_or_else(|| ApiError::not_found("refund"))?;
    let refund = gateway.store().refund(&id, Some(&key.id)).await?;
    refund.map(Json).ok_or_else(|| ApiError::not_found("refund"))
}

/// `POST /callbacks/refund/{token}/{kind}`: a Reversal result, a queue timeout, or a
/// Transaction Status answer about a refund. Stored and applied before it is acknowledged;
/// a secret that is no refund's is refused without storing anything.
pub(super) async fn message(
    State(gateway): State<Gateway>,
    Path((token, kind)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(kind) = MessageKind::parse(&kind) else { return Err(refused(&gateway)) };
    let body = secret_message(&gateway, &token, peer, &headers, body).await?;
    acknowledged(&gateway, gateway.ingest_refund_message(&token, kind, body).await.map(|s| s.is_some()))
}

/// `POST /callbacks/receipt-check/{token}/{kind}`: Transaction Status's answer about a
/// receipt check (`result`) or its queue timeout (`timeout`). Stored before it is
/// acknowledged; a secret that is no check's is refused without storing anything.
pub(super) async fn check_answer(
    State(gateway): State<Gateway>,
    Path((token, kind)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let timeout = match kind.as_str() {
        "result" => false,
        "timeout" => true,
        _ => return Err(refused(&gateway)),
    };
    let body = secret_message(&gateway, &token, peer, &headers, body).await?;
    acknowledged(&gateway, gateway.ingest_check_answer(&token, timeout, body).await.map(|c| c.is_some()))
}

fn refused(gateway: &Gateway) -> ApiError {
    gateway.metrics().callback_refused();
    ApiError::not_found("callback endpoint")
}

/// The checks before a message to a secret URL is read: a secret of the right shape (32
/// lower-case hex characters), an allowed source, a body of at most 64 KiB.
async fn secret_message(
    gateway: &Gateway,
    token: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, ApiError> {
    if token.len() != 32 || !token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(refused(gateway));
    }
    allowed_source(gateway, headers, peer)?;
    match receive(body, headers).await? {
        Received::Whole(body) => Ok(body),
        Received::TooLarge { .. } => Err(ApiError::payload_too_large()),
    }
}

/// Daraja's acknowledgement once the message is stored; 404 when no request has its secret
/// (nothing stored); 503 when it could not be stored (not acknowledged: Daraja sends it again).
fn acknowledged(gateway: &Gateway, stored: Result<bool, StoreError>) -> Result<Response, ApiError> {
    match stored {
        Ok(true) => {
            Ok((StatusCode::OK, [("content-type", "application/json")], daraja::result::ACKNOWLEDGEMENT)
                .into_response())
        }
        Ok(false) => Err(refused(gateway)),
        Err(e) => {
            tracing::error!(error = %e, "message to a secret URL not stored");
            Err(ApiError::from(StoreError::unavailable(e)))
        }
    }
}
