//! Hosted checkout sessions. A merchant creates a session (what to pay, where to send the
//! customer after) and redirects the customer to its page; the page asks for the phone,
//! creates the payment with the merchant's key, and follows it to success or failure. A
//! session can start several payment attempts ("send the prompt again"), one at a time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids;
use crate::payment::{Payment, PaymentId};
use crate::service::{CreateError, CreatePayment, Gateway};
use crate::store::{ApiKey, CheckoutSession, NewCheckoutSession, SessionInserted, StoreError};
use crate::time_fmt::ms;

/// What a merchant sends to create a checkout session.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Whole shillings.
    pub amount: serde_json::Value,
    /// Up to 12 characters, shown in the prompt.
    pub account_reference: String,
    /// Up to 13 characters; shown on the page.
    pub description: String,
    /// Where the customer goes after paying; `session_id=<id>` is added.
    pub success_url: String,
    /// Where the customer goes to give up.
    pub cancel_url: String,
    /// The customer's phone, if known: the page then only asks to confirm it.
    #[serde(default)]
    pub phone: Option<String>,
    /// Where the receipt goes.
    #[serde(default)]
    pub customer_email: Option<String>,
    /// Anything the merchant wants back on the payments' webhooks.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Where the payments' webhooks go.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// The canonical request, hashed for idempotency.
#[derive(Serialize)]
struct ValidSession<'a> {
    amount: u32,
    account_reference: &'a str,
    description: &'a str,
    success_url: &'a str,
    cancel_url: &'a str,
    phone: Option<&'a str>,
    customer_email: Option<&'a str>,
    metadata: &'a serde_json::Value,
    webhook_url: Option<&'a str>,
}

/// A session and its latest payment attempt, as the page shows it.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The session.
    pub session: CheckoutSession,
    /// Its latest payment, if one was started.
    pub payment: Option<Payment>,
}

/// How long a session's page lives.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a paid session's success page stays reachable after the session's lifetime.
const PAID_PAGE_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

fn absolute_url(field: &'static str, raw: &str) -> Result<(), CreateError> {
    let parsed = url::Url::parse(raw)
        .map_err(|e| CreateError::Invalid { field, message: format!("{raw:?} is not a URL: {e}") })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(CreateError::Invalid { field, message: "must be an absolute http(s) URL".into() });
    }
    Ok(())
}

/// The page address of a session.
pub fn page_url(public_url: &str, session_id: &str) -> String {
    format!("{public_url}/checkout/{session_id}")
}

/// `success_url` with `session_id` added to its query.
pub fn return_url(base: &str, session_id: &str) -> String {
    match url::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("session_id", session_id);
            url.to_string()
        }
        Err(_) => base.to_owned(),
    }
}

