//! `/v1/checkout-sessions`: hosted checkout for merchants who redirect instead of pushing.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::payments::idempotency_key;
use super::{ApiError, Merchant};
use crate::checkout::{CreateSession, page_url};
use crate::service::Gateway;
use crate::store::CheckoutSession;

fn body(gateway: &Gateway, session: &CheckoutSession, status: Option<&str>) -> serde_json::Value {
    let mut value = serde_json::to_value(session).unwrap_or_default();
    value["url"] = page_url(gateway.public_url(), &session.id).into();
    value["payment_status"] = status.map_or(serde_json::Value::Null, Into::into);
    value
}

pub(super) async fn create(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    headers: HeaderMap,
    request: Result<Json<CreateSession>, JsonRejection>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let Json(request) = request.map_err(super::json_rejection)?;
    let (session, replayed) = gateway.create_checkout_session(&key, idempotency_key, request).await?;
    let mut response = (StatusCode::CREATED, Json(body(&gateway, &session, None))).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

pub(super) async fn show(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = gateway.store().checkout_session(&id).await?.filter(|s| s.api_key_id == key.id);
    let session = session.ok_or_else(|| ApiError::not_found("checkout session"))?;
    let status = match &session.payment_id {
        Some(pid) => gateway.store().payment(&crate::payment::PaymentId::from_db(pid.clone()), None).await?,
        None => None,
    }
    .map(|p| p.status.as_str());
    Ok(Json(body(&gateway, &session, status)))
}
