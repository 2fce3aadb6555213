//! The worker jobs' rows: leasing what is due (STK Queries, receipt emails) and recording
//! how an attempt went (a query with no final answer, an email, a webhook delivery). Written
//! once for both databases; a lease is one `UPDATE … RETURNING` whose `/*skip_locked*/`
//! PostgreSQL runs as `FOR UPDATE SKIP LOCKED` (see [`super::sql`]), so concurrent workers of
//! several processes never take the same row.

use super::sql::{Arg, Statement};
use super::{DueCheck, EmailJob, EmailNext, Store, StoreError, WebhookAttempt, WebhookJob, WebhookNext, has_nul};
use crate::payment::PaymentId;

fn attempts(cell: &super::sql::Cell) -> u32 {
    u32::try_from(cell.int()).unwrap_or(0)
}

/// A timeline entry, written in the same transaction as what it tells.
fn event(id: &PaymentId, at: i64, kind: &str, detail: &serde_json::Value) -> Statement {
    (
        "INSERT INTO events (payment_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
        vec![id.as_str().into(), at.into(), kind.into(), detail.to_string().into()],
    )
}

/// The emails row for an attempt's outcome: status, next attempt, error, attempts added.
fn email_columns(next: &EmailNext) -> (&'static str, Option<i64>, Option<&str>, i64) {
    match next {
        EmailNext::Sent => ("sent", None, None, 1),
        EmailNext::RetryAt(at, error) => ("pending", Some(*at), Some(error), 1),
        EmailNext::Dead(error) => ("dead", None, Some(error), 1),
        EmailNext::Skipped(reason) => ("skipped", None, Some(reason), 0),
    }
}

/// The timeline entry for an email attempt.
fn email_event(job: &EmailJob, next: &EmailNext) -> (&'static str, serde_json::Value) {
    let to = &job.recipient;
    match next {
        EmailNext::Sent => ("email_sent", serde_json::json!({"to": to, "attempt": job.attempts + 1})),
        EmailNext::RetryAt(at, error) => (
            "email_failed",
            serde_json::json!({"to": to, "attempt": job.attempts + 1, "error": error, "retry_at": crate::time_fmt::rfc3339(*at)}),
        ),
        EmailNext::Dead(error) => {
            ("email_dead", serde_json::json!({"to": to, "attempt": job.attempts + 1, "error": error}))
        }
        EmailNext::Skipped(reason) => ("email_skipped", serde_json::json!({"to": to, "reason": reason})),
    }
}

