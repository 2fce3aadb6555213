//! The overview's figures: hourly rollups of payments and of push-to-result times, what
//! needs attention, and the latest webhook events.

use super::*;

impl Store {
    /// Payments created in the hours `[from, to)` (ms, whole hours) grouped by hour, status and
    /// result code, from the rollup table.
    pub async fn rollup(&self, from: i64, to: i64) -> Result<Vec<Rollup>, StoreError> {
        let rows = self
            .query(
                "SELECT hour, status, result_code, count, amount FROM payment_hours WHERE hour >= $1 AND hour < $2",
                vec![from.div_euclid(HOUR).into(), to.div_euclid(HOUR).saturating_add(1).into()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Rollup {
                hour: r.first().map_or(0, Cell::int),
                status: r.get(1).map(Cell::text).unwrap_or_default(),
                result_code: r.get(2).map(Cell::text).filter(|c| !c.is_empty()),
                count: r.get(3).map_or(0, Cell::int),
                amount: r.get(4).map_or(0, Cell::int),
            })
            .collect())
    }

    /// Seconds from creation to a callback's or query's settlement (capped at 600) of the
    /// payments created in the hours `[from, to)`, as (seconds, count) pairs, from the rollups.
    pub async fn settle_times(&self, from: i64, to: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = self
            .query(
                "SELECT secs, count FROM settle_hours WHERE hour >= $1 AND hour < $2",
                vec![from.div_euclid(HOUR).into(), to.div_euclid(HOUR).saturating_add(1).into()],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.first().map_or(0, Cell::int), r.get(1).map_or(0, Cell::int))).collect())
    }

    /// Recomputes the rollups of one hour (ms since the epoch / 3 600 000) from `payments`.
    pub async fn recompute_hour(&self, hour: i64) -> Result<(), StoreError> {
        let (from, to) = (hour * HOUR, (hour + 1) * HOUR);
        self.execute_all(vec![
            ("DELETE FROM payment_hours WHERE hour = $1", vec![hour.into()]),
            (
                "INSERT INTO payment_hours (hour, status, result_code, count, amount)
                 SELECT CAST($1 AS BIGINT), status, COALESCE(result_code, ''), COUNT(*), CAST(SUM(amount) AS BIGINT)
                 FROM payments WHERE created_at >= $2 AND created_at < $3 GROUP BY status, COALESCE(result_code, '')",
                vec![hour.into(), from.into(), to.into()],
            ),
            ("DELETE FROM settle_hours WHERE hour = $1", vec![hour.into()]),
            (
                "INSERT INTO settle_hours (hour, secs, count)
                 SELECT CAST($1 AS BIGINT),
                        CASE WHEN settled_at - created_at > 600000 THEN 600 ELSE (settled_at - created_at) / 1000 END,
                        COUNT(*)
                 FROM payments WHERE created_at >= $2 AND created_at < $3 AND settled_by IN ('callback', 'query')
                 GROUP BY CASE WHEN settled_at - created_at > 600000 THEN 600 ELSE (settled_at - created_at) / 1000 END",
                vec![hour.into(), from.into(), to.into()],
            ),
        ])
        .await
        .map(drop)
    }

    /// How many payments are flagged for review, and how many webhook events are dead.
    pub async fn attention_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let rows = self
            .query(
                "SELECT (SELECT COUNT(*) FROM payments WHERE needs_review),
                        (SELECT COUNT(*) FROM callbacks
                         WHERE resolved_at IS NULL AND (payment_id IS NULL OR outcome = 'malformed')),
                        (SELECT COUNT(*) FROM webhook_events WHERE status = 'dead')",
                vec![],
            )
            .await?;
        let r = first(&rows);
        let at = |i: usize| r.and_then(|r| r.get(i)).map_or(0, Cell::int);
        Ok((at(0), at(1), at(2)))
    }

    /// Recent webhook events across all payments (optionally one status), newest first:
    /// (event id, payment id, type, status, attempts, created ms, delivered ms).
    pub async fn recent_webhook_events(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, String, String, String, i64, i64, Option<i64>)>, StoreError> {
        let rows = match status {
            Some(s) => {
                self.query(
                    "SELECT id, payment_id, type, status, attempts, created_at, delivered_at FROM webhook_events
                     WHERE status = $1 ORDER BY created_at DESC, id LIMIT $2",
                    vec![s.into(), limit.into()],
                )
                .await?
            }
            None => {
                self.query(
                    "SELECT id, payment_id, type, status, attempts, created_at, delivered_at FROM webhook_events
                     ORDER BY created_at DESC, id LIMIT $1",
                    vec![limit.into()],
                )
                .await?
            }
        };
        Ok(rows
            .iter()
            .map(|r| {
                let t = |i: usize| r.get(i).map(Cell::text).unwrap_or_default();
                (
                    t(0),
                    t(1),
                    t(2),
                    t(3),
                    r.get(4).map_or(0, Cell::int),
                    r.get(5).map_or(0, Cell::int),
                    r.get(6).and_then(Cell::opt_int),
                )
            })
            .collect())
    }
}
