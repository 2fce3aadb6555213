//! `POST /callbacks/stk/{token}`: Safaricom's STK callback, the hot path.
//!
//! The body is stored whatever it holds, and applied in the same commit; only then is it
//! acknowledged. If the store cannot commit, the answer is 503 and nothing is acknowledged,
//! so the sender may retry.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::service::Gateway;
use crate::settlement::Outcome;

pub(super) async fn stk(
    State(gateway): State<Gateway>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Tokens are 32 lower-case hex characters; anything else cannot be ours.
    if token.len() != 32 || !token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ApiError::not_found("callback endpoint"));
    }
    let source = Some(peer.ip().to_string());
    let stored = gateway.ingest_callback(&token, body.to_vec(), source).await?;
    if stored.outcome == Outcome::Malformed {
        let body = serde_json::json!({"ResultCode": 1, "ResultDesc": "Rejected: the body is not an STK callback; it was stored for review"});
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    Ok((StatusCode::OK, [("content-type", "application/json")], daraja::callback::ACKNOWLEDGEMENT).into_response())
}
