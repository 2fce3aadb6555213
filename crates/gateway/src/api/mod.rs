//! The HTTP API: merchant endpoints under `/v1`, Daraja's callbacks under `/callbacks`, and
//! health checks.

mod callbacks;
mod error;
mod payments;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};

pub use error::ApiError;

use crate::service::Gateway;
use crate::store::ApiKey;

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/v1/payments", post(payments::create).get(payments::list))
        .route("/v1/payments/{id}", get(payments::show))
        .route("/v1/payments/{id}/timeline", get(payments::timeline))
        .route("/callbacks/stk/{token}", post(callbacks::stk))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .layer(DefaultBodyLimit::max(daraja::callback::MAX_CALLBACK_BYTES))
        .with_state(gateway)
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

/// The API key a request authenticated with.
#[derive(Debug, Clone)]
pub struct Merchant(pub ApiKey);

impl FromRequestParts<Gateway> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        crate::keys::authenticate(gateway.store(), bearer).await?.map(Merchant).ok_or_else(ApiError::unauthorized)
    }
}
