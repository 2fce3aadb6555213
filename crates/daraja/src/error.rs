//! The client's one error type.
//!
//! Daraja's error envelope (`requestId`, `errorCode`, `errorMessage`) is kept whole and
//! classified into an [`ApiErrorKind`]. `500.001.1001` is overloaded by Daraja, so the kind is
//! decided from the message as well as the code (reference §2.8).

use std::fmt;

use crate::validation::InvalidField;

/// Everything that can go wrong calling Daraja.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value was refused before sending: nothing reached Safaricom.
    #[error(transparent)]
    InvalidInput(#[from] InvalidField),

    /// The HTTP exchange failed (connect, TLS, timeout, reset).
    #[error("{operation}: could not reach Daraja{}: {source}", if *.may_have_reached_safaricom { " (the request may have been received)" } else { "" })]
    Transport {
        /// Which call failed (`oauth`, `stk_push`, `stk_query`).
        operation: &'static str,
        /// Whether the request may have reached Safaricom before the failure. For a push this
        /// means a prompt may be on the customer's phone: do not blindly push again.
        may_have_reached_safaricom: bool,
        /// Whether the failure was a timeout.
        timed_out: bool,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// Daraja answered with its error envelope.
    #[error("{operation}: {0}", operation = .0.operation)]
    Api(ApiError),

    /// Daraja's answer could not be understood.
    #[error("{operation}: unexpected response from Daraja (HTTP {status}): {reason}; body: {body}")]
    Decode {
        /// Which call.
        operation: &'static str,
        /// HTTP status of the answer.
        status: u16,
        /// What was wrong with it.
        reason: String,
        /// The start of the body (at most 512 bytes, lossily decoded).
        body: String,
    },
}

impl Error {
    /// Whether sending the same call again is safe and may succeed (after a token refresh, a
    /// wait, or a back-off). Invalid input, wrong credentials and unknown merchants never will.
    /// A push or a reversal that may already have reached Safaricom is not retryable: a prompt
    /// may be on the customer's phone, or money on its way back, so learn its fate (callback,
    /// STK Query, the result URL, Transaction Status) instead of sending it again.
    pub fn is_retryable(&self) -> bool {
        let moves_money = |operation: &str| matches!(operation, "stk_push" | "reversal");
        match self {
            Self::InvalidInput(_) => false,
            Self::Transport { operation, may_have_reached_safaricom, .. } => {
                !(moves_money(operation) && *may_have_reached_safaricom)
            }
            Self::Api(api) if moves_money(api.operation) && api.status >= 500 => {
                // A 5xx may come after the work was queued; only rate limits are refusals.
                matches!(api.kind, ApiErrorKind::SpikeArrest | ApiErrorKind::QuotaExceeded | ApiErrorKind::SystemBusy)
            }
            Self::Api(api) => api.kind.is_retryable(api.status),
            Self::Decode { operation, status, .. } => *status >= 500 && !moves_money(operation),
        }
    }

    /// The classified kind, for Daraja's own errors.
    pub fn api_kind(&self) -> Option<&ApiErrorKind> {
        match self {
            Self::Api(api) => Some(&api.kind),
            _ => None,
        }
    }

    pub(crate) fn decode(operation: &'static str, status: u16, reason: impl Into<String>, body: &[u8]) -> Self {
        const MAX: usize = 512;
        let mut text = String::from_utf8_lossy(&body[..body.len().min(MAX)]).into_owned();
        if body.len() > MAX {
            text.push('…');
        }
        Self::Decode { operation, status, reason: reason.into(), body: text }
    }
}

/// Daraja's error envelope with its classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Which call (`oauth`, `stk_push`, `stk_query`).
    pub operation: &'static str,
    /// HTTP status.
    pub status: u16,
    /// Daraja's `requestId` (quote it to Safaricom support).
    pub request_id: String,
    /// Daraja's `errorCode`, e.g. `400.002.02`.
    pub code: String,
    /// Daraja's `errorMessage`.
    pub message: String,
    /// What it means.
    pub kind: ApiErrorKind,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Daraja error {} (HTTP {}): {}", self.code, self.status, self.message)?;
        if !self.request_id.is_empty() {
            write!(f, " [requestId {}]", self.request_id)?;
        }
        Ok(())
    }
}

