//! The plans of a batch, written with set-based statements: the payments' changes (one
//! `UPDATE … FROM unnest(…)`), flags, timeline events, and the webhook events and receipt
//! emails they announce, written from the payments as the batch left them. Every batched
//! message kind (STK callbacks, Paybill confirmations) executes its plans through this.

use std::collections::HashMap;

use super::batch::Failed;
use super::{payment_from_row, pg_error};
use crate::payment::{FailureReason, Payment};
use crate::settlement::Outcome;
use crate::settlement::plan::{self, Plan};
use crate::store::{PAYMENT_COLUMNS, StoreError, unserialisable};

/// What a plan pushed leaves for the caller's own record.
pub(super) struct Pushed {
    pub outcome: Outcome,
    pub note: String,
    pub after: crate::payment::Status,
}

/// A batch's plans, column by column (the shape `unnest` takes).
#[derive(Default)]
pub(super) struct PlanRows<'a> {
    // payments changed
    ids: Vec<&'a str>,
    statuses: Vec<&'static str>,
    reasons: Vec<Option<&'static str>>,
    codes: Vec<String>,
    descs: Vec<String>,
    receipts: Vec<Option<String>>,
    dates: Vec<Option<i64>>,
    checkout_ids: Vec<Option<String>>,
    settled_by: Vec<&'static str>,
    changed_at: Vec<i64>,
    review: Vec<bool>,
    // payments flagged for review without a change
    flagged: Vec<&'a str>,
    flagged_at: Vec<i64>,
    // timeline events
    event_payments: Vec<&'a str>,
    event_at: Vec<i64>,
    event_kinds: Vec<String>,
    event_details: Vec<String>,
    // announcements: (payment, type, time)
    announce: Vec<(&'a str, &'static str, i64)>,
    // shillings paid by hand, per payment
    received: HashMap<&'a str, i64>,
}

impl<'a> PlanRows<'a> {
    /// Adds the plan for payment `id` at `now`.
    pub(super) fn push(&mut self, id: &'a str, plan: Plan, now: i64) -> Pushed {
        let Plan { outcome, change, review, after, event, announce, note, .. } = plan;
        if let Some(ch) = change {
            self.ids.push(id);
            self.statuses.push(ch.status.as_str());
            self.reasons.push(ch.failure_reason.map(FailureReason::as_str));
            self.codes.push(ch.result_code);
            self.descs.push(ch.result_desc);
            self.receipts.push(ch.receipt.map(String::from));
            self.dates.push(ch.transaction_date);
            self.checkout_ids.push(ch.checkout_request_id.map(String::from));
            self.settled_by.push(ch.settled_by.as_str());
            self.changed_at.push(now);
            self.review.push(review);
        } else if review {
            self.flagged.push(id);
            self.flagged_at.push(now);
        }
        self.event_payments.push(id);
        self.event_at.push(now);
        self.event_kinds.push(event.kind);
        self.event_details.push(event.detail.to_string());
        if let Some(event_type) = announce {
            self.announce.push((id, event_type, now));
        }
        Pushed { outcome, note, after }
    }

    /// Adds `amount` shillings paid by hand to payment `id` (written with its change, if any).
    pub(super) fn receive(&mut self, id: &'a str, amount: i64) {
        *self.received.entry(id).or_default() += amount;
    }