impl Store {
    /// Leases up to `limit` pending payments due for a query until `lease_until`.
    pub async fn claim_due_checks(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<DueCheck>, StoreError> {
        let rows = self
            .execute_returning(
                "UPDATE payments SET lease_until = $2
                 WHERE id IN (SELECT id FROM payments
                              WHERE status = 'pending' AND next_check_at IS NOT NULL AND next_check_at <= $1
                                AND checkout_request_id IS NOT NULL AND (lease_until IS NULL OR lease_until <= $1)
                              ORDER BY next_check_at LIMIT $3 /*skip_locked*/)
                 RETURNING id, checkout_request_id, check_attempts, created_at",
                vec![now.into(), lease_until.into(), i64::from(limit).into()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| DueCheck {
                id: PaymentId::from_db(r[0].text()),
                checkout_request_id: r[1].text(),
                attempts: attempts(&r[2]),
                created_at: r[3].int(),
            })
            .collect())
    }

    /// Records a query that gave no final answer and when to ask again.
    pub async fn reschedule_check(
        &self,
        id: &PaymentId,
        note: String,
        next_at: i64,
        query_failed: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute_all(vec![
            (
                "UPDATE payments SET check_attempts = check_attempts + 1, lease_until = NULL,
                    next_check_at = CASE WHEN status = 'pending' THEN CAST($2 AS BIGINT) END, query_failed_at = $3
                 WHERE id = $1",
                vec![id.as_str().into(), next_at.into(), Arg::from(query_failed.then_some(now))],
            ),
            event(id, now, "query", &serde_json::json!({"answer": note})),
        ])
        .await
        .map(drop)
    }

    /// Leases up to `limit` receipt emails due at `now` until `lease_until`.
    pub async fn claim_due_emails(&self, now: i64, lease_until: i64, limit: u32) -> Result<Vec<EmailJob>, StoreError> {
        let rows = self
            .execute_returning(
                "UPDATE emails SET lease_until = $2
                 WHERE id IN (SELECT id FROM emails
                              WHERE status = 'pending' AND next_attempt_at <= $1
                                AND (lease_until IS NULL OR lease_until <= $1)
                              ORDER BY next_attempt_at LIMIT $3 /*skip_locked*/)
                 RETURNING id, payment_id, recipient, attempts, created_at, refund_id",
                vec![now.into(), lease_until.into(), i64::from(limit).into()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| EmailJob {
                id: r[0].text(),
                payment_id: PaymentId::from_db(r[1].text()),
                refund_id: r[5].opt_text().map(crate::refund::RefundId::from_db),
                recipient: r[2].text(),
                attempts: attempts(&r[3]),
                created_at: r[4].int(),
            })
            .collect())
    }

    /// Records an email attempt's outcome, and puts it on the payment's timeline.
    pub async fn finish_email(&self, job: &EmailJob, next: EmailNext, now: i64) -> Result<(), StoreError> {
        let (status, next_at, error, tried) = email_columns(&next);
        let (kind, detail) = email_event(job, &next);
        self.execute_all(vec![
            (
                "UPDATE emails SET status = $2, next_attempt_at = $3, last_error = $4, attempts = attempts + CAST($5 AS BIGINT),
                    sent_at = CASE WHEN $2 = 'sent' THEN CAST($6 AS BIGINT) END, lease_until = NULL
                 WHERE id = $1",
                vec![
                    job.id.as_str().into(),
                    status.into(),
                    Arg::from(next_at),
                    Arg::from(error),
                    tried.into(),
                    now.into(),
                ],
            ),
            event(&job.payment_id, now, kind, &detail),
        ])
        .await
        .map(drop)
    }

    /// Leases up to `limit` webhook events due at `now` until `lease_until`, oldest due first:
    /// at most `per_endpoint` for one URL (an event's own, or `""` for the default one), and
    /// none for the endpoints in `busy`: origins (`https://host:port`) whose URLs, whatever
    /// their path or query, are all left out (and `""` for the default URL). So one slow
    /// endpoint's backlog cannot fill a claim and keep the others' events waiting behind it.
    pub async fn claim_due_webhooks(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
        per_endpoint: u32,
        busy: Vec<String>,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        // The due events of endpoints that are not busy, in due order (a few times the limit
        // of them, skipping those another process holds), then at most `per_endpoint` of each.
        let rows = self
            .execute_returning(
                "UPDATE webhook_events SET lease_until = $2
                 WHERE id IN (
                    SELECT id FROM (
                        SELECT id, next_attempt_at,
                               ROW_NUMBER() OVER (PARTITION BY endpoint ORDER BY next_attempt_at, id) AS nth
                        FROM (SELECT id, next_attempt_at, COALESCE(url, '') AS endpoint FROM webhook_events
                              WHERE status = 'pending' AND next_attempt_at <= $1
                                AND (lease_until IS NULL OR lease_until <= $1)
                                AND NOT EXISTS (SELECT 1 FROM json_each($5) AS busy
                                                WHERE COALESCE(url, '') = busy.value OR url LIKE busy.value || '/%'
                                                   OR url LIKE busy.value || '?%' OR url LIKE busy.value || '#%')
                              ORDER BY next_attempt_at LIMIT CAST($3 AS BIGINT) * 4 /*skip_locked*/) due
                    ) ranked
                    WHERE nth <= CAST($4 AS BIGINT) ORDER BY next_attempt_at, id LIMIT CAST($3 AS BIGINT))
                 RETURNING id, payment_id, api_key_id, type, url, payload, attempts, created_at",
                vec![
                    now.into(),
                    lease_until.into(),
                    i64::from(limit).into(),
                    i64::from(per_endpoint).into(),
                    serde_json::Value::from(busy).to_string().into(),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| WebhookJob {
                id: r[0].text(),
                payment_id: r[1].text(),
                api_key_id: r[2].text(),
                event_type: r[3].text(),
                url: r[4].opt_text(),
                payload: r[5].text(),
                attempts: attempts(&r[6]),
                created_at: r[7].int(),
                lease: lease_until,
            })
            .collect())
    }

    /// Records a webhook delivery attempt and what happens next, in one commit. Only the
    /// claim that still holds the event's `lease` decides what happens next, and a redelivery
    /// asked for while the attempt was under way is kept: an attempt that outlived its lease,
    /// or that a redelivery overtook, records itself and leaves the rest as it is.
    pub async fn finish_webhook_attempt(
        &self,
        attempt: Option<WebhookAttempt>,
        event_id: &str,
        lease: i64,
        next: WebhookNext,
    ) -> Result<(), StoreError> {
        let at = attempt.as_ref().map(|a| a.at);
        // A redelivery asked for after the attempt began moved `next_attempt_at` past its start.
        let started = at.unwrap_or(i64::MAX);
        let (status, next_at, delivered) = match next {
            WebhookNext::Delivered => ("delivered", None, at),
            WebhookNext::RetryAt(t) => ("pending", Some(t), None),
            WebhookNext::Dead => ("dead", None, None),
            WebhookNext::NoEndpoint => ("no_endpoint", None, None),
        };
        let mut statements = Vec::with_capacity(3);
        let tried = i64::from(attempt.is_some());
        if let Some(a) = attempt {
            statements.push((
                "INSERT INTO webhook_attempts (event_id, at, url, status, latency_ms, error, response)
                 VALUES ($1, $2, $3, CAST($4 AS BIGINT), $5, $6, $7)",
                vec![
                    a.event_id.into(),
                    a.at.into(),
                    a.url.into(),
                    Arg::from(a.status.map(i64::from)),
                    a.latency_ms.into(),
                    a.error.into(),
                    a.response.into(),
                ],
            ));
        }
        // What happens next, only for the lease holder and only if no redelivery came since.
        statements.push((
            "UPDATE webhook_events SET status = $2, next_attempt_at = $3, delivered_at = COALESCE($4, delivered_at)
             WHERE id = $1 AND lease_until = CAST($5 AS BIGINT)
               AND NOT (status = 'pending' AND next_attempt_at > CAST($6 AS BIGINT))",
            vec![
                event_id.into(),
                status.into(),
                Arg::from(next_at),
                Arg::from(delivered),
                lease.into(),
                started.into(),
            ],
        ));
        // The attempt counts whoever made it; the lease is released only by its holder.
        statements.push((
            "UPDATE webhook_events SET attempts = attempts + CAST($2 AS BIGINT),
                lease_until = CASE WHEN lease_until = CAST($3 AS BIGINT) THEN NULL ELSE lease_until END
             WHERE id = $1",
            vec![event_id.into(), tried.into(), lease.into()],
        ));
        self.execute_all(statements).await.map(drop)
    }

    /// Queues an event for delivery again now (optionally only if it belongs to `api_key_id`).
    pub async fn redeliver_webhook(
        &self,
        event_id: &str,
        api_key_id: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        if has_nul(event_id) {
            return Ok(false);
        }
        let changed = self
            .execute_all(vec![(
                "UPDATE webhook_events SET status = 'pending', next_attempt_at = $2,
                    lease_until = CASE WHEN lease_until > $2 THEN lease_until END
                 WHERE id = $1 AND (CAST($3 AS TEXT) IS NULL OR api_key_id = $3)",
                vec![event_id.into(), now.into(), api_key_id.map(str::to_owned).into()],
            )])
            .await?;
        Ok(changed.iter().sum::<u64>() > 0)
    }
}