/// What a Daraja error envelope means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// `404.001.03` (and relatives): the access token is expired, wrong or missing.
    InvalidToken,
    /// `400.008.01`: OAuth refused the authentication (wrong scheme, key or secret).
    InvalidAuthentication,
    /// `400.008.02`: OAuth grant type missing or wrong.
    InvalidGrantType,
    /// `400.002.02 Bad Request - Invalid <Field>`: the named field was refused.
    InvalidField(String),
    /// `500.001.1001 Wrong credentials`: password built from the wrong passkey, shortcode or timestamp.
    WrongCredentials,
    /// `500.001.1001 Merchant does not exist`: shortcode unknown in this environment.
    MerchantUnknown,
    /// `500.001.1001 Unable to lock subscriber…`: the customer has a prompt open already.
    SubscriberLocked,
    /// `500.001.1001 The transaction is being processed` outside a query.
    BeingProcessed,
    /// Query for a CheckoutRequestID Daraja does not know.
    UnknownCheckoutRequest,
    /// `500.003.02 Spike Arrest Violation`: too many requests per second.
    SpikeArrest,
    /// `500.003.03 Quota Violation`.
    QuotaExceeded,
    /// `500.003.02 System is busy`.
    SystemBusy,
    /// `500.003.1001 Internal Server Error`.
    Internal,
    /// `404.001.01 Resource not found`: wrong URL path.
    ResourceNotFound,
    /// `405.001`: wrong HTTP method.
    MethodNotAllowed,
    /// An HTTP 200 answer whose `ResponseCode` is not `"0"`.
    NotAccepted,
    /// C2B Register URL: the shortcode's URLs are already registered (production allows it once).
    UrlsAlreadyRegistered,
    /// Anything else.
    Other,
}

impl ApiErrorKind {
    /// Classifies an envelope by code and message.
    pub fn classify(code: &str, message: &str) -> Self {
        let msg = message.to_ascii_lowercase();
        let code = code.trim();
        if msg.contains("already registered") {
            return Self::UrlsAlreadyRegistered;
        }
        if msg.contains("invalid access token") || matches!(code, "404.001.03" | "404.001.04" | "401.002.01") {
            return Self::InvalidToken;
        }
        match code {
            "400.008.01" => return Self::InvalidAuthentication,
            "400.008.02" => return Self::InvalidGrantType,
            "404.001.01" => return Self::ResourceNotFound,
            "500.003.03" => return Self::QuotaExceeded,
            "500.003.1001" => return Self::Internal,
            _ if code.starts_with("405") => return Self::MethodNotAllowed,
            _ => {}
        }
        if msg.contains("checkoutrequestid") || msg.contains("transaction does not exist") {
            return Self::UnknownCheckoutRequest;
        }
        if code.starts_with("400.002")
            && let Some(field) = message.trim().strip_prefix("Bad Request - Invalid ")
        {
            return Self::InvalidField(field.trim().to_owned());
        }
        if msg.contains("wrong credentials") {
            Self::WrongCredentials
        } else if msg.contains("merchant does not exist") {
            Self::MerchantUnknown
        } else if msg.contains("unable to lock subscriber") {
            Self::SubscriberLocked
        } else if msg.contains("being processed") {
            Self::BeingProcessed
        } else if msg.contains("spike arrest") {
            Self::SpikeArrest
        } else if msg.contains("quota") {
            Self::QuotaExceeded
        } else if msg.contains("busy") {
            Self::SystemBusy
        } else if code.starts_with("500.003") {
            Self::Internal
        } else {
            Self::Other
        }
    }

