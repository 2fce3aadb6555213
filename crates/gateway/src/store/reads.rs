//! What the API, the pages and the CLI read: payments (one, a filtered page, counts),
//! checkout sessions, a payment's timeline, its callbacks and its webhook events. Written
//! once over [`Store::query`] for both databases; rows are turned back into domain values
//! here, and a row this version cannot read is an error, never a guess.

use std::borrow::Cow;

use super::sql::{Arg, Cell};
use super::{
    CheckoutSession, Event, PaymentFilter, Store, StoreError, StoredCallback, WebhookAttempt, WebhookEvent, has_nul,
};
use crate::payment::{FailureReason, Payment, PaymentId, SettledBy, Status};

/// A non-negative count or amount stored as an integer.
fn small(cell: &Cell, what: &str) -> Result<u32, StoreError> {
    u32::try_from(cell.int()).map_err(|_| StoreError::corrupt(format_args!("{what} out of range")))
}

fn json(cell: &Cell, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(&cell.text()).map_err(|_| StoreError::corrupt(format_args!("{what} is not JSON")))
}

/// A payment read as `SELECT payment_columns!()`.
pub(super) fn payment_from(row: &[Cell]) -> Result<Payment, StoreError> {
    let [
        id,
        status,
        amount,
        phone,
        account_reference,
        description,
        metadata,
        webhook_url,
        customer_email,
        merchant_request_id,
        checkout_request_id,
        receipt,
        transaction_date,
        failure_reason,
        result_code,
        result_desc,
        settled_by,
        needs_review,
        created_at,
        updated_at,
        settled_at,
        callback_token_hash,
        api_key_id,
        paybill_account,
        amount_received,
        refunded_amount,
    ] = row
    else {
        return Err(StoreError::corrupt(format_args!("a payment row has {} columns", row.len())));
    };
    Ok(Payment {
        id: PaymentId::from_db(id.text()),
        status: Status::parse(&status.text()).ok_or_else(|| StoreError::corrupt("unknown status"))?,
        amount: super::stored_amount(amount.int())?,
        phone: daraja::Msisdn::parse(&phone.text())
            .map_err(|e| StoreError::corrupt(format_args!("phone: {}", e.reason)))?,
        account_reference: account_reference.text(),
        description: description.text(),
        metadata: json(metadata, "metadata")?,
        webhook_url: webhook_url.opt_text(),
        customer_email: customer_email.opt_text(),
        merchant_request_id: super::daraja_id(
            merchant_request_id.opt_text().as_deref(),
            daraja::MerchantRequestId::parse,
        )?,
        checkout_request_id: super::daraja_id(
            checkout_request_id.opt_text().as_deref(),
            daraja::CheckoutRequestId::parse,
        )?,
        receipt: super::daraja_id(receipt.opt_text().as_deref(), daraja::ReceiptNumber::parse)?,
        transaction_date: transaction_date.opt_int(),
        failure_reason: failure_reason
            .opt_text()
            .map(|s| FailureReason::parse(&s).ok_or_else(|| StoreError::corrupt("unknown failure reason")))
            .transpose()?,
        result_code: result_code.opt_text(),
        result_desc: result_desc.opt_text(),
        settled_by: settled_by
            .opt_text()
            .map(|s| SettledBy::parse(&s).ok_or_else(|| StoreError::corrupt("unknown settled_by")))
            .transpose()?,
        needs_review: needs_review.int() != 0,
        created_at: created_at.int(),
        updated_at: updated_at.int(),
        settled_at: settled_at.opt_int(),
        callback_token_hash: callback_token_hash.text(),
        api_key_id: api_key_id.text(),
        paybill_account: paybill_account.opt_text(),
        amount_received: super::received(amount_received.int())?,
        refunded_amount: super::received(refunded_amount.int())?,
        paybill: None,
    })
}

/// A session read as `SELECT session_columns!()`.
pub(super) fn session_from(row: &[Cell]) -> Result<CheckoutSession, StoreError> {
    let [
        id,
        api_key_id,
        amount,
        account_reference,
        description,
        success_url,
        cancel_url,
        phone,
        customer_email,
        webhook_url,
        metadata,
        created_at,
        expires_at,
        payment_id,
        attempts,
    ] = row
    else {
        return Err(StoreError::corrupt(format_args!("a checkout session row has {} columns", row.len())));
    };
    Ok(CheckoutSession {
        id: id.text(),
        api_key_id: api_key_id.text(),
        amount: small(amount, "session amount")?,
        account_reference: account_reference.text(),
        description: description.text(),
        success_url: success_url.text(),
        cancel_url: cancel_url.text(),
        phone: phone.opt_text(),
        customer_email: customer_email.opt_text(),
        webhook_url: webhook_url.opt_text(),
        metadata: json(metadata, "session metadata")?,
        created_at: created_at.int(),
        expires_at: expires_at.int(),
        payment_id: payment_id.opt_text(),
        attempts: small(attempts, "session attempts")?,
    })
}

