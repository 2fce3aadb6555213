//! The shop's side of Lipa, as any merchant writes it: create a checkout session (server to
//! server, API key, idempotency key), ask for a session's state, and verify webhooks.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Talking to Lipa failed.
#[derive(Debug, thiserror::Error)]
#[error("Lipa: {0}")]
pub struct LipaError(String);

/// A Lipa client for one API key.
#[derive(Clone)]
pub struct Lipa {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

impl std::fmt::Debug for Lipa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lipa").field("base", &self.base).finish_non_exhaustive()
    }
}

/// What a checkout session is for.
#[derive(Debug, Clone)]
pub struct SessionRequest<'a> {
    /// Unique per attempt: a retried request makes no second session.
    pub idempotency_key: &'a str,
    /// KES.
    pub amount: u32,
    /// Shown in the M-Pesa prompt (at most 12 characters).
    pub account_reference: &'a str,
    /// At most 13 characters.
    pub description: &'a str,
    /// 12 digits.
    pub phone: &'a str,
    /// Back to the shop.
    pub return_url: &'a str,
    /// The shop's webhook endpoint.
    pub webhook_url: &'a str,
    /// Returned in webhooks.
    pub ticket_id: &'a str,
}

impl Lipa {
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, api_key: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .pool_idle_timeout(daraja::IDLE_CONNECTION_KEPT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, base: base.trim_end_matches('/').to_owned(), api_key: api_key.to_owned() }
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, LipaError> {
        let response =
            request.bearer_auth(&self.api_key).send().await.map_err(|e| LipaError(e.without_url().to_string()))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| LipaError(e.to_string()))?;
        if !status.is_success() {
            return Err(LipaError(format!("{status}: {}", body["error"]["message"].as_str().unwrap_or("no message"))));
        }
        Ok(body)
    }

    /// Creates a checkout session; returns its id and the URL to send the customer to.
    pub async fn create_session(&self, r: &SessionRequest<'_>) -> Result<(String, String), LipaError> {
        let body = json!({
            "amount": r.amount,
            "account_reference": r.account_reference,
            "description": r.description,
            "phone": r.phone,
            "success_url": r.return_url,
            "cancel_url": r.return_url,
            "webhook_url": r.webhook_url,
            "metadata": {"ticket_id": r.ticket_id},
        });
        let request = self
            .http
            .post(format!("{}/v1/checkout-sessions", self.base))
            .header("Idempotency-Key", r.idempotency_key)
            .json(&body);
        let session = self.call(request).await?;
        match (session["id"].as_str(), session["url"].as_str()) {
            (Some(id), Some(url)) => Ok((id.to_owned(), url.to_owned())),
            _ => Err(LipaError("the session has no id or url".into())),
        }
    }

    /// The id of a session's latest payment, if it has one.
    pub async fn session_payment_id(&self, session_id: &str) -> Result<Option<String>, LipaError> {
        let session = self.call(self.http.get(format!("{}/v1/checkout-sessions/{session_id}", self.base))).await?;
        Ok(session["payment_id"].as_str().map(str::to_owned))
    }

    /// Asks Lipa to refund a payment (whole); returns the refund's id. The same
    /// `idempotency_key` again gives the same refund.
    pub async fn refund(&self, payment_id: &str, reason: &str, idempotency_key: &str) -> Result<String, LipaError> {
        let request = self
            .http
            .post(format!("{}/v1/payments/{payment_id}/refunds", self.base))
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({"reason": reason}));
        let refund = self.call(request).await?;
        refund["id"].as_str().map(str::to_owned).ok_or_else(|| LipaError("the refund has no id".into()))
    }

    /// A session's latest payment, if it has one.
    pub async fn session_payment(&self, session_id: &str) -> Result<Option<Value>, LipaError> {
        let Some(payment_id) = self.session_payment_id(session_id).await? else { return Ok(None) };
        let payment = self.call(self.http.get(format!("{}/v1/payments/{payment_id}", self.base))).await?;
        Ok(Some(payment))
    }
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No or unreadable `Lipa-Signature`.
    #[error("missing or malformed Lipa-Signature header")]
    Malformed,
    /// The signature's time is outside the replay window.
    #[error("signature timestamp outside the replay window")]
    Stale,
    /// The HMAC does not match.
    #[error("signature does not match")]
    BadSignature,
}

/// Verifies `Lipa-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`:
/// the time within `window_secs` of `now_secs` (no replays of old events), the HMAC compared
/// in constant time.
pub fn verify(secret: &str, header: &str, body: &[u8], now_secs: i64, window_secs: i64) -> Result<(), WebhookError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = decode_hex(value),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return Err(WebhookError::Malformed) };
    if (now_secs - t).abs() > window_secs {
        return Err(WebhookError::Stale);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| WebhookError::BadSignature)?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&v1).map_err(|_| WebhookError::BadSignature)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={t},v1={hex}")
    }

    #[test]
    fn signatures_verify_only_with_the_secret_the_body_and_a_fresh_time() {
        let header = sign("whsec_1", 1_000, "{}");
        assert_eq!(verify("whsec_1", &header, b"{}", 1_100, 300), Ok(()));
        assert_eq!(verify("whsec_2", &header, b"{}", 1_100, 300), Err(WebhookError::BadSignature));
        assert_eq!(verify("whsec_1", &header, b"{ }", 1_100, 300), Err(WebhookError::BadSignature));
        assert_eq!(verify("whsec_1", &header, b"{}", 2_000, 300), Err(WebhookError::Stale));
        assert_eq!(verify("whsec_1", "t=abc", b"{}", 1_000, 300), Err(WebhookError::Malformed));
        assert_eq!(verify("whsec_1", "", b"{}", 1_000, 300), Err(WebhookError::Malformed));
    }
}