    fn is_retryable(&self, status: u16) -> bool {
        match self {
            Self::InvalidToken
            | Self::SubscriberLocked
            | Self::BeingProcessed
            | Self::SpikeArrest
            | Self::QuotaExceeded
            | Self::SystemBusy
            | Self::Internal => true,
            Self::Other => status >= 500,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_envelope_has_its_kind() {
        use ApiErrorKind as K;
        let cases = [
            ("400.002.02", "Bad Request - Invalid BusinessShortCode", K::InvalidField("BusinessShortCode".into())),
            ("400.002.02", "Bad Request - Invalid Timestamp", K::InvalidField("Timestamp".into())),
            ("400.002.02", "Bad Request - Invalid Amount", K::InvalidField("Amount".into())),
            ("400.002.02", "Bad Request - Invalid PhoneNumber", K::InvalidField("PhoneNumber".into())),
            ("400.002.02", "Bad Request - Invalid CallBackURL", K::InvalidField("CallBackURL".into())),
            ("400.002.02", "Bad Request - Invalid CheckoutRequestID", K::UnknownCheckoutRequest),
            ("404.001.03", "Invalid Access Token", K::InvalidToken),
            ("404.001.04", "Invalid Authentication Header", K::InvalidToken),
            ("404.001.01", "Resource not found", K::ResourceNotFound),
            ("405.001", "GET Method Not Allowed", K::MethodNotAllowed),
            ("500.001.1001", "Merchant does not exist", K::MerchantUnknown),
            ("500.001.1001", "Wrong credentials", K::WrongCredentials),
            ("500.001.1001", "[MerchantValidate] - Wrong credentials", K::WrongCredentials),
            (
                "500.001.1001",
                "Unable to lock subscriber, a transaction is already in process for the current subscriber",
                K::SubscriberLocked,
            ),
            ("500.001.1001", "The transaction is being processed", K::BeingProcessed),
            ("500.001.1001", "The transaction does not exist", K::UnknownCheckoutRequest),
            ("500.003.02", "System is busy. Please try again in few minutes.", K::SystemBusy),
            ("500.003.02", "Error Occurred: Spike Arrest Violation", K::SpikeArrest),
            ("500.003.03", "Quota Violation", K::QuotaExceeded),
            ("500.003.1001", "Internal Server Error", K::Internal),
            ("400.008.01", "Invalid Authentication passed", K::InvalidAuthentication),
            ("400.008.02", "Invalid grant type passed", K::InvalidGrantType),
            ("999.999", "Something new", K::Other),
        ];
        for (code, message, kind) in cases {
            assert_eq!(ApiErrorKind::classify(code, message), kind, "{code} {message}");
        }
    }

    #[test]
    fn retryability() {
        let api = |status, code: &str, message: &str| {
            Error::Api(ApiError {
                operation: "stk_push",
                status,
                request_id: String::new(),
                code: code.into(),
                message: message.into(),
                kind: ApiErrorKind::classify(code, message),
            })
        };
        assert!(api(500, "500.003.02", "Error Occurred: Spike Arrest Violation").is_retryable());
        assert!(api(404, "404.001.03", "Invalid Access Token").is_retryable());
        assert!(!api(500, "500.001.1001", "Wrong credentials").is_retryable());
        assert!(!api(400, "400.002.02", "Bad Request - Invalid Amount").is_retryable());
        assert!(!Error::from(InvalidField::new("Amount", "x")).is_retryable());
        // A 5xx to a call that moves money may come after the work was queued.
        for operation in ["stk_push", "reversal"] {
            let e = |status, code: &str, message: &str| match api(status, code, message) {
                Error::Api(a) => Error::Api(ApiError { operation, ..a }),
                other => other,
            };
            assert!(!e(500, "500.003.1001", "Internal Server Error").is_retryable(), "{operation}");
            assert!(e(500, "500.003.02", "System is busy. Please try again in few minutes.").is_retryable());
        }
        let query = |code: &str, message: &str| match api(500, code, message) {
            Error::Api(a) => Error::Api(ApiError { operation: "transaction_status", ..a }),
            other => other,
        };
        assert!(query("500.003.1001", "Internal Server Error").is_retryable(), "a question may be asked again");
    }
}
