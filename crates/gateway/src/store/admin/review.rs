//! The review queue's storage: resolving flagged payments and callbacks, reading a
//! callback's body, and the callbacks no payment took.

use super::*;

impl Store {
    /// Clears a payment's review flag (and marks its flagged callbacks resolved), with the
    /// note on its timeline and in the audit log, in one transaction. False if it was not
    /// flagged.
    pub async fn resolve_payment_review(
        &self,
        id: &PaymentId,
        actor: &str,
        note: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let detail = serde_json::json!({"by": actor, "note": note}).to_string();
        let counts = self
            .execute_all(vec![
                (
                    "UPDATE payments SET needs_review = $2, updated_at = $3 WHERE id = $1 AND needs_review",
                    vec![id.as_str().into(), Arg::Bool(false), now.into()],
                ),
                (
                    "UPDATE callbacks SET resolved_at = $2 WHERE payment_id = $1 AND resolved_at IS NULL",
                    vec![id.as_str().into(), now.into()],
                ),
                (
                    "INSERT INTO events (payment_id, at, kind, detail) VALUES ($1, $2, 'review_resolved', $3)",
                    vec![id.as_str().into(), now.into(), detail.into()],
                ),
                audit_statement(actor, "resolve_review", id.as_str(), note, now),
            ])
            .await?;
        Ok(counts.first().is_some_and(|n| *n > 0))
    }

    /// Marks a callback on the review list (no payment took it, or it was malformed) reviewed.
    /// False if already resolved.
    pub async fn resolve_callback(
        &self,
        callback_id: i64,
        actor: &str,
        note: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let counts = self
            .execute_all(vec![
                (
                    "UPDATE callbacks SET resolved_at = $2
                     WHERE id = $1 AND resolved_at IS NULL AND (payment_id IS NULL OR outcome = 'malformed')",
                    vec![callback_id.into(), now.into()],
                ),
                audit_statement(actor, "resolve_callback", &format!("callback {callback_id}"), note, now),
            ])
            .await?;
        Ok(counts.first().is_some_and(|n| *n > 0))
    }

    /// A stored callback's token hash and body, for replaying it.
    pub async fn callback_body(&self, id: i64) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let rows = self.query("SELECT token_hash, body FROM callbacks WHERE id = $1", vec![id.into()]).await?;
        Ok(first(&rows).map(|r| {
            (r.first().map(Cell::text).unwrap_or_default(), r.get(1).map(Cell::text).unwrap_or_default().into_bytes())
        }))
    }

    /// The callbacks on the review list not yet resolved, newest first, from before the
    /// callback `before` (for the next page): those no payment took (orphans, and malformed
    /// bodies with an unknown token), and malformed bodies that named a payment.
    pub async fn unresolved_callbacks(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredCallback>, StoreError> {
        let rows = self
            .query(
                "SELECT id, received_at, payment_id, outcome, note, source, body FROM callbacks
                 WHERE resolved_at IS NULL AND (payment_id IS NULL OR outcome = 'malformed') AND id < $1
                 ORDER BY id DESC LIMIT $2",
                vec![before.unwrap_or(i64::MAX).into(), limit.into()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredCallback {
                id: r.first().map_or(0, Cell::int),
                received_at: r.get(1).map_or(0, Cell::int),
                payment_id: r.get(2).and_then(Cell::opt_text),
                outcome: r.get(3).map(Cell::text).unwrap_or_default(),
                note: r.get(4).map(Cell::text).unwrap_or_default(),
                source: r.get(5).and_then(Cell::opt_text),
                body: r.get(6).map(Cell::text).unwrap_or_default(),
            })
            .collect())
    }

    /// Callbacks no payment took that were counted instead of stored (beyond the storage
    /// budget) since `since` (ms): how many, their bytes, and when the last one came.
    pub async fn unmatched_counted_since(&self, since: i64) -> Result<UnmatchedCounted, StoreError> {
        let rows = self
            .query(
                // SUM of BIGINT is NUMERIC on PostgreSQL.
                "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT), CAST(COALESCE(SUM(bytes), 0) AS BIGINT), MAX(last_at)
                 FROM unmatched_callback_counts WHERE minute >= $1",
                vec![since.into()],
            )
            .await?;
        let r = first(&rows);
        Ok(UnmatchedCounted {
            count: r.and_then(|r| r.first()).map_or(0, Cell::int),
            bytes: r.and_then(|r| r.get(1)).map_or(0, Cell::int),
            last_at: r.and_then(|r| r.get(2)).and_then(Cell::opt_int),
        })
    }
}
