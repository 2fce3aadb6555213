//! Paybill and Till payments (C2B): the secret URLs Daraja calls, registering them, storing
//! a confirmation, answering a validation, and showing a payment's Paybill details.

use daraja::c2b::{C2bPayment, RegisterAccepted, RegisterUrls, RejectCode, Validation};

use super::Gateway;
use crate::payment::{Paybill, Payment, Status, normalize_paybill_account};
use crate::store::{ConfirmationStored, IncomingConfirmation, StoreError};
use crate::time_fmt::ms;

/// The installation value naming the C2B URLs' secret path segment.
const PATH_KEY: &str = "c2b_path";

impl Gateway {
    /// Reads (or, on the first start of an installation, chooses) the secret segment of the
    /// C2B URLs. Call once at start-up, before serving.
    pub async fn load_c2b_path(&self) -> Result<(), StoreError> {
        let token = self.store().installation_value(PATH_KEY, &crate::ids::random_hex(16)).await?;
        let _ = self.inner.c2b_path.set(token);
        Ok(())
    }

    /// Whether `token` is this installation's C2B path segment (compared in constant time).
    pub(crate) fn is_c2b_path(&self, token: &str) -> bool {
        self.inner.c2b_path.get().is_some_and(|known| crate::ids::constant_time_eq(known, token))
    }

    /// The confirmation and validation URLs to register with Daraja (they hold a secret).
    pub fn c2b_urls(&self) -> Option<(String, String)> {
        let token = self.inner.c2b_path.get()?;
        let base = format!("{}/callbacks/c2b/{token}", self.public_url());
        Some((format!("{base}/confirmation"), format!("{base}/validation")))
    }

    /// Registers the C2B URLs with Daraja for the configured shortcode.
    pub async fn register_c2b_urls(&self) -> Result<RegisterAccepted, daraja::Error> {
        let (confirmation, validation) = self.c2b_urls().ok_or_else(|| daraja::InvalidField {
            field: "ConfirmationURL",
            reason: "the store has not been read yet".into(),
        })?;
        let (client, merchant) = self.daraja();
        let c2b = &self.settings().c2b;
        client
            .c2b_register_urls(&RegisterUrls {
                short_code: merchant.business_short_code(),
                response_type: c2b.response_type,
                confirmation_url: daraja::CallbackUrl::parse(&confirmation)?,
                validation_url: daraja::CallbackUrl::parse(&validation)?,
                version: c2b.register_version,
            })
            .await
    }

    /// Registers the shortcode for Pull Transactions (the sweep that recovers confirmations
    /// that never arrived), with `nominated` as the number Safaricom tells.
    pub async fn register_pull(&self, nominated: daraja::Msisdn) -> Result<(), daraja::Error> {
        let (confirmation, _) = self.c2b_urls().ok_or_else(|| daraja::InvalidField {
            field: "CallBackURL",
            reason: "the store has not been read yet".into(),
        })?;
        let (client, merchant) = self.daraja();
        client
            .pull_register(&daraja::c2b::PullRegister {
                short_code: merchant.business_short_code(),
                nominated_number: nominated,
                callback_url: daraja::CallbackUrl::parse(&confirmation)?,
            })
            .await
    }

    /// Stores a confirmation (once per TransID) and applies it. Answers only after the commit.
    pub async fn ingest_confirmation(
        &self,
        body: String,
        payment: C2bPayment,
        source: &'static str,
    ) -> Result<ConfirmationStored, StoreError> {
        let received_at = self.now();
        let open_since = received_at - ms(self.settings().c2b.open_for);
        let till_by_phone_and_amount = self.settings().c2b.till_rule == crate::config::TillRule::PhoneAndAmount;
        let incoming =
            IncomingConfirmation { body, payment, source, received_at, open_since, till_by_phone_and_amount };
        let stored = self.store().settle_from_confirmation(incoming).await?;
        if let Some(id) = &stored.payment_id {
            self.changed(id);
        }
        if stored.outcome.needs_review() {
            tracing::warn!(outcome = stored.outcome.as_str(), "a Paybill payment was stored for review");
        }
        Ok(stored)
    }

    /// The answer to a validation request: everything is accepted unless validation is on;
    /// then the account number must name an open payment and the amount be what is due.
    pub async fn validate_c2b(&self, payment: &C2bPayment) -> Result<Validation, StoreError> {
        if !self.settings().c2b.validation {
            return Ok(Validation::Accept);
        }
        let Some(account) = normalize_paybill_account(&payment.bill_ref_number) else {
            return Ok(Validation::Reject(RejectCode::InvalidAccountNumber));
        };
        let Some(found) = self.store().payment_by_paybill_account(&account).await? else {
            return Ok(Validation::Reject(RejectCode::InvalidAccountNumber));
        };
        if !self.payable_by_hand(&found) {
            return Ok(Validation::Reject(RejectCode::InvalidAccountNumber));
        }
        let due = u64::from(found.amount.shillings()).saturating_sub(found.amount_received);
        Ok(if payment.amount == due { Validation::Accept } else { Validation::Reject(RejectCode::InvalidAmount) })
    }

    /// Whether a payment can still be paid by hand: pending or failed, within its window,
    /// with an account number, and the business a paybill (a till takes no account number).
    pub fn payable_by_hand(&self, p: &Payment) -> bool {
        let (_, merchant) = self.daraja();
        matches!(merchant.account(), daraja::Account::Paybill(_))
            && p.paybill_account.is_some()
            && matches!(p.status, Status::Pending | Status::Failed)
            && p.created_at >= self.now() - ms(self.settings().c2b.open_for)
    }

    /// The payment as the API shows it: with its Paybill details while it can be paid by hand.
    pub fn shown(&self, mut p: Payment) -> Payment {
        p.paybill = self.payable_by_hand(&p).then(|| Paybill {
            business_number: self.daraja().1.business_short_code().to_string(),
            account_number: p.paybill_account.clone().unwrap_or_default(),
        });
        p
    }
}
