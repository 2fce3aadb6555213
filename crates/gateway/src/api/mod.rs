//! The HTTP API: merchant endpoints under `/v1`, Daraja's callbacks under `/callbacks`, and
//! health checks.

mod c2b;
mod callbacks;
mod checkout;
mod error;
mod home;
pub mod openapi;
mod payments;
mod refunds;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse as _;
use axum::routing::{get, post};

pub(crate) use callbacks::{client_address, client_network};
pub use error::ApiError;

use crate::service::Gateway;
use crate::store::ApiKey;

/// The merchant API and Daraja's callbacks, on any state the gateway can be taken from.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Gateway: FromRef<S>,
{
    // The API's errors, the HTTP framework's own included, are all in the JSON envelope.
    let api = Router::new()
        .route("/v1/payments", post(payments::create).get(payments::list))
        .route("/v1/payments/{id}", get(payments::show))
        .route("/v1/payments/{id}/timeline", get(payments::timeline))
        .route("/v1/payments/{id}/webhooks", get(payments::webhooks))
        .route("/v1/payments/{id}/events", get(payments::events))
        .route("/v1/payments/{id}/refunds", post(refunds::create))
        .route("/v1/refunds/{id}", get(refunds::show))
        .route("/v1/webhook-events/{id}/redeliver", post(payments::redeliver))
        .route("/v1/c2b-transactions", get(c2b::list))
        .route("/v1/checkout-sessions", post(checkout::create))
        .route("/v1/checkout-sessions/{id}", get(checkout::show))
        .route("/", get(home::home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi::json()) }),
        )
        .layer(axum::middleware::map_response(error::envelope));
    // The hot path, outside that layer: its handler answers every error in the envelope
    // itself, and its only framework error is a wrong method.
    let callbacks = Router::new().route(
        "/callbacks/stk/{token}",
        post(callbacks::stk).fallback(|| async {
            let mut answer =
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint takes POST only")
                    .into_response();
            answer.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            answer
        }),
    );
    let c2b = Router::new()
        .route("/callbacks/c2b/{token}/confirmation", post(c2b::confirmation))
        .route("/callbacks/c2b/{token}/validation", post(c2b::validation))
        .route("/callbacks/refund/{token}/{kind}", post(refunds::message))
        .route("/callbacks/receipt-check/{token}/{kind}", post(refunds::check_answer))
        // A wrong method answers in the envelope too.
        .layer(axum::middleware::map_response(error::envelope));
    api.merge(callbacks).merge(c2b)
}

/// The answer to a path no route takes.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// Gives every request an id (the caller's `X-Request-Id` if it is sane, else a new one),
/// runs it inside a span with the method and the matched route (never the raw path: callback
/// paths hold secret tokens), and returns the id in `X-Request-Id`.
pub async fn request_span(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use tracing::Instrument as _;
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(|| crate::ids::random_hex(8), str::to_owned);
    let route = request.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route = %route, status = tracing::field::Empty);
    let mut response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn metrics(State(gateway): State<Gateway>) -> Result<impl axum::response::IntoResponse, ApiError> {
    let by_status = gateway.store().count_by_status().await?;
    let body = gateway.metrics().render(&by_status);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}

async fn ready(State(gateway): State<Gateway>) -> Result<&'static str, ApiError> {
    gateway.store().ping().await?;
    Ok("ready")
}

/// A request body that is not the JSON expected: 413 when too large, else 400, with the
/// parser's words on what is wrong.
pub(crate) fn json_rejection(e: axum::extract::rejection::JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::payload_too_large();
    }
    ApiError::bad_request("invalid_json", e.body_text())
}

/// The API key a request authenticated with.
#[derive(Debug, Clone)]
pub struct Merchant(pub ApiKey);

impl<S: Send + Sync> FromRequestParts<S> for Merchant
where
    Gateway: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let gateway = Gateway::from_ref(state);
        // The scheme is case-insensitive (RFC 9110 §11.1), spaces may follow it.
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim_start())
            .ok_or_else(ApiError::unauthorized)?;
        let key = crate::keys::authenticate(gateway.store(), bearer).await?.ok_or_else(ApiError::unauthorized)?;
        gateway.key_used(&key.id);
        Ok(Merchant(key))
    }
}