/// The statement and arguments that list payments matching `f`, newest first.
fn payments_query(f: PaymentFilter) -> (String, Vec<Arg>) {
    let mut sql = String::from(concat!("SELECT ", payment_columns!(), " FROM payments WHERE TRUE"));
    let mut args: Vec<Arg> = Vec::new();
    let mut and = |clause: &str, value: Arg| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    let conditions = [
        (" AND api_key_id = ?", f.api_key_id.map(Arg::Text)),
        (" AND status = ?", f.status.map(|s| Arg::Text(s.as_str().into()))),
        (" AND phone = ?", f.phone.map(|p| Arg::Text(p.to_string()))),
        (" AND account_reference = ?", f.reference.map(Arg::Text)),
        (" AND receipt = ?", f.receipt.map(Arg::Text)),
        (" AND (receipt = UPPER(?) OR LOWER(account_reference) = LOWER(?))", f.text.map(Arg::Text)),
        (" AND created_at >= ?", f.created_from.map(Arg::Int)),
        (" AND created_at < ?", f.created_to.map(Arg::Int)),
        (" AND id = ?", f.id.map(Arg::Text)),
        (" AND amount >= ?", f.min_amount.map(|a| Arg::Int(a.into()))),
        (" AND amount <= ?", f.max_amount.map(|a| Arg::Int(a.into()))),
        (" AND needs_review = ?", f.needs_review.map(Arg::Bool)),
    ];
    for (clause, value) in conditions {
        if let Some(value) = value {
            and(clause, value);
        }
    }
    if let Some((at, id)) = f.after {
        and(" AND (created_at < ?", Arg::Int(at));
        let n = args.len();
        args.push(Arg::Text(id));
        sql.push_str(&format!(" OR (created_at = ${n} AND id < ${}))", n + 1));
    }
    sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {}", f.limit.clamp(1, 1000)));
    (sql, args)
}

impl Store {
    /// One payment (optionally only if it belongs to `api_key_id`).
    pub async fn payment(&self, id: &PaymentId, api_key_id: Option<&str>) -> Result<Option<Payment>, StoreError> {
        let sql = concat!("SELECT ", payment_columns!(), " FROM payments WHERE id = $1");
        let rows = self.query(sql, vec![id.as_str().into()]).await?;
        let payment = rows.first().map(|r| payment_from(r)).transpose()?;
        Ok(payment.filter(|p| api_key_id.is_none_or(|k| p.api_key_id == k)))
    }

    /// The payment an API key created with an idempotency key, and its request hash.
    pub async fn payment_by_idempotency_key(
        &self,
        api_key_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<(Payment, String)>, StoreError> {
        let sql = concat!(
            "SELECT ",
            payment_columns!(),
            ", request_hash FROM payments WHERE api_key_id = $1 AND idempotency_key = $2"
        );
        let rows = self.query(sql, vec![api_key_id.into(), idempotency_key.into()]).await?;
        let Some((hash, payment)) = rows.first().and_then(|r| r.split_last()) else { return Ok(None) };
        let found = (payment_from(payment)?, hash.text());
        // A replay confirms the payment: what it shows must be durable.
        self.wait_until_durable().await?;
        Ok(Some(found))
    }

    /// Payments matching `filter`, newest first.
    pub async fn payments(&self, filter: PaymentFilter) -> Result<Vec<Payment>, StoreError> {
        let texts = [&filter.reference, &filter.receipt, &filter.id, &filter.text];
        if texts.iter().any(|t| t.as_deref().is_some_and(has_nul)) {
            return Ok(Vec::new());
        }
        let (sql, args) = payments_query(filter);
        self.query(Cow::Owned(sql), args).await?.iter().map(|r| payment_from(r)).collect()
    }

    /// How many payments are in each status.
    pub async fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self.query("SELECT status, COUNT(*) FROM payments GROUP BY status", vec![]).await?;
        Ok(rows.iter().map(|r| (r[0].text(), r[1].int().try_into().unwrap_or(0))).collect())
    }