impl Gateway {
    /// Creates a checkout session; with an idempotency key a retry returns the same session.
    /// Returns the session and whether it was a replay.
    pub async fn create_checkout_session(
        &self,
        key: &ApiKey,
        idempotency_key: Option<String>,
        req: CreateSession,
    ) -> Result<(CheckoutSession, bool), CreateError> {
        // The payment fields are checked exactly as a payment's; a session without a phone is
        // checked with a stand-in number, since the customer types theirs later.
        let probe = CreatePayment {
            amount: req.amount.clone(),
            phone: req.phone.clone().unwrap_or_else(|| "254700000000".into()),
            account_reference: req.account_reference.clone(),
            description: req.description.clone(),
            metadata: req.metadata.clone(),
            webhook_url: req.webhook_url.clone(),
            customer_email: req.customer_email.clone(),
        };
        let valid = self.validate_payment(probe)?;
        absolute_url("success_url", &req.success_url)?;
        absolute_url("cancel_url", &req.cancel_url)?;
        let phone = req.phone.as_ref().map(|_| valid.phone.to_string());
        let request_hash = ids::sha256_hex(
            serde_json::to_string(&ValidSession {
                amount: valid.amount.shillings(),
                account_reference: valid.account_reference.as_str(),
                description: valid.description.as_str(),
                success_url: &req.success_url,
                cancel_url: &req.cancel_url,
                phone: phone.as_deref(),
                customer_email: valid.customer_email.as_deref(),
                metadata: &valid.metadata,
                webhook_url: valid.webhook_url.as_deref(),
            })
            .unwrap_or_default()
            .as_bytes(),
        );
        let now = self.now();
        let session = CheckoutSession {
            id: format!("cs_{}", ids::random_hex(16)),
            api_key_id: key.id.clone(),
            amount: valid.amount.shillings(),
            account_reference: valid.account_reference.as_str().to_owned(),
            description: valid.description.as_str().to_owned(),
            success_url: req.success_url,
            cancel_url: req.cancel_url,
            phone,
            customer_email: valid.customer_email,
            webhook_url: valid.webhook_url,
            metadata: valid.metadata,
            created_at: now,
            expires_at: now + ms(SESSION_LIFETIME),
            payment_id: None,
            attempts: 0,
        };
        let inserted = self
            .store()
            .insert_checkout_session(NewCheckoutSession {
                session,
                idempotency_key,
                request_hash: request_hash.clone(),
            })
            .await?;
        match inserted {
            SessionInserted::Created(s) => Ok((s, false)),
            SessionInserted::Existing(s, hash) if hash == request_hash => Ok((s, true)),
            SessionInserted::Existing(..) => Err(CreateError::IdempotencyKeyReused),
        }
    }

    /// A session as its page shows it; `None` for unknown ids and for sessions past their
    /// lifetime (a paid one stays readable a week longer, for its receipt).
    pub async fn checkout(&self, id: &str) -> Result<Option<Checkout>, StoreError> {
        let Some(session) = self.store().checkout_session(id).await? else { return Ok(None) };
        let payment = match &session.payment_id {
            Some(pid) => self.store().payment(&PaymentId::from_db(pid.clone()), None).await?.map(|p| self.shown(p)),
            None => None,
        };
        let now = self.now();
        let paid = payment.as_ref().is_some_and(|p| p.status == crate::payment::Status::Paid);
        let open_until = if paid { session.expires_at + ms(PAID_PAGE_LIFETIME) } else { session.expires_at };
        Ok((now < open_until).then_some(Checkout { session, payment }))
    }

    /// Starts a payment attempt for a session on `phone` (any common form). Refused while the
    /// latest attempt is still pending or already paid, and by the per-phone limits.
    pub async fn start_checkout_payment(&self, checkout: &Checkout, phone: &str) -> Result<Payment, CreateError> {
        use crate::payment::Status;
        let session = &checkout.session;
        match checkout.payment.as_ref().map(|p| p.status) {
            Some(Status::Paid) => {
                return Err(CreateError::AlreadyPaid);
            }
            Some(Status::Pending) => {
                return Err(CreateError::PhoneBusy(self.settings().payments.prompt_lifetime.as_secs()));
            }
            Some(Status::Failed | Status::Expired) | None => {}
        }
        let attempt = session.attempts + 1;
        let mut metadata = session.metadata.clone();
        if let Some(object) = metadata.as_object_mut() {
            object.insert("checkout_session".into(), session.id.clone().into());
        }
        let req = CreatePayment {
            amount: session.amount.into(),
            phone: phone.to_owned(),
            account_reference: session.account_reference.clone(),
            description: session.description.clone(),
            metadata: Some(metadata),
            webhook_url: session.webhook_url.clone(),
            customer_email: session.customer_email.clone(),
        };
        // One idempotency key per attempt: a double submit of the same form pushes once.
        let key = Some(format!("{}/{attempt}", session.id));
        let this_attempt = crate::store::CheckoutAttempt { session_id: session.id.clone(), attempt };
        let created = self.create_payment_for_key(&session.api_key_id, key, req, Some(this_attempt)).await?;
        Ok(created.payment)
    }
}
