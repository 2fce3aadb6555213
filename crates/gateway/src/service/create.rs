//! Creating a payment: validate into typed values; replay an earlier request with the same
//! idempotency key; check the phone has no live prompt and the rate limits; write the row
//! `pending` (with the hash of a fresh callback token) **before** calling Daraja; push;
//! record how the push went.

use super::*;

/// What a merchant sends to create a payment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    /// Whole shillings.
    pub amount: serde_json::Value,
    /// The customer's phone in any common form.
    pub phone: String,
    /// Up to 12 characters, shown in the prompt.
    pub account_reference: String,
    /// Up to 13 characters.
    pub description: String,
    /// Anything the merchant wants back (a JSON object, at most 4 KiB).
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Where this payment's webhooks go.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Where the receipt goes.
    #[serde(default)]
    pub customer_email: Option<String>,
}

/// A request that passed validation, in canonical form (its JSON is hashed for idempotency).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Valid {
    pub(crate) amount: Amount,
    pub(crate) phone: Msisdn,
    #[serde(serialize_with = "reference_text")]
    pub(crate) account_reference: AccountReference,
    #[serde(serialize_with = "description_text")]
    pub(crate) description: TransactionDesc,
    pub(crate) metadata: serde_json::Value,
    pub(crate) webhook_url: Option<String>,
    pub(crate) customer_email: Option<String>,
}

