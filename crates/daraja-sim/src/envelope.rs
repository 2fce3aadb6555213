//! Daraja's error envelope: `{"requestId", "errorCode", "errorMessage"}` with the HTTP status
//! that goes with the code's first segment (reference §2.8). Every refusal the simulator makes
//! goes through here, so no request ever gets a bare 500 or an HTML error page.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer in Daraja's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DarajaError {
    /// HTTP status.
    pub status: StatusCode,
    /// `errorCode`.
    pub code: &'static str,
    /// `errorMessage`.
    pub message: String,
}

impl DarajaError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// `400.002.02 Bad Request - Invalid <field>`.
    pub fn invalid(field: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "400.002.02", format!("Bad Request - Invalid {field}"))
    }

    /// Any code and message, for the rarer envelopes (C2B and Pull Transactions).
    pub fn other(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, code, message)
    }

    /// `404.001.03 Invalid Access Token`.
    pub fn invalid_token() -> Self {
        Self::new(StatusCode::NOT_FOUND, "404.001.03", "Invalid Access Token")
    }

    /// `400.008.01`: wrong authorization scheme, key or secret at OAuth.
    pub fn invalid_authentication() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "400.008.01", "Invalid Authentication passed")
    }

    /// `400.008.02`: missing or wrong `grant_type`.
    pub fn invalid_grant_type() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "400.008.02", "Invalid grant type passed")
    }

    /// `404.001.01 Resource not found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "404.001.01", "Resource not found")
    }

    /// `405.001 <METHOD> Method Not Allowed`.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "405.001", format!("{method} Method Not Allowed"))
    }

    /// `500.001.1001` with one of its many messages.
    pub fn processing(message: &str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "500.001.1001", message)
    }

    /// `500.001.1001 Wrong credentials`.
    pub fn wrong_credentials() -> Self {
        Self::processing("Wrong credentials")
    }

    /// `500.001.1001 Merchant does not exist`.
    pub fn merchant_unknown() -> Self {
        Self::processing("Merchant does not exist")
    }

    /// `500.001.1001 Unable to lock subscriber…`.
    pub fn subscriber_locked() -> Self {
        Self::processing("Unable to lock subscriber, a transaction is already in process for the current subscriber")
    }

    /// `500.001.1001 The transaction is being processed` (STK Query while the prompt is open).
    pub fn being_processed() -> Self {
        Self::processing("The transaction is being processed")
    }

    /// `500.003.02 Error Occurred: Spike Arrest Violation`.
    pub fn spike_arrest() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "500.003.02", "Error Occurred: Spike Arrest Violation")
    }

    /// `500.003.02 System is busy. Please try again in few minutes.`
    pub fn system_busy() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "500.003.02", "System is busy. Please try again in few minutes.")
    }

    /// `500.003.03 Quota Violation`.
    pub fn quota_violation() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "500.003.03", "Quota Violation")
    }

    /// `500.003.1001 Internal Server Error`.
    pub fn internal_error() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "500.003.1001", "Internal Server Error")
    }

    /// An error by the name the control API uses: `system_busy`, `spike_arrest`, `quota`,
    /// `internal`, `invalid_token`, `wrong_credentials`, `merchant_unknown`, `subscriber_locked`.
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "system_busy" => Self::system_busy(),
            "spike_arrest" => Self::spike_arrest(),
            "quota" => Self::quota_violation(),
            "internal" => Self::internal_error(),
            "invalid_token" => Self::invalid_token(),
            "wrong_credentials" => Self::wrong_credentials(),
            "merchant_unknown" => Self::merchant_unknown(),
            "subscriber_locked" => Self::subscriber_locked(),
            _ => return None,
        })
    }

    /// The envelope as JSON, with a fresh `requestId`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "requestId": crate::ids::request_id(&mut fastrand::Rng::new()),
            "errorCode": self.code,
            "errorMessage": self.message,
        })
    }
}

impl IntoResponse for DarajaError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
