//! Checking a receipt with Daraja's Transaction Status: a disputed receipt, or the one a
//! customer shows for a payment confirmed without it. The check is recorded, Daraja is asked,
//! and its answer arrives later at the check's secret URL.

use daraja::reversal::Remarks;
use daraja::status::{Report, StatusQuery, Target};

use super::Gateway;
use crate::payment::PaymentId;
use crate::store::{CheckAnswer, ReceiptCheck, StoreError};

/// Why a receipt could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Transaction Status needs the initiator refunds use.
    #[error(
        "receipt checks are not configured: set MPESA_INITIATOR_NAME and MPESA_INITIATOR_PASSWORD (and MPESA_CERTIFICATE in production)"
    )]
    NotConfigured,
    /// Not a receipt.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Gateway {
    fn check_url(&self, id: &str, kind: &str) -> Result<daraja::CallbackUrl, daraja::Error> {
        let key = self.inner.c2b_path.get().ok_or_else(|| daraja::InvalidField {
            field: "ResultURL",
            reason: "the store has not been read yet".into(),
        })?;
        let token = &crate::ids::hex(&crate::webhooks::hmac(key, &format!("check:{id}")))[..32];
        Ok(daraja::CallbackUrl::parse(&format!("{}/callbacks/receipt-check/{token}/{kind}", self.public_url()))?)
    }

    /// Records a check of `receipt` (for `payment_id`, if given) and asks Daraja; returns the
    /// check's id. The answer comes to this gateway's public URL.
    pub async fn check_receipt(
        &self,
        receipt: &str,
        payment_id: Option<&PaymentId>,
        requested_by: &str,
    ) -> Result<String, CheckError> {
        let receipt = daraja::ReceiptNumber::parse(receipt.trim().to_ascii_uppercase().as_str())
            .map_err(|e| CheckError::Invalid(format!("{receipt:?} is not an M-PESA receipt: {}", e.reason)))?;
        let initiator = self.inner.initiator.clone().ok_or(CheckError::NotConfigured)?;
        let id = format!("chk_{}", crate::ids::time_ordered_hex());
        let urls = self.check_url(&id, "result").and_then(|r| Ok((r, self.check_url(&id, "timeout")?)));
        let (result_url, queue_timeout_url) = urls.map_err(|e| CheckError::Invalid(e.to_string()))?;
        let token = result_url.as_str().rsplit('/').nth(1).unwrap_or_default().to_owned();
        let now = self.now();
        let hash = crate::ids::sha256_hex(token.as_bytes());
        self.store().insert_receipt_check(&id, &receipt, payment_id, requested_by, &hash, now).await?;
        let query = StatusQuery {
            initiator,
            target: Target::Receipt(receipt),
            party_a: self.daraja().1.business_short_code(),
            result_url,
            queue_timeout_url,
            remarks: Remarks::parse("Receipt check").map_err(|e| CheckError::Invalid(e.to_string()))?,
            occasion: Some(id.clone()),
        };
        if let Err(e) = self.daraja().0.transaction_status(&query).await {
            let note = format!("Daraja could not be asked: {e}");
            self.store().receipt_check_failed(&id, &note, self.now()).await?;
        }
        Ok(id)
    }

    /// Stores Daraja's answer about a receipt check and applies it; `None` when the secret
    /// is no check's (nothing stored).
    pub async fn ingest_check_answer(
        &self,
        token: &str,
        timeout: bool,
        body: Vec<u8>,
    ) -> Result<Option<ReceiptCheck>, StoreError> {
        let (status, detail, found, note) = if timeout {
            ("asked", serde_json::json!({}), None, "Daraja's queue timed out; ask again".to_owned())
        } else {
            match daraja::result::parse(&body) {
                Err(e) => ("failed", serde_json::json!({}), None, format!("Daraja's answer could not be read: {e}")),
                Ok(result) => match daraja::status::report(&result) {
                    Report::Found(d) => {
                        let detail = serde_json::json!({
                            "receipt": d.receipt.as_deref(),
                            "status": d.status,
                            "amount": d.amount,
                            "payer": d.debit_party,
                            "paid_to": d.credit_party,
                            "finalised_at": d.finalised_at.map(|t| crate::time_fmt::rfc3339(crate::time_fmt::to_millis(t))),
                            "kind": d.reason_type,
                        });
                        let note = format!("Daraja knows it: {}", d.status.as_deref().unwrap_or("no status given"));
                        ("found", detail, Some(d), note)
                    }
                    Report::Refused { kind: daraja::result::ResultKind::UnknownTransaction, code, description } => (
                        "not_found",
                        serde_json::json!({"code": code}),
                        None,
                        format!("Daraja does not know this receipt: {description}"),
                    ),
                    Report::Refused { kind, code, description } => {
                        let note = kind.remedy().map_or_else(|| description.clone(), str::to_owned);
                        ("failed", serde_json::json!({"code": code, "description": description}), None, note)
                    }
                },
            }
        };
        let stored = self
            .store()
            .settle_check_answer(CheckAnswer {
                token_hash: crate::ids::sha256_hex(token.as_bytes()),
                source: if timeout { "timeout" } else { "result" },
                body,
                status,
                detail,
                found,
                note,
                now: self.now(),
            })
            .await?;
        if let Some(c) = &stored {
            tracing::info!(check = %c.id, status = %c.status, "receipt check answered");
            if let Some(p) = c.payment_id.as_deref().and_then(PaymentId::parse) {
                self.changed(&p);
            }
        }
        Ok(stored)
    }
}