// The hash of a request is of its JSON as it has always been written: both fields as text.
fn reference_text<S: serde::Serializer>(v: &AccountReference, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn description_text<S: serde::Serializer>(v: &TransactionDesc, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// Why a payment could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A field is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// API field name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The idempotency key was used with a different request.
    #[error("this Idempotency-Key was used for a different request; use a new key for a new payment")]
    IdempotencyKeyReused,
    /// The phone has a prompt open.
    #[error("a payment prompt is already open on this phone; wait for the customer to answer it (about {0} s)")]
    PhoneBusy(u64),
    /// Too many pushes.
    #[error("{0}")]
    RateLimited(String, u64),
    /// The checkout session is already paid: nothing more to push.
    #[error("this checkout is already paid")]
    AlreadyPaid,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A created (or replayed) payment.
#[derive(Debug, Clone)]
pub struct Created {
    /// The payment.
    pub payment: Payment,
    /// Whether it was an earlier request replayed by its idempotency key.
    pub replayed: bool,
}

fn invalid(field: &'static str, message: impl Into<String>) -> CreateError {
    CreateError::Invalid { field, message: message.into() }
}

impl Gateway {
    fn validate(&self, req: CreatePayment) -> Result<Valid, CreateError> {
        let max = self.inner.settings.payments.max_amount;
        let amount = match &req.amount {
            // 100 and 100.0 are the same number (JSON has one number type); 100.5 is refused.
            serde_json::Value::Number(n) => n
                .as_u64()
                .or_else(|| Amount::whole_shillings(n.as_f64()?))
                .ok_or_else(|| invalid("amount", format!("{n} is not a whole number of shillings (1 to {max})")))?,
            other => return Err(invalid("amount", format!("must be a number of shillings, not {other}"))),
        };
        let amount = Amount::with_max(amount, max).map_err(|e| invalid("amount", e.reason))?;
        let phone = Msisdn::parse(&req.phone).map_err(|e| invalid("phone", e.reason))?;
        let reference =
            AccountReference::parse(&req.account_reference).map_err(|e| invalid("account_reference", e.reason))?;
        let description = TransactionDesc::parse(&req.description).map_err(|e| invalid("description", e.reason))?;
        let metadata = req.metadata.unwrap_or_else(|| serde_json::json!({}));
        if !metadata.is_object() {
            return Err(invalid("metadata", "must be a JSON object"));
        }
        if metadata.to_string().len() > 4096 {
            return Err(invalid("metadata", "is larger than 4 KiB"));
        }
        if let Some(url) = &req.webhook_url {
            let parsed =
                url::Url::parse(url).map_err(|e| invalid("webhook_url", format!("{url:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(invalid("webhook_url", "must be an absolute http(s) URL"));
            }
            crate::outbound::check_url(&parsed, self.inner.settings.webhooks.allow_private)
                .map_err(|e| invalid("webhook_url", e))?;
        }
        if let Some(email) = &req.customer_email {
            let ok = email.len() <= 254
                && email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
                && !email.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok || email.parse::<lettre::Address>().is_err() {
                return Err(invalid("customer_email", format!("{email:?} is not an email address")));
            }
        }
        Ok(Valid {
            amount,
            phone,
            account_reference: reference,
            description,
            metadata,
            webhook_url: req.webhook_url,
            customer_email: req.customer_email,
        })
    }

    /// Checks a payment request as `create_payment` does, without creating anything.
    pub(crate) fn validate_payment(&self, req: CreatePayment) -> Result<Valid, CreateError> {
        self.validate(req)
    }

    /// Creates a payment and sends the STK push.
    pub async fn create_payment(
        &self,
        key: &ApiKey,
        idempotency_key: Option<String>,
        req: CreatePayment,
    ) -> Result<Created, CreateError> {
        self.create_payment_for_key(&key.id, idempotency_key, req, None).await
    }

    /// Creates a payment for the API key with this id and sends the STK push.
    #[tracing::instrument(skip_all, fields(payment_id))]
    pub(crate) async fn create_payment_for_key(
        &self,
        api_key_id: &str,
        idempotency_key: Option<String>,
        req: CreatePayment,
        checkout: Option<CheckoutAttempt>,
    ) -> Result<Created, CreateError> {
        let valid = self.validate(req)?;
        let request_hash = ids::sha256_hex(serde_json::to_string(&valid).unwrap_or_default().as_bytes());
        let now = self.now();

        // A retry of an earlier request is answered before any limit applies to it.
        if let Some(key_text) = &idempotency_key
            && let Some(existing) = self.replay(api_key_id, key_text, &request_hash).await?
        {
            return Ok(existing);
        }
        let payments = &self.inner.settings.payments;
        if !self.inner.push_limit.try_acquire() {
            return Err(CreateError::RateLimited("the gateway is sending too many prompts right now".into(), 1));
        }

        let token = ids::random_hex(16);
        let push = StkPush {
            phone: valid.phone,
            amount: valid.amount,
            account_reference: valid.account_reference.clone(),
            description: valid.description.clone(),
            callback_url: CallbackUrl::parse(&format!("{}/callbacks/stk/{token}", self.inner.public_url))
                .map_err(|e| invalid("callback_url", e.reason))?,
        };
        let id = crate::payment::PaymentId::generate();
        tracing::Span::current().record("payment_id", id.as_str());
        let new = NewPayment {
            id: id.clone(),
            api_key_id: api_key_id.to_owned(),
            idempotency_key,
            request_hash: request_hash.clone(),
            amount: valid.amount,
            phone: valid.phone,
            account_reference: valid.account_reference.as_str().to_owned(),
            description: valid.description.as_str().to_owned(),
            metadata: valid.metadata,
            webhook_url: valid.webhook_url,
            customer_email: valid.customer_email,
            callback_token_hash: ids::sha256_hex(token.as_bytes()),
            now,
            live_prompt_since: now - ms(payments.prompt_lifetime),
            per_phone_since: now - 3_600_000,
            per_phone_limit: payments.pushes_per_phone_per_hour,
            checkout,
        };
        // The rest runs in its own task: if the request is dropped midway, a stored payment is
        // still pushed, never left without its push.
        let this = self.clone();
        tokio::spawn(async move { this.insert_and_push(new, request_hash, push).await }.in_current_span())
            .await
            .map_err(|e| StoreError::unavailable(format_args!("the payment task stopped: {e}")))?
    }

    /// Stores a new payment (with its checkout session told in the same commit), then sends
    /// the push and records Daraja's answer.
    async fn insert_and_push(
        &self,
        new: NewPayment,
        request_hash: String,
        push: StkPush,
    ) -> Result<Created, CreateError> {
        let prompt_lifetime = self.inner.settings.payments.prompt_lifetime;
        let payment = match self.inner.store.insert_payment(new).await? {
            Inserted::Created(p) => p,
            // Two requests with one key raced; the other one created it and pushes.
            Inserted::Existing(p, hash) if hash == request_hash => return Ok(Created { payment: p, replayed: true }),
            Inserted::Existing(..) => return Err(CreateError::IdempotencyKeyReused),
            Inserted::PhoneBusy => return Err(CreateError::PhoneBusy(prompt_lifetime.as_secs())),
            Inserted::TooManyForPhone(count) => {
                return Err(CreateError::RateLimited(
                    format!("this phone has had {count} payment prompts in the last hour; try again later"),
                    600,
                ));
            }
        };
        let payment = self.push(payment.id, push).await?;
        Ok(Created { payment, replayed: false })
    }

    /// Sends the push for a stored payment and records Daraja's answer.
    async fn push(&self, id: crate::payment::PaymentId, push: StkPush) -> Result<Payment, StoreError> {
        let first_check_at = self.now() + ms(self.inner.settings.reconciliation.first_query_after);
        self.inner.metrics.payment_created();
        let started = std::time::Instant::now();
        let pushed = self.inner.daraja.stk_push(&self.inner.merchant, &push).await;
        let label = pushed.as_ref().map_or_else(crate::metrics::error_label, |_| "ok".to_owned());
        self.inner.metrics.daraja("stk_push", &label, started.elapsed());
        let result = match pushed {
            Ok(accepted) => PushResult::Accepted {
                merchant_request_id: accepted.merchant_request_id,
                checkout_request_id: accepted.checkout_request_id,
                first_check_at,
            },
            Err(e) => push_failure(&e, first_check_at),
        };
        let payment = self.inner.store.record_push(&id, result, self.now()).await?;
        self.changed(&payment.id);
        Ok(payment)
    }

    async fn replay(
        &self,
        api_key_id: &str,
        idempotency_key: &str,
        hash: &str,
    ) -> Result<Option<Created>, CreateError> {
        match self.inner.store.payment_by_idempotency_key(api_key_id, idempotency_key).await? {
            Some((payment, stored_hash)) if stored_hash == hash => Ok(Some(Created { payment, replayed: true })),
            Some(_) => Err(CreateError::IdempotencyKeyReused),
            None => Ok(None),
        }
    }
}

/// Maps a failed push to what is known about it.
fn push_failure(e: &daraja::Error, first_check_at: i64) -> PushResult {
    match e {
        daraja::Error::Api(api) => PushResult::Refused { code: api.code.clone(), message: api.message.clone() },
        daraja::Error::Transport { may_have_reached_safaricom: false, .. } => {
            PushResult::Refused { code: "daraja_unreachable".into(), message: e.to_string() }
        }
        daraja::Error::InvalidInput(field) => {
            PushResult::Refused { code: "invalid_request".into(), message: field.to_string() }
        }
        daraja::Error::Transport { .. } | daraja::Error::Decode { .. } => {
            PushResult::Unknown { error: e.to_string(), first_check_at }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The idempotency hash of a request is of this JSON: payments stored by earlier versions
    /// must still match their retries, so its form never changes with the types behind it.
    #[test]
    fn a_valid_request_is_hashed_in_the_form_it_always_had() {
        let valid = Valid {
            amount: Amount::new(100).unwrap(),
            phone: Msisdn::parse("0712345678").unwrap(),
            account_reference: AccountReference::parse("INV-1").unwrap(),
            description: TransactionDesc::parse("Tickets").unwrap(),
            metadata: serde_json::json!({"seat": "A1"}),
            webhook_url: None,
            customer_email: Some("a@example.com".into()),
        };
        assert_eq!(
            serde_json::to_string(&valid).unwrap(),
            r#"{"amount":100,"phone":"254712345678","account_reference":"INV-1","description":"Tickets","metadata":{"seat":"A1"},"webhook_url":null,"customer_email":"a@example.com"}"#
        );
    }
}
