//! `POST /callbacks/stk/{token}`: Safaricom's STK callback, the hot path.
//!
//! The body is stored whatever it holds, and applied in the same commit; only then is it
//! acknowledged. If the store cannot commit, the answer is 503 and nothing is acknowledged,
//! so the sender may retry.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;

use super::ApiError;
use crate::service::Gateway;
use crate::settlement::Outcome;
use crate::store::StoreError;

/// The network a client's address stands for: the address, or for IPv6 its /64 (one
/// subscriber's, who can choose any address in it). Limits per client count by it.
pub(crate) fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        other => other.to_canonical(),
    }
}

/// The sender's address: the TCP peer, or the right-most address in the trusted proxy's header
/// (the one that proxy appended; entries left of it are whatever the sender claimed). A
/// header sent on several lines is one list in their order (RFC 9110), so the right-most
/// value is the last line's: a sender's own line comes first, and the proxy appends after it.
/// A last value that is not an address means the proxy is not doing its job: the peer's
/// address is used, which the allowlist then judges.
pub(crate) fn client_address(gateway: &Gateway, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    gateway
        .settings()
        .callbacks
        .trusted_proxy_header
        .as_deref()
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or_else(|| peer.ip())
}

/// What of an over-size body is stored for review.
const OVERSIZE_EXCERPT_BYTES: usize = 512;

/// A callback body: whole, or, past [`daraja::callback::MAX_CALLBACK_BYTES`], its first bytes
/// and its size (from `Content-Length`, else what was read before reading stopped).
pub(super) enum Received {
    Whole(Vec<u8>),
    TooLarge { first: Vec<u8>, len: usize },
}

pub(super) async fn receive(body: Body, headers: &HeaderMap) -> Result<Received, ApiError> {
    let limit = daraja::callback::MAX_CALLBACK_BYTES;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(2048).min(limit + 1));
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("body_unreadable", "the request body could not be read"))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() > limit {
            let len = declared.unwrap_or(bytes.len()).max(bytes.len());
            bytes.truncate(OVERSIZE_EXCERPT_BYTES);
            return Ok(Received::TooLarge { first: bytes, len });
        }
    }
    Ok(Received::Whole(bytes))
}

/// The sender's address, if it may send callbacks (the allowlist, when enforced); an
/// address outside it is logged within a budget either way.
pub(super) fn allowed_source(gateway: &Gateway, headers: &HeaderMap, peer: SocketAddr) -> Result<IpAddr, ApiError> {
    let ip = client_address(gateway, headers, peer);
    let allowlist = &gateway.settings().callbacks;
    if !allowlist.allowlist.is_empty() && !allowlist.allowlist.contains(&ip) {
        let (log, left_out) = gateway.log_foreign_source();
        if allowlist.enforce_allowlist {
            if log {
                tracing::warn!(source = %ip, left_out_last_minute = left_out, "callback refused: source address not in the allowlist");
            }
            gateway.metrics().callback_refused();
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_source",
                "this address may not send callbacks",
            ));
        }
        if log {
            tracing::warn!(
                source = %ip,
                left_out_last_minute = left_out,
                "callback from an address outside the allowlist (accepted: not enforced)"
            );
        }
    }
    Ok(ip)
}

pub(super) async fn stk(
    State(gateway): State<Gateway>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Tokens are 32 lower-case hex characters; anything else cannot be ours.
    if token.len() != 32 || !token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        gateway.metrics().callback_refused();
        return Err(ApiError::not_found("callback endpoint"));
    }
    let ip = allowed_source(&gateway, &headers, peer)?;
    let received = receive(body, &headers).await?;
    let too_large = matches!(received, Received::TooLarge { .. });
    let (body, parsed) = match received {
        Received::Whole(body) => {
            let parsed = daraja::callback::parse(&body);
            (body, parsed)
        }
        // Counted and recorded for review like any body that is not a callback, with only
        // its first bytes kept; the sender is told it is too large.
        Received::TooLarge { first, len } => (first, Err(daraja::CallbackError::TooLarge { len })),
    };
    let stored = match gateway.ingest_callback(&token, body, parsed, Some(ip.to_string())).await {
        Ok(stored) => stored,
        Err(e) => {
            // Not stored, so not acknowledged: whatever went wrong, Safaricom should retry.
            gateway.metrics().callback_refused();
            tracing::error!(error = %e, "callback not stored");
            return Err(ApiError::from(StoreError::unavailable(e)));
        }
    };
    if too_large {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "a callback body is at most {} bytes; this one was recorded for review",
                daraja::callback::MAX_CALLBACK_BYTES
            ),
        ));
    }
    if stored.outcome == Outcome::Malformed {
        let body = serde_json::json!({"ResultCode": 1, "ResultDesc": "Rejected: the body is not an STK callback; it was stored for review"});
        return Ok((StatusCode::BAD_REQUEST, Json(body)).into_response());
    }
    Ok((StatusCode::OK, [("content-type", "application/json")], daraja::callback::ACKNOWLEDGEMENT).into_response())
}
