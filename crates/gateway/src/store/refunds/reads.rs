//! The refunds' [`Store`] methods: the writes each backend runs over its [`Tx`](crate::store::tx),
//! and the reads and leases, which are plain SQL.

use super::{MessageStored, NewRefund, REFUND_COLUMNS, RefundInserted, RefundMessage, SendOutcome, refund_from};
use crate::payment::PaymentId;
use crate::refund::{Refund, RefundId};
use crate::store::{Store, StoreError};

impl Store {
    /// Takes a refund request (or finds the one made with the same idempotency key).
    pub async fn insert_refund(&self, new: NewRefund) -> Result<RefundInserted, StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_refund(new).await,
            Store::Postgres(s) => s.insert_refund(new).await,
        }
    }

    /// Marks a new refund as being sent; `None` when it is not new (sent, or being sent).
    pub async fn begin_refund_send(&self, id: &RefundId, now: i64) -> Result<Option<Refund>, StoreError> {
        match self {
            Store::Sqlite(s) => s.begin_refund_send(id.clone(), now).await,
            Store::Postgres(s) => s.begin_refund_send(id.clone(), now).await,
        }
    }

    /// Records how sending a refund's Reversal went.
    pub async fn record_refund_send(
        &self,
        id: &RefundId,
        outcome: SendOutcome,
        now: i64,
    ) -> Result<Refund, StoreError> {
        match self {
            Store::Sqlite(s) => s.record_refund_send(id.clone(), outcome, now).await,
            Store::Postgres(s) => s.record_refund_send(id.clone(), outcome, now).await,
        }
    }

    /// Stores a message about a refund and applies it, in one commit; `None` when no refund
    /// has the message's secret (nothing is stored).
    pub async fn settle_refund_message(&self, message: RefundMessage) -> Result<Option<MessageStored>, StoreError> {
        match self {
            Store::Sqlite(s) => s.settle_refund_message(message).await,
            Store::Postgres(s) => s.settle_refund_message(message).await,
        }
    }

    /// Staff decide a pending refund from the M-Pesa statement (`succeeded`: the money went
    /// back); `None` when it was not pending.
    pub async fn resolve_refund(
        &self,
        id: &RefundId,
        succeeded: bool,
        actor: &str,
        note: &str,
        now: i64,
    ) -> Result<Option<Refund>, StoreError> {
        let (id, actor, note) = (id.clone(), actor.to_owned(), note.to_owned());
        match self {
            Store::Sqlite(s) => s.resolve_refund(id, succeeded, actor, note, now).await,
            Store::Postgres(s) => s.resolve_refund(id, succeeded, actor, note, now).await,
        }
    }

    /// A refund, if it exists (and belongs to `api_key_id`'s payments, when given).
    pub async fn refund(&self, id: &RefundId, api_key_id: Option<&str>) -> Result<Option<Refund>, StoreError> {
        let sql = format!(
            "SELECT {REFUND_COLUMNS} FROM refunds
             WHERE id = $1 AND ($2 = '' OR payment_id IN (SELECT id FROM payments WHERE api_key_id = $2))"
        );
        let rows = self.query(sql, vec![id.as_str().into(), api_key_id.unwrap_or("").into()]).await?;
        rows.first().map(|r| refund_from(r)).transpose()
    }

    /// A payment's refunds, oldest first.
    pub async fn refunds_of(&self, payment_id: &PaymentId) -> Result<Vec<Refund>, StoreError> {
        let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id = $1 ORDER BY created_at, id");
        let rows = self.query(sql, vec![payment_id.as_str().into()]).await?;
        rows.iter().map(|r| refund_from(r)).collect()
    }

    /// Leases up to `limit` pending refunds due for a step (a send that never happened, a
    /// Transaction Status question) until `lease_until`.
    pub async fn claim_due_refunds(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<Refund>, StoreError> {
        let rows = self
            .execute_returning(
                concat!(
                    "UPDATE refunds SET lease_until = $2
                     WHERE id IN (SELECT id FROM refunds
                                  WHERE status = 'pending' AND next_check_at IS NOT NULL AND next_check_at <= $1
                                    AND (lease_until IS NULL OR lease_until <= $1)
                                  ORDER BY next_check_at LIMIT $3 /*skip_locked*/)
                     RETURNING ",
                    refund_columns!()
                ),
                vec![now.into(), lease_until.into(), i64::from(limit).into()],
            )
            .await?;
        rows.iter().map(|r| refund_from(r)).collect()
    }

    /// Records a Transaction Status question about a refund and when to ask again (`None`:
    /// no more; it is flagged for staff).
    pub async fn refund_status_asked(
        &self,
        id: &RefundId,
        next_at: Option<i64>,
        note: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute_all(vec![(
            "UPDATE refunds SET status_checks = status_checks + 1, lease_until = NULL, updated_at = $3,
                next_check_at = CASE WHEN status = 'pending' THEN CAST($2 AS BIGINT) END,
                needs_review = CASE WHEN CAST($2 AS BIGINT) IS NULL THEN 1 ELSE needs_review END,
                note = CASE WHEN $4 = '' THEN note ELSE $4 END
             WHERE id = $1",
            vec![id.as_str().into(), next_at.into(), now.into(), note.into()],
        )])
        .await
        .map(drop)
    }

    /// Refunds whose send began before `before` and never recorded its answer (the process
    /// died sending): their answer is lost.
    pub async fn stale_refund_sends(&self, before: i64) -> Result<Vec<RefundId>, StoreError> {
        let rows = self
            .query(
                "SELECT id FROM refunds WHERE status = 'pending' AND send_state = 'sending' AND updated_at < $1",
                vec![before.into()],
            )
            .await?;
        Ok(rows.iter().map(|r| RefundId::from_db(r[0].text())).collect())
    }
}
