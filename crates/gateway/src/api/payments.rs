//! `/v1/payments`: create (idempotent), show, list with filters and cursor pagination, timeline.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, Merchant};
use crate::payment::{Payment, PaymentId, Status};
use crate::service::{CreatePayment, Gateway};
use crate::store::PaymentFilter;

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 visible ASCII characters")
    })
}

pub(super) async fn create(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    headers: HeaderMap,
    body: Result<Json<CreatePayment>, JsonRejection>,
) -> Result<Response, ApiError> {
    let idempotency_key = idempotency_key(&headers)?;
    let Json(request) = body.map_err(super::json_rejection)?;
    let created = gateway.create_payment(&key, idempotency_key, request).await?;
    let mut response = (StatusCode::CREATED, Json(gateway.shown(created.payment))).into_response();
    if created.replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn payment_id(raw: &str) -> Result<PaymentId, ApiError> {
    PaymentId::parse(raw).ok_or_else(|| ApiError::not_found("payment"))
}

/// A payment with its refunds, as `GET /v1/payments/{id}` shows it.
#[derive(serde::Serialize)]
pub(super) struct Shown {
    #[serde(flatten)]
    payment: Payment,
    refunds: Vec<crate::refund::Refund>,
}

pub(super) async fn show(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    Path(id): Path<String>,
) -> Result<Json<Shown>, ApiError> {
    let id = payment_id(&id)?;
    let payment = gateway.store().payment(&id, Some(&key.id)).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    let refunds = gateway.store().refunds_of(&id).await?;
    Ok(Json(Shown { payment: gateway.shown(payment), refunds }))
}

pub(super) async fn timeline(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = payment_id(&id)?;
    if gateway.store().payment(&id, Some(&key.id)).await?.is_none() {
        return Err(ApiError::not_found("payment"));
    }
    let events = gateway.store().events(&id).await?;
    Ok(Json(serde_json::json!({ "events": events })))
}

/// `GET /v1/payments/{id}/events`: server-sent events. One `payment` event with the payment
/// now, then one on every change, ending after the payment is final. Woken at once by changes
/// in this process; re-reads every 2 s so changes settled by another replica are seen too.
pub(super) async fn events(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    Path(id): Path<String>,
) -> Result<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt as _;
    let id = payment_id(&id)?;
    let first = gateway.store().payment(&id, Some(&key.id)).await?.ok_or_else(|| ApiError::not_found("payment"))?;
    // Shown as `GET /v1/payments/{id}` shows it (the Paybill details while they apply).
    let shown = gateway.clone();
    let stream = crate::follow::payment(gateway, first)
        .map(move |p| Ok(Event::default().event("payment").json_data(shown.shown(p)).unwrap_or_default()));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub(super) async fn webhooks(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = payment_id(&id)?;
    if gateway.store().payment(&id, Some(&key.id)).await?.is_none() {
        return Err(ApiError::not_found("payment"));
    }
    let events = gateway.store().webhook_events(&id).await?;
    Ok(Json(serde_json::json!({ "events": events })))
}

pub(super) async fn redeliver(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let well_formed =
        id.strip_prefix("evt_").is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed || !gateway.store().redeliver_webhook(&id, Some(&key.id), gateway.now()).await? {
        return Err(ApiError::not_found("webhook event"));
    }
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    phone: Option<String>,
    reference: Option<String>,
    receipt: Option<String>,
    created_from: Option<String>,
    created_to: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

fn instant(field: &'static str, text: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(crate::time_fmt::to_millis)
        .map_err(|_| {
            ApiError::invalid_field(
                field,
                format!("{field}: {text:?} is not an RFC 3339 time such as 2026-01-31T09:00:00Z"),
            )
        })
}

pub(super) async fn list(
    State(gateway): State<Gateway>,
    Merchant(key): Merchant,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "limit: must be between 1 and 500"));
    }
    let status = q
        .status
        .map(|s| {
            Status::parse(&s)
                .ok_or_else(|| ApiError::invalid_field("status", "status: use pending, paid, failed or expired"))
        })
        .transpose()?;
    let phone = q
        .phone
        .map(|p| {
            daraja::Msisdn::parse(&p).map_err(|e| ApiError::invalid_field("phone", format!("phone: {}", e.reason)))
        })
        .transpose()?;
    let after = q
        .cursor
        .map(|c| {
            c.split_once('_')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, PaymentId::parse(id)?.as_str().to_owned())))
                .ok_or_else(|| {
                    ApiError::invalid_field("cursor", "cursor: pass back next_cursor from the previous page")
                })
        })
        .transpose()?;
    let filter = PaymentFilter {
        api_key_id: Some(key.id),
        status,
        phone,
        reference: q.reference,
        receipt: q.receipt,
        created_from: q.created_from.as_deref().map(|t| instant("created_from", t)).transpose()?,
        created_to: q.created_to.as_deref().map(|t| instant("created_to", t)).transpose()?,
        after,
        limit: limit + 1,
        ..PaymentFilter::default()
    };
    let mut page: Vec<Payment> =
        gateway.store().payments(filter).await?.into_iter().map(|p| gateway.shown(p)).collect();
    let next_cursor = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|p| format!("{}_{}", p.created_at, p.id))
    } else {
        None
    };
    Ok(Json(serde_json::json!({ "data": page, "next_cursor": next_cursor })))
}