    /// Writes the amounts received, the changes and flags; returns the changed payments as
    /// they now are. A receipt
    /// or CheckoutRequestID that belongs to another payment is not written, and fails the
    /// batch (then each message is settled alone, where that case is decided and recorded).
    pub(super) async fn write_changes(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
    ) -> Result<HashMap<String, Payment>, Failed> {
        let mut changed: HashMap<String, Payment> = HashMap::with_capacity(self.ids.len());
        // Amounts for payments with no change are written alone; the others with their change.
        let (alone_ids, alone_amounts): (Vec<&str>, Vec<i64>) =
            self.received.iter().filter(|(id, _)| !self.ids.contains(id)).map(|(id, a)| (*id, *a)).unzip();
        if !alone_ids.is_empty() {
            tx.execute(
                "UPDATE payments SET amount_received = amount_received + r.amount
                 FROM unnest($1::TEXT[], $2::INT8[]) AS r(id, amount) WHERE payments.id = r.id",
                &[&alone_ids, &alone_amounts],
            )
            .await
            .map_err(pg_error)?;
        }
        let received: Vec<i64> = self.ids.iter().map(|id| self.received.get(id).copied().unwrap_or(0)).collect();
        if !self.ids.is_empty() {
            let update = tx
                .prepare_cached(&format!(
                    "UPDATE payments SET status = c_status, failure_reason = c_reason, result_code = c_code,
                        result_desc = c_descr, receipt = COALESCE(c_receipt, receipt),
                        transaction_date = COALESCE(c_tdate, transaction_date),
                        checkout_request_id = COALESCE(checkout_request_id, c_checkout_id),
                        settled_by = c_settled_by, settled_at = COALESCE(settled_at, c_at),
                        needs_review = needs_review OR c_review, updated_at = c_at,
                        next_check_at = NULL, lease_until = NULL, amount_received = amount_received + c_received
                     FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::INT8[],
                                 $8::TEXT[], $9::TEXT[], $10::INT8[], $11::BOOL[], $12::INT8[])
                          AS c(c_id, c_status, c_reason, c_code, c_descr, c_receipt, c_tdate, c_checkout_id,
                               c_settled_by, c_at, c_review, c_received)
                     WHERE id = c_id
                       AND NOT EXISTS (SELECT 1 FROM payments o WHERE o.id <> c_id
                                       AND (o.receipt = c_receipt
                                            OR (c_checkout_id IS NOT NULL AND o.checkout_request_id = c_checkout_id)))
                     RETURNING {PAYMENT_COLUMNS}"
                ))
                .await
                .map_err(pg_error)?;
            let rows = tx
                .query(
                    &update,
                    &[
                        &self.ids,
                        &self.statuses,
                        &self.reasons,
                        &self.codes,
                        &self.descs,
                        &self.receipts,
                        &self.dates,
                        &self.checkout_ids,
                        &self.settled_by,
                        &self.changed_at,
                        &self.review,
                        &received,
                    ],
                )
                .await
                .map_err(pg_error)?;
            if rows.len() != self.ids.len() {
                return Err(Failed::BeforeCommit(StoreError::Conflict(
                    "a receipt or CheckoutRequestID of the batch belongs to another payment".into(),
                )));
            }
            for row in &rows {
                let p = payment_from_row(row)?;
                changed.insert(p.id.as_str().to_owned(), p);
            }
        }
        if !self.flagged.is_empty() {
            tx.execute(
                "UPDATE payments SET needs_review = TRUE, updated_at = GREATEST(payments.updated_at, f.at)
                 FROM unnest($1::TEXT[], $2::INT8[]) AS f(id, at) WHERE payments.id = f.id",
                &[&self.flagged, &self.flagged_at],
            )
            .await
            .map_err(pg_error)?;
        }
        Ok(changed)
    }

    /// Writes the timeline events and the announcements (after [`Self::write_changes`], with
    /// what it returned).
    pub(super) async fn write_events(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        changed: HashMap<String, Payment>,
    ) -> Result<(), StoreError> {
        let events = async {
            if self.event_payments.is_empty() {
                return Ok(());
            }
            let insert = tx
                .prepare_cached(
                    "INSERT INTO events (payment_id, at, kind, detail)
                     SELECT * FROM unnest($1::TEXT[], $2::INT8[], $3::TEXT[], $4::TEXT[])",
                )
                .await
                .map_err(pg_error)?;
            tx.execute(&insert, &[&self.event_payments, &self.event_at, &self.event_kinds, &self.event_details])
                .await
                .map_err(pg_error)
                .map(|_| ())
        };
        let announcements = async {
            if self.announce.is_empty() {
                return Ok(());
            }
            announce_all(tx, &self.announce, changed).await
        };
        tokio::try_join!(events, announcements).map(drop)
    }
}

/// The webhook events (and receipt emails) of the batch's announcements, written from the
/// payments as they now are: those the batch changed, and the others read here.
async fn announce_all(
    tx: &deadpool_postgres::Transaction<'_>,
    announce: &[(&str, &'static str, i64)],
    mut payments: HashMap<String, Payment>,
) -> Result<(), StoreError> {
    let unread: Vec<&str> = announce.iter().map(|(id, ..)| *id).filter(|id| !payments.contains_key(*id)).collect();
    if !unread.is_empty() {
        let select = tx
            .prepare_cached(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ANY($1)"))
            .await
            .map_err(pg_error)?;
        for row in tx.query(&select, &[&unread]).await.map_err(pg_error)? {
            let p = payment_from_row(&row)?;
            payments.insert(p.id.as_str().to_owned(), p);
        }
    }
    let (mut event_ids, mut payment_ids, mut keys, mut types, mut urls, mut payloads, mut at) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut email_ids, mut email_payments, mut recipients, mut email_at) = (vec![], vec![], vec![], vec![]);
    for (id, event_type, now) in announce {
        let payment = payments.get(*id).ok_or_else(|| StoreError::corrupt(format_args!("payment {id} vanished")))?;
        let plan::Outbox { webhook: w, email } = plan::outbox(payment, event_type, *now).map_err(unserialisable)?;
        event_ids.push(w.id);
        payment_ids.push(*id);
        keys.push(w.api_key_id);
        types.push(w.event_type);
        urls.push(w.url);
        payloads.push(w.payload);
        at.push(w.at);
        if let Some(e) = email {
            email_ids.push(e.id);
            email_payments.push(*id);
            recipients.push(e.recipient);
            email_at.push(e.at);
        }
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO webhook_events (id, payment_id, api_key_id, type, url, payload, status, created_at, next_attempt_at)
             SELECT e.id, e.payment_id, e.key, e.type, e.url, e.payload, 'pending', e.at, e.at
             FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::INT8[])
                  AS e(id, payment_id, key, type, url, payload, at)",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&insert, &[&event_ids, &payment_ids, &keys, &types, &urls, &payloads, &at]).await.map_err(pg_error)?;
    if !email_ids.is_empty() {
        tx.execute(
            "INSERT INTO emails (id, payment_id, recipient, status, created_at, next_attempt_at)
             SELECT e.id, e.payment_id, e.recipient, 'pending', e.at, e.at
             FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::INT8[]) AS e(id, payment_id, recipient, at)",
            &[&email_ids, &email_payments, &recipients, &email_at],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}
