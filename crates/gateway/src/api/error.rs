//! The HTTP edge's one error type: a stable machine-readable `code`, a human `message`, the
//! offending `field` for validation errors, opaque 500s, and the cause logged once.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::service::CreateError;
use crate::store::StoreError;

/// An error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, retry_after: None }
    }

    /// 400 for a request that is not what the endpoint takes.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no {what} with that id"))
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send your API key as `Authorization: Bearer lipa_sk_…` (create one with `lipa keys create --name shop`)",
        )
    }

    /// 413 for a body over the limit every endpoint has.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {} KiB; send less (metadata is limited to 4 KiB)",
                daraja::callback::MAX_CALLBACK_BYTES / 1024
            ),
        )
    }

    /// 422 naming the field.
    pub fn invalid_field(field: &'static str, message: impl Into<String>) -> Self {
        Self { field: Some(field), ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message) }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// An error and its causes in one line, each said once: logged once, at the edge.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !text.ends_with(&said) {
            text = format!("{text}: {said}");
        }
        next = cause.source();
    }
    text
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::error!(error = %chain(&cause), "storage unavailable");
                Self {
                    retry_after: Some(1),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_unavailable",
                        "storage is unavailable; retry shortly",
                    )
                }
            }
            StoreError::Conflict(cause) => {
                tracing::warn!(error = %chain(&cause), "uniqueness conflict");
                Self::new(StatusCode::CONFLICT, "conflict", "the request conflicts with stored data; retry it")
            }
            StoreError::Corrupt(cause) => {
                tracing::error!(error = %chain(&cause), "unreadable stored data");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Invalid { field, message } => Self::invalid_field(field, format!("{field}: {message}")),
            CreateError::IdempotencyKeyReused => {
                Self::new(StatusCode::CONFLICT, "idempotency_key_reused", e.to_string())
            }
            CreateError::PhoneBusy(secs) => {
                Self { retry_after: Some(secs), ..Self::new(StatusCode::CONFLICT, "phone_busy", e.to_string()) }
            }
            CreateError::RateLimited(message, secs) => {
                Self { retry_after: Some(secs), ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message) }
            }
            CreateError::AlreadyPaid => Self::new(StatusCode::CONFLICT, "already_paid", e.to_string()),
            CreateError::Store(e) => e.into(),
        }
    }
}

impl From<crate::service::RefundError> for ApiError {
    fn from(e: crate::service::RefundError) -> Self {
        match e {
            crate::service::RefundError::NotConfigured => {
                Self::new(StatusCode::CONFLICT, "refunds_not_configured", e.to_string())
            }
            crate::service::RefundError::Invalid(field, message) => Self::invalid_field(field, message),
            crate::service::RefundError::NoPayment => Self::not_found("payment"),
            crate::service::RefundError::Refused(r @ crate::settlement::refund::Refusal::PartialAmount { .. }) => {
                // The amount is well formed; it conflicts with the payment's.
                Self { field: Some("amount"), ..Self::new(StatusCode::CONFLICT, r.code(), r.message()) }
            }
            crate::service::RefundError::Refused(r) => Self::new(StatusCode::CONFLICT, r.code(), r.message()),
            crate::service::RefundError::KeyReused => {
                Self::new(StatusCode::CONFLICT, "idempotency_key_reused", e.to_string())
            }
            crate::service::RefundError::Store(e) => e.into(),
        }
    }
}

/// Gives an error answer that is not yet in the JSON error envelope (the HTTP framework's
/// own: 405 for a wrong method, 413, 415, 400 and 422 from its extractors) the envelope, with
/// the framework's words as the message. Answers already in JSON, pages and successes pass.
pub(crate) async fn envelope(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::payload_too_large().into_response();
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned());
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = match (status, text) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            match parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()) {
                Some(allowed) => format!("this endpoint takes {allowed} only"),
                None => "this endpoint does not take this method".to_owned(),
            }
        }
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, _) => {
            "send the body as JSON with `Content-Type: application/json`".to_owned()
        }
        (s, _) if s.is_server_error() => "internal error".to_owned(),
        (_, Ok(text)) if !text.is_empty() => text,
        (s, _) => s.canonical_reason().unwrap_or("bad request").to_lowercase(),
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        let mut response = (self.status, Json(serde_json::json!({ "error": body }))).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
