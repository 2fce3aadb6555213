//! Refunds: taking a request, sending its Reversal to Daraja, hearing Daraja's answers at the
//! refund's secret URLs, and asking Transaction Status about a reversal whose result did not
//! come. A Reversal is sent at most once per refund: an answer lost on the way is never
//! followed by a second Reversal (it could move money twice), only by questions.

use daraja::reversal::{Remarks, Reversal};
use daraja::status::{StatusQuery, Target};
use serde::Deserialize;

use super::Gateway;
use crate::payment::PaymentId;
use crate::refund::{Refund, RefundId, SendState};
use crate::settlement::refund::Refusal;
use crate::store::{
    MessageKind, MessageStored, NewRefund, Parsed, RefundInserted, RefundMessage, SendOutcome, StoreError,
};
use crate::time_fmt::ms;

/// `POST /v1/payments/{id}/refunds`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Why (1 to 200 characters): kept with the refund and sent to Daraja as its remarks.
    pub reason: String,
    /// The amount; only the payment's whole amount is accepted (leave it out). A JSON number
    /// (`450` or `450.0`: JSON has one number type).
    #[serde(default)]
    pub amount: Option<serde_json::Number>,
}

/// Why a refund was not taken.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    /// No initiator is configured.
    #[error(
        "refunds are not configured: set MPESA_INITIATOR_NAME and MPESA_INITIATOR_PASSWORD (and MPESA_CERTIFICATE in production)"
    )]
    NotConfigured,
    /// The request itself is wrong: the field, and what is wrong.
    #[error("{1}")]
    Invalid(&'static str, String),
    /// The payment does not exist (for this key).
    #[error("no such payment")]
    NoPayment,
    /// The rules refused it.
    #[error("{}", .0.message())]
    Refused(Refusal),
    /// The idempotency key was used for another request.
    #[error("the Idempotency-Key was used with a different request; use a new key for a new refund")]
    KeyReused,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A taken refund, and whether it was taken earlier with the same idempotency key.
#[derive(Debug, Clone)]
pub struct RefundCreated {
    /// The refund.
    pub refund: Refund,
    /// Whether this answer repeats an earlier request's.
    pub replayed: bool,
}

impl Gateway {
    /// Whether refunds are set up (an initiator is configured).
    pub fn refunds_enabled(&self) -> bool {
        self.inner.initiator.is_some()
    }

    /// The secret of a refund's URLs: derived from the installation's secret, so the URLs of
    /// a refund can be built again (for a Transaction Status question) without storing it.
    fn refund_token(&self, id: &RefundId) -> Option<String> {
        let key = self.inner.c2b_path.get()?;
        Some(crate::ids::hex(&crate::webhooks::hmac(key, &format!("refund:{id}")))[..32].to_owned())
    }

    fn refund_url(&self, id: &RefundId, kind: MessageKind) -> Result<daraja::CallbackUrl, daraja::Error> {
        let token = self.refund_token(id).ok_or_else(|| daraja::InvalidField {
            field: "ResultURL",
            reason: "the store has not been read yet".into(),
        })?;
        Ok(daraja::CallbackUrl::parse(&format!("{}/callbacks/refund/{token}/{}", self.public_url(), kind.as_str()))?)
    }

    /// Takes a refund request for `payment_id` and sends its Reversal. `api_key_id` scopes
    /// the payment to a merchant's key (staff pass `None`); `requested_by` is `api` or
    /// `admin:<user>`.
    pub async fn request_refund(
        &self,
        payment_id: &PaymentId,
        api_key_id: Option<&str>,
        idempotency_key: Option<String>,
        requested_by: &str,
        request: RefundRequest,
    ) -> Result<RefundCreated, RefundError> {
        let reason = request.reason.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        if reason.is_empty() || request.reason.chars().count() > 200 {
            return Err(RefundError::Invalid(
                "reason",
                "reason must be 1 to 200 characters, not only spaces, e.g. \"screening cancelled\"".into(),
            ));
        }
        let amount = match &request.amount {
            None => None,
            Some(n) => Some(
                n.as_u64()
                    .or_else(|| n.as_f64().and_then(daraja::Amount::whole_shillings))
                    .filter(|a| *a <= u64::from(daraja::Amount::DEFAULT_MAX))
                    .ok_or_else(|| {
                        RefundError::Invalid(
                            "amount",
                            "amount must be whole shillings up to 250,000; leave it out to refund the whole payment"
                                .into(),
                        )
                    })?,
            ),
        };
        if !self.refunds_enabled() {
            return Err(RefundError::NotConfigured);
        }
        let id = RefundId::generate();
        let token = self.refund_token(&id).ok_or(RefundError::NotConfigured)?;
        let request_hash = crate::ids::sha256_hex(format!("{payment_id}|{amount:?}|{reason}").as_bytes());
        let now = self.now();
        let inserted = self
            .store()
            .insert_refund(NewRefund {
                id,
                payment_id: payment_id.clone(),
                api_key_id: api_key_id.map(str::to_owned),
                idempotency_key,
                request_hash: request_hash.clone(),
                amount,
                reason: reason.to_owned(),
                requested_by: requested_by.to_owned(),
                token_hash: crate::ids::sha256_hex(token.as_bytes()),
                // If this process stops before sending, the worker sends it.
                send_by: now + 30_000,
                now,
            })
            .await?;
        match inserted {
            RefundInserted::Created(refund) => {
                tracing::info!(refund_id = %refund.id, payment_id = %payment_id, "refund requested");
                self.changed(payment_id);
                // In a task of its own: a client that hangs up must not stop the send between
                // recording that it began and recording its answer.
                let (gateway, id) = (self.clone(), refund.id.clone());
                let sent = tokio::spawn(async move { gateway.send_refund(&id).await });
                let sent =
                    sent.await.map_err(|e| StoreError::unavailable(format!("the refund's send stopped: {e}")))??;
                Ok(RefundCreated { refund: sent.unwrap_or(refund), replayed: false })
            }
            RefundInserted::Existing(refund, hash) if hash == request_hash => {
                Ok(RefundCreated { refund, replayed: true })
            }
            RefundInserted::Existing(..) => Err(RefundError::KeyReused),
            RefundInserted::Refused(refusal) => Err(RefundError::Refused(refusal)),
            RefundInserted::NoPayment => Err(RefundError::NoPayment),
        }
    }

    /// Sends a new refund's Reversal (once: `None` when it was sent already or is being sent)
    /// and records the answer.
    pub async fn send_refund(&self, id: &RefundId) -> Result<Option<Refund>, StoreError> {
        let Some(refund) = self.store().begin_refund_send(id, self.now()).await? else { return Ok(None) };
        let retry_at = self.now() + 60_000;
        let outcome = match self.reversal_of(&refund).await {
            Ok(request) => match self.daraja().0.reversal(&request).await {
                Ok(accepted) => SendOutcome::Accepted {
                    originator_conversation_id: accepted.originator_conversation_id,
                    conversation_id: accepted.conversation_id,
                    check_at: self.now() + ms(self.settings().refunds.status_after),
                },
                Err(e) => outcome_of_error(&e, retry_at),
            },
            Err(Unsendable::Store(e)) => SendOutcome::NotSent { why: e.to_string(), retry_at },
            Err(Unsendable::Daraja(e)) => outcome_of_error(&e, retry_at),
        };
        match &outcome {
            SendOutcome::Accepted { .. } => tracing::info!(refund_id = %id, "reversal queued by Daraja"),
            SendOutcome::NotSent { why, .. } => tracing::warn!(refund_id = %id, why, "reversal not sent; trying again"),
            SendOutcome::Refused { code, message } => {
                tracing::warn!(refund_id = %id, code, message, "reversal refused")
            }
            SendOutcome::Unknown { why } => tracing::warn!(refund_id = %id, why, "reversal sent; its answer was lost"),
        }
        let refund = self.store().record_refund_send(id, outcome, self.now()).await?;
        self.changed(&refund.payment_id);
        Ok(Some(refund))
    }

    async fn reversal_of(&self, refund: &Refund) -> Result<Reversal, Unsendable> {
        let initiator = self
            .inner
            .initiator
            .clone()
            .ok_or_else(|| daraja::InvalidField { field: "Initiator", reason: "refunds are not configured".into() })?;
        let payment = self.store().payment(&refund.payment_id, None).await.map_err(Unsendable::Store)?;
        let receipt = payment.and_then(|p| p.receipt).ok_or_else(|| daraja::InvalidField {
            field: "TransactionID",
            reason: "the payment has no receipt".into(),
        })?;
        // Daraja's remarks are one line of printable text.
        let reason: String = refund.reason.chars().filter(|c| !c.is_control()).take(90).collect();
        Ok(Reversal {
            initiator,
            transaction_id: receipt,
            amount: daraja::Amount::new(refund.amount)?,
            receiver_party: self.daraja().1.business_short_code(),
            receiver_identifier_type: self.settings().refunds.identifier_type,
            result_url: self.refund_url(&refund.id, MessageKind::Result)?,
            queue_timeout_url: self.refund_url(&refund.id, MessageKind::Timeout)?,
            remarks: Remarks::parse(&format!("Refund: {reason}"))?,
            occasion: Some(refund.id.to_string()),
        })
    }

    /// Stores what Daraja sent to a refund's secret URL and applies it; `None` when the
    /// secret is no refund's (nothing is stored). Answers only after the commit.
    pub async fn ingest_refund_message(
        &self,
        token: &str,
        kind: MessageKind,
        body: Vec<u8>,
    ) -> Result<Option<MessageStored>, StoreError> {
        let parsed = match kind {
            MessageKind::Result | MessageKind::Status => daraja::result::parse(&body).map(Parsed::Result),
            MessageKind::Timeout | MessageKind::StatusTimeout => {
                daraja::result::parse_timeout(&body).map(Parsed::Timeout)
            }
        };
        let reversal_conversation = match (&parsed, kind) {
            (Ok(Parsed::Result(r)), MessageKind::Result) => Some(r.originator_conversation_id.clone()),
            (Ok(Parsed::Timeout(t)), MessageKind::Timeout) => t.originator_conversation_id.clone(),
            _ => None,
        }
        .filter(|c| !c.is_empty() && c.len() <= 64);
        let now = self.now();
        let settings = &self.settings().refunds;
        // The reversal's own queue timeout is asked about soon; an answer that leaves it open
        // is asked about again at the usual interval.
        let ask_at = if kind == MessageKind::Timeout { now + 5_000 } else { now + ms(settings.status_interval) };
        let stored = self
            .store()
            .settle_refund_message(RefundMessage {
                token_hash: crate::ids::sha256_hex(token.as_bytes()),
                kind,
                body,
                parsed: parsed.map_err(|e| e.to_string()),
                ask_at,
                reversal_conversation,
                max_status_checks: settings.max_status_checks,
                now,
            })
            .await?;
        if let Some(s) = &stored {
            tracing::info!(
                refund_id = %s.refund.id,
                kind = kind.as_str(),
                outcome = s.outcome.as_str(),
                status = s.refund.status.as_str(),
                "refund message stored"
            );
            self.changed(&s.refund.payment_id);
        }
        Ok(stored)
    }

    /// One round of the refunds worker: refunds whose send never happened are sent; those
    /// whose result has not come (or timed out in Daraja's queue) are asked about with
    /// Transaction Status, up to `max_status_checks` times, then left for staff; sends whose
    /// process died are marked unknown. Returns how many refunds it took a step for.
    pub async fn refund_round(&self) -> Result<u64, StoreError> {
        if !self.refunds_enabled() || self.inner.c2b_path.get().is_none() {
            // Without the installation's secret no refund URL can be built (call
            // `load_c2b_path` at start-up): better to leave refunds waiting than to fail them.
            return Ok(0);
        }
        let settings = &self.settings().refunds;
        let now = self.now();
        let stale_before = now - 3 * ms(self.settings().mpesa.request_timeout) - 60_000;
        for id in self.store().stale_refund_sends(stale_before).await? {
            let why = "the process sending it stopped before its answer was stored".to_owned();
            self.store().record_refund_send(&id, SendOutcome::Unknown { why }, now).await?;
        }
        let due = self.store().claim_due_refunds(now, now + 60_000, 50).await?;
        let mut steps = 0;
        for refund in due {
            steps += 1;
            match refund.send_state {
                SendState::New => {
                    self.send_refund(&refund.id).await?;
                }
                SendState::Accepted => {
                    let asked = refund.status_checks + 1;
                    let (next, note) = match self.ask_about(&refund).await {
                        Ok(()) if asked >= settings.max_status_checks => (
                            None,
                            format!(
                                "asked Transaction Status {asked} times and no answer settled it: check the M-Pesa statement"
                            ),
                        ),
                        Ok(()) => (Some(now + ms(settings.status_interval)), String::new()),
                        Err(e) if asked >= settings.max_status_checks => (
                            None,
                            format!(
                                "Transaction Status could not be asked {asked} times (last: {e}): check the M-Pesa statement"
                            ),
                        ),
                        Err(e) => (
                            Some(now + ms(settings.status_interval)),
                            format!("Transaction Status could not be asked: {e}"),
                        ),
                    };
                    self.store().refund_status_asked(&refund.id, next, &note, now).await?;
                }
                // Refused, unknown or sending: nothing to do automatically.
                _ => self.store().refund_status_asked(&refund.id, None, "", now).await?,
            }
        }
        Ok(steps)
    }

    /// Asks Transaction Status about a refund's reversal (by its `OriginatorConversationID`).
    async fn ask_about(&self, refund: &Refund) -> Result<(), daraja::Error> {
        let initiator = self
            .inner
            .initiator
            .clone()
            .ok_or_else(|| daraja::InvalidField { field: "Initiator", reason: "refunds are not configured".into() })?;
        let conversation = refund.originator_conversation_id.clone().ok_or_else(|| daraja::InvalidField {
            field: "OriginalConversationID",
            reason: "the reversal was never queued".into(),
        })?;
        let query = StatusQuery {
            initiator,
            target: Target::Conversation(conversation),
            party_a: self.daraja().1.business_short_code(),
            result_url: self.refund_url(&refund.id, MessageKind::Status)?,
            queue_timeout_url: self.refund_url(&refund.id, MessageKind::StatusTimeout)?,
            remarks: Remarks::parse("Refund status")?,
            occasion: Some(refund.id.to_string()),
        };
        self.daraja().0.transaction_status(&query).await.map(drop)
    }
}

/// Why a reversal could not even be built.
enum Unsendable {
    /// The payment could not be read: try again later.
    Store(StoreError),
    /// A value Daraja would refuse.
    Daraja(daraja::Error),
}

impl From<daraja::InvalidField> for Unsendable {
    fn from(e: daraja::InvalidField) -> Self {
        Self::Daraja(e.into())
    }
}

impl From<daraja::Error> for Unsendable {
    fn from(e: daraja::Error) -> Self {
        Self::Daraja(e)
    }
}

/// How a failed send ends. Not sent (tried again) when the reversal itself never left: the
/// access token or the connection failed. Refused (the refund fails) when Daraja said no
/// before queueing anything: a 4xx, an answer that is not an acceptance, a rate limit, or a
/// request Lipa could not build. Unknown (never sent again) whenever Daraja may have queued
/// it: no answer, or a 5xx that can come after the work was queued.
fn outcome_of_error(e: &daraja::Error, retry_at: i64) -> SendOutcome {
    use daraja::ApiErrorKind::{NotAccepted, QuotaExceeded, SpikeArrest, SystemBusy};
    match e {
        daraja::Error::InvalidInput(field) => {
            SendOutcome::Refused { code: "invalid_request".into(), message: field.to_string() }
        }
        daraja::Error::Transport { operation: "oauth", .. } | daraja::Error::Decode { operation: "oauth", .. } => {
            SendOutcome::NotSent { why: e.to_string(), retry_at }
        }
        daraja::Error::Api(api) if api.operation == "oauth" => SendOutcome::NotSent { why: e.to_string(), retry_at },
        daraja::Error::Transport { may_have_reached_safaricom: false, .. } => {
            SendOutcome::NotSent { why: e.to_string(), retry_at }
        }
        daraja::Error::Api(api)
            if api.status < 500 || matches!(api.kind, NotAccepted | SpikeArrest | QuotaExceeded | SystemBusy) =>
        {
            SendOutcome::Refused { code: api.code.clone(), message: api.message.clone() }
        }
        daraja::Error::Api(_) | daraja::Error::Transport { .. } | daraja::Error::Decode { .. } => {
            SendOutcome::Unknown { why: e.to_string() }
        }
    }
}