    /// A checkout session by id.
    pub async fn checkout_session(&self, id: &str) -> Result<Option<CheckoutSession>, StoreError> {
        if has_nul(id) {
            return Ok(None);
        }
        let sql = concat!("SELECT ", session_columns!(), " FROM checkout_sessions WHERE id = $1");
        let rows = self.query(sql, vec![id.into()]).await?;
        rows.first().map(|r| session_from(r)).transpose()
    }

    /// A payment's timeline, oldest first.
    pub async fn events(&self, id: &PaymentId) -> Result<Vec<Event>, StoreError> {
        let rows = self
            .query("SELECT at, kind, detail FROM events WHERE payment_id = $1 ORDER BY id", vec![id.as_str().into()])
            .await?;
        Ok(rows
            .iter()
            .map(|r| Event {
                at: r[0].int(),
                kind: r[1].text(),
                detail: serde_json::from_str(&r[2].text()).unwrap_or_default(),
            })
            .collect())
    }

    /// Callbacks stored for a payment, oldest first.
    pub async fn callbacks_for(&self, id: &PaymentId) -> Result<Vec<StoredCallback>, StoreError> {
        let sql = concat!("SELECT ", callback_columns!(), " FROM callbacks WHERE payment_id = $1 ORDER BY id");
        Ok(self.query(sql, vec![id.as_str().into()]).await?.iter().map(|r| callback_from(r)).collect())
    }

    /// Callbacks that matched no payment or could not be parsed, for review.
    pub async fn unmatched_callbacks(&self) -> Result<Vec<StoredCallback>, StoreError> {
        let sql = concat!("SELECT ", callback_columns!(), " FROM callbacks WHERE payment_id IS NULL ORDER BY id");
        Ok(self.query(sql, vec![]).await?.iter().map(|r| callback_from(r)).collect())
    }

    /// A payment's webhook events with their attempts.
    pub async fn webhook_events(&self, id: &PaymentId) -> Result<Vec<WebhookEvent>, StoreError> {
        let events = self
            .query(
                "SELECT id, payment_id, type, status, created_at, delivered_at FROM webhook_events
                 WHERE payment_id = $1 ORDER BY created_at, id",
                vec![id.as_str().into()],
            )
            .await?;
        let attempts = self
            .query(
                "SELECT event_id, at, url, status, latency_ms, error, response FROM webhook_attempts
                 WHERE event_id IN (SELECT id FROM webhook_events WHERE payment_id = $1) ORDER BY id",
                vec![id.as_str().into()],
            )
            .await?;
        let mut events: Vec<WebhookEvent> = events
            .iter()
            .map(|r| WebhookEvent {
                id: r[0].text(),
                payment_id: r[1].text(),
                event_type: r[2].text(),
                status: r[3].text(),
                created_at: r[4].int(),
                delivered_at: r[5].opt_int(),
                attempts: Vec::new(),
            })
            .collect();
        for r in &attempts {
            let attempt = WebhookAttempt {
                event_id: r[0].text(),
                at: r[1].int(),
                url: r[2].text(),
                status: r[3].opt_int().and_then(|s| u16::try_from(s).ok()),
                latency_ms: r[4].int(),
                error: r[5].opt_text(),
                response: r[6].text(),
            };
            if let Some(e) = events.iter_mut().find(|e| e.id == attempt.event_id) {
                e.attempts.push(attempt);
            }
        }
        Ok(events)
    }
}

fn callback_from(r: &[Cell]) -> StoredCallback {
    StoredCallback {
        id: r[0].int(),
        received_at: r[1].int(),
        payment_id: r[2].opt_text(),
        outcome: r[3].text(),
        note: r[4].text(),
        source: r[5].opt_text(),
        body: r[6].text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_numbers_its_placeholders_in_order() {
        let filter = PaymentFilter {
            status: Some(Status::Paid),
            min_amount: Some(10),
            needs_review: Some(true),
            after: Some((5, "pay_x".into())),
            limit: 5000,
            ..PaymentFilter::default()
        };
        let (sql, args) = payments_query(filter);
        assert!(
            sql.ends_with(
                "WHERE TRUE AND status = $1 AND amount >= $2 AND needs_review = $3 \
             AND (created_at < $4 OR (created_at = $4 AND id < $5)) ORDER BY created_at DESC, id DESC LIMIT 1000"
            ),
            "{sql}"
        );
        assert_eq!(
            args,
            [Arg::Text("paid".into()), Arg::Int(10), Arg::Bool(true), Arg::Int(5), Arg::Text("pay_x".into())]
        );
    }
}
