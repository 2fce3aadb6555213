//! PostgreSQL backend: the scale-out store. Any number of `lipa serve` / `lipa work`
//! processes share one database; the rules that must hold across them are enforced here:
//! - a callback settles its payment under `SELECT … FOR UPDATE`, so concurrent copies
//!   delivered to different replicas serialise on the row and apply once;
//! - a payment insert takes a per-phone advisory lock, so two replicas cannot both pass the
//!   live-prompt check for one phone;
//! - reconciliation claims rows with `FOR UPDATE SKIP LOCKED` and a lease;
//! - migrations run under an advisory lock, so replicas starting together migrate once.
//!
//! Durability is PostgreSQL's own: a COMMIT returns once the server's WAL is flushed. That
//! holds only with `synchronous_commit` on, which the server, the role or the database can
//! turn off; so every connection sets it on when it opens, and the store refuses to start (and
//! reports itself not ready) on a connection where it is still off. Concurrent commits from
//! the pool share WAL flushes.

use deadpool_postgres::{GenericClient, Hook, HookError, Pool, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::sql::{Arg, Cell, Rows, Statement};
use super::{
    ASKABLE_NO_LONGER, ApiKey, CallbackStored, CheckoutSession, DueCheck, EmailJob, EmailNext, Event, IncomingCallback,
    Inserted, Kept, NewCheckoutSession, NewPayment, PUSH_UNHEARD, PaymentFilter, PushResult, SessionInserted, Settling,
    StoreError, StoredCallback, WebhookAttempt, WebhookEvent, WebhookJob, WebhookNext, announcement, callback_decision,
    current, expiry_note, kept, new_email_id, new_event_id, sends_receipt, settlement_event, webhook_payload,
};
use crate::payment::{FailureReason, Payment, PaymentId, SettledBy, Status};
use crate::settlement::{self, Change, Decision};

mod ingest;

const MIGRATION_LOCK: i64 = 0x6c69_7061; // "lipa"

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Callbacks waiting for a shared commit (`None` in the collector's own copy).
    ingest: Option<ingest::Queue>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("pool_size", &self.pool.status().max_size).finish_non_exhaustive()
    }
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    // The server's own message ("db error" alone says nothing).
    let text = e.as_db_error().map_or_else(|| e.to_string(), |db| format!("{} ({})", db.message(), db.code().code()));
    match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => StoreError::Conflict(text),
        Some(c) if c.code().starts_with("22") => StoreError::Corrupt(text),
        _ => StoreError::Unavailable(text),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {e}"))
}

type Client = deadpool_postgres::Object;

/// Counts a callback no payment took beyond the storage budget, under its minute.
const COUNT_UNMATCHED: &str =
    "INSERT INTO unmatched_callback_counts (minute, count, bytes, last_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (minute) DO UPDATE SET count = unmatched_callback_counts.count + excluded.count,
        bytes = unmatched_callback_counts.bytes + excluded.bytes,
        last_at = GREATEST(unmatched_callback_counts.last_at, excluded.last_at)";

/// Run on every new connection: COMMIT waits for the server's WAL flush, whatever the server,
/// role or database default.
const DURABLE_COMMITS: &str = "SET synchronous_commit = on";

/// Fails unless a COMMIT on this connection waits for the server's WAL flush. It can still be
/// off behind a pooler in transaction mode, which runs the `SET` on one server connection and
/// later transactions on others.
async fn commits_durably(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    let row = client.query_one("SELECT current_setting('synchronous_commit')", &[]).await.map_err(pg_error)?;
    let setting: String = row.get(0);
    if setting == "off" {
        return Err(StoreError::Unavailable(
            "PostgreSQL acknowledges commits before they are on disk here (synchronous_commit = off) \
             and Lipa's `SET synchronous_commit = on` did not hold; turn it on for Lipa's role and database, \
             and use a pooler in session mode"
                .into(),
        ));
    }
    Ok(())
}

impl PostgresStore {
    /// Connects (a pool of up to 32 connections) and migrates.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let mut config = deadpool_postgres::Config::new();
        config.url = Some(url.to_owned());
        // Bounded waits: an unreachable or saturated database answers "unavailable" (503) within
        // seconds instead of holding requests open.
        let wait = Some(std::time::Duration::from_secs(5));
        config.pool = Some(deadpool_postgres::PoolConfig {
            max_size: 32,
            timeouts: deadpool_postgres::Timeouts { wait, create: wait, recycle: wait },
            ..deadpool_postgres::PoolConfig::default()
        });
        let unusable = |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("DATABASE_URL is not usable: {e}"));
        let pool = config
            .builder(NoTls)
            .map_err(|e| unusable(&e))?
            .runtime(Runtime::Tokio1)
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move { client.batch_execute(DURABLE_COMMITS).await.map_err(HookError::Backend) })
            }))
            .build()
            .map_err(|e| unusable(&e))?;
        let mut store = Self { pool, ingest: None };
        commits_durably(&**store.client().await?).await?;
        store.migrate().await?;
        store.ingest = Some(ingest::start(store.clone()));
        Ok(store)
    }

    async fn client(&self) -> Result<Client, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(pg_error)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS lipa_schema (version INTEGER NOT NULL)")
            .await
            .map_err(pg_error)?;
        let version: Option<i32> =
            tx.query_opt("SELECT max(version) FROM lipa_schema", &[]).await.map_err(pg_error)?.and_then(|r| r.get(0));
        let version = usize::try_from(version.unwrap_or(0)).unwrap_or(0);
        let versions = super::migrations(
            include_str!("schema_postgres.sql"),
            include_str!("schema_v2_postgres.sql"),
            include_str!("schema_v6_postgres.sql"),
        );
        for (done, (sql, what)) in versions.into_iter().enumerate().skip(version) {
            let version = i32::try_from(done + 1).unwrap_or(i32::MAX);
            tx.batch_execute(sql).await.map_err(pg_error)?;
            tx.execute("INSERT INTO lipa_schema (version) VALUES ($1)", &[&version]).await.map_err(pg_error)?;
            tracing::info!("database schema at version {version} ({what})");
        }
        tx.commit().await.map_err(pg_error)
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        commits_durably(&**self.client().await?).await
    }

    // ---- API keys ----

    pub(super) async fn insert_api_key(&self, key: ApiKey, key_hash: String) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO api_keys (id, name, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&key.id, &key.name, &key_hash, &key.prefix, &key.created_at],
            )
            .await
            .map_err(pg_error)
            .map(|_| ())
    }

    pub(super) async fn api_key_by_hash(&self, key_hash: String) -> Result<Option<ApiKey>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                &[&key_hash],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.as_ref().map(api_key_from_row))
    }

    pub(super) async fn revoke_api_key(&self, id_or_name: String, now: i64) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
                &[&id_or_name, &now],
            )
            .await
            .map_err(pg_error)?;
        Ok(n > 0)
    }

    pub(super) async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = self
            .client()
            .await?
            .query("SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at", &[])
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(api_key_from_row).collect())
    }

    // ---- payments ----

    pub(super) async fn payment_by_idempotency_key(
        &self,
        api_key_id: String,
        key: String,
    ) -> Result<Option<(Payment, String)>, StoreError> {
        by_idempotency_key(&self.client().await?, &api_key_id, &key).await
    }

    pub(super) async fn insert_payment(&self, new: NewPayment) -> Result<Inserted, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // One phone at a time across every replica: the live-prompt check and the insert must
        // not interleave with another request for the same phone.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&new.phone]).await.map_err(pg_error)?;
        if let Some(key) = &new.idempotency_key
            && let Some((payment, hash)) = by_idempotency_key(&tx, &new.api_key_id, key).await?
        {
            return Ok(Inserted::Existing(payment, hash));
        }
        let row = tx
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'pending' AND push_state IN ('sending', 'accepted', 'unknown')
                                          AND created_at >= $2),
                        count(*)
                 FROM payments WHERE phone = $1 AND created_at >= $3",
                &[&new.phone, &new.live_prompt_since, &new.per_phone_since],
            )
            .await
            .map_err(pg_error)?;
        let (live, count): (i64, i64) = (row.get(0), row.get(1));
        if live > 0 {
            return Ok(Inserted::PhoneBusy);
        }
        if count >= i64::from(new.per_phone_limit) {
            return Ok(Inserted::TooManyForPhone(u32::try_from(count).unwrap_or(u32::MAX)));
        }
        let inserted = tx
            .execute(
                "INSERT INTO payments (id, api_key_id, idempotency_key, request_hash, amount, phone, account_reference,
                    description, metadata, webhook_url, customer_email, status, callback_token_hash, push_state,
                    created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, 'sending', $13, $13)",
                &[
                    &new.id.as_str(),
                    &new.api_key_id,
                    &new.idempotency_key,
                    &new.request_hash,
                    &i64::from(new.amount),
                    &new.phone,
                    &new.account_reference,
                    &new.description,
                    &new.metadata.to_string(),
                    &new.webhook_url,
                    &new.customer_email,
                    &new.callback_token_hash,
                    &new.now,
                ],
            )
            .await;
        match inserted.map_err(pg_error) {
            Ok(_) => {}
            // Another replica inserted the same idempotency key for a different phone first.
            Err(StoreError::Conflict(_)) if new.idempotency_key.is_some() => {
                drop(tx);
                let key = new.idempotency_key.clone().unwrap_or_default();
                let client = self.client().await?;
                return match by_idempotency_key(&client, &new.api_key_id, &key).await? {
                    Some((payment, hash)) => Ok(Inserted::Existing(payment, hash)),
                    None => Err(StoreError::Conflict("idempotency key race".into())),
                };
            }
            Err(e) => return Err(e),
        }
        event(&tx, &new.id, new.now, "created", &serde_json::json!({"amount": new.amount, "phone": new.phone})).await?;
        if let Some(a) = &new.checkout {
            // Only the attempt after the session's last one is taken.
            let attempt = i32::try_from(a.attempt).map_err(|_| corrupt("attempt out of range"))?;
            tx.execute(
                "UPDATE checkout_sessions SET payment_id = $2, attempts = $3 WHERE id = $1 AND attempts = $3 - 1",
                &[&a.session_id, &new.id.as_str(), &attempt],
            )
            .await
            .map_err(pg_error)?;
        }
        let payment = load(&tx, &new.id).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Inserted::Created(payment))
    }

    pub(super) async fn record_push(&self, id: PaymentId, result: PushResult, now: i64) -> Result<Payment, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        match &result {
            PushResult::Accepted { merchant_request_id, checkout_request_id, first_check_at } => {
                tx.execute(
                    "UPDATE payments SET push_state = 'accepted', merchant_request_id = $2,
                        checkout_request_id = COALESCE(checkout_request_id, $3),
                        next_check_at = CASE WHEN status = 'pending' THEN $4::BIGINT END, updated_at = GREATEST(updated_at, $5)
                     WHERE id = $1",
                    &[&id.as_str(), merchant_request_id, checkout_request_id, first_check_at, &now],
                )
                .await
                .map_err(pg_error)?;
                let detail = serde_json::json!({"merchant_request_id": merchant_request_id, "checkout_request_id": checkout_request_id});
                event(&tx, &id, now, "push_accepted", &detail).await?;
            }
            PushResult::Refused { code, message } => {
                // Fails the payment only if nothing settled it meanwhile (a callback can race
                // the push's answer); only that move is announced.
                let failed = tx
                    .execute(
                        "UPDATE payments SET push_state = 'refused', status = 'failed', failure_reason = $2,
                            result_code = $3, result_desc = $4, settled_by = 'push', settled_at = $5, updated_at = $5
                         WHERE id = $1 AND status = 'pending'",
                        &[&id.as_str(), &FailureReason::RejectedByDaraja.as_str(), code, message, &now],
                    )
                    .await
                    .map_err(pg_error)?;
                if failed == 0 {
                    tx.execute(
                        "UPDATE payments SET push_state = 'refused', updated_at = GREATEST(updated_at, $2) WHERE id = $1",
                        &[&id.as_str(), &now],
                    )
                    .await
                    .map_err(pg_error)?;
                }
                event(&tx, &id, now, "push_refused", &serde_json::json!({"code": code, "message": message})).await?;
                if failed > 0 {
                    announce(&tx, &id, "payment.failed", now).await?;
                }
            }
            PushResult::Unknown { error, first_check_at } => {
                tx.execute(
                    "UPDATE payments SET push_state = 'unknown', next_check_at = $2, updated_at = GREATEST(updated_at, $3) WHERE id = $1",
                    &[&id.as_str(), first_check_at, &now],
                )
                .await
                .map_err(pg_error)?;
                event(&tx, &id, now, "push_unknown", &serde_json::json!({"error": error})).await?;
            }
        }
        let payment = load(&tx, &id).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(payment)
    }

    pub(super) async fn payment(
        &self,
        id: PaymentId,
        api_key_id: Option<String>,
    ) -> Result<Option<Payment>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"), &[&id.as_str()])
            .await
            .map_err(pg_error)?;
        let payment = row.as_ref().map(payment_from_row).transpose()?;
        Ok(payment.filter(|p| api_key_id.as_ref().is_none_or(|k| &p.api_key_id == k)))
    }

    pub(super) async fn payments(&self, f: PaymentFilter) -> Result<Vec<Payment>, StoreError> {
        let mut sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE TRUE");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut push = |clause: &str, value: Box<dyn ToSql + Sync + Send>| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(k) = f.api_key_id {
            push(" AND api_key_id = ?", Box::new(k));
        }
        if let Some(s) = f.status {
            push(" AND status = ?", Box::new(s.as_str()));
        }
        if let Some(p) = f.phone {
            push(" AND phone = ?", Box::new(p));
        }
        if let Some(r) = f.reference {
            push(" AND account_reference = ?", Box::new(r));
        }
        if let Some(r) = f.receipt {
            push(" AND receipt = ?", Box::new(r));
        }
        if let Some(t) = f.created_from {
            push(" AND created_at >= ?", Box::new(t));
        }
        if let Some(t) = f.created_to {
            push(" AND created_at < ?", Box::new(t));
        }
        if let Some(id) = f.id {
            push(" AND id = ?", Box::new(id));
        }
        if let Some(a) = f.min_amount {
            push(" AND amount >= ?", Box::new(i64::from(a)));
        }
        if let Some(a) = f.max_amount {
            push(" AND amount <= ?", Box::new(i64::from(a)));
        }
        if let Some(flagged) = f.needs_review {
            push(" AND needs_review = ?", Box::new(flagged));
        }
        if let Some((at, id)) = f.after {
            push(" AND (created_at, id) < (?", Box::new(at));
            push(", ?)", Box::new(id));
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT {}", f.limit.clamp(1, 1000)));
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
        let rows = self.client().await?.query(&sql, &refs).await.map_err(pg_error)?;
        rows.iter().map(payment_from_row).collect()
    }

    pub(super) async fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query("SELECT status, count(*) FROM payments GROUP BY status ORDER BY status", &[])
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| (r.get(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0))).collect())
    }

    // ---- callbacks and queries ----

    /// Settles a callback in a commit shared with the callbacks arriving beside it.
    pub(super) async fn settle_from_callback(&self, incoming: IncomingCallback) -> Result<CallbackStored, StoreError> {
        let Some(queue) = &self.ingest else { return self.settle_one(incoming).await };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if queue.send((incoming, reply)).is_err() {
            return Err(StoreError::Unavailable("the callback writer has stopped".into()));
        }
        answer.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the callback writer has stopped".into())))
    }

    /// Settles one callback in its own transaction.
    async fn settle_one(&self, incoming: IncomingCallback) -> Result<CallbackStored, StoreError> {
        let mut client = self.client().await?;
        let mut tx = client.transaction().await.map_err(pg_error)?;
        let select = tx
            .prepare_cached(
                "SELECT id, status, amount, phone, checkout_request_id, receipt, result_code, settled_by
                 FROM payments WHERE callback_token_hash = $1 FOR UPDATE",
            )
            .await
            .map_err(pg_error)?;
        let found = tx.query_opt(&select, &[&incoming.token_hash]).await.map_err(pg_error)?;
        let found = found.as_ref().map(settling_from_row).transpose()?;
        let checkout_id = incoming.parsed.as_ref().ok().map(|cb| cb.checkout_request_id.as_str().to_owned());
        let decision = callback_decision(&incoming.parsed, found.as_ref().map(Settling::current));
        // A malformed body with a known token still belongs to that payment: flagged for review,
        // with its reason on the payment's timeline.
        let (decision, status) = match &found {
            Some(p) => {
                let (decision, status) =
                    apply(&mut tx, &p.id, p.status, decision, "callback", incoming.received_at).await?;
                (decision, Some(status))
            }
            None => (decision, None),
        };
        let payment_id = found.map(|p| p.id);
        let (note, body) = match kept(&incoming, payment_id.is_some(), decision.note) {
            Kept::Row { note, body } => (note, body),
            Kept::Counted(t) => {
                tx.execute(COUNT_UNMATCHED, &[&t.minute, &1_i64, &t.bytes, &t.at]).await.map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)?;
                return Ok(CallbackStored { outcome: decision.outcome, stored: false, payment_id, status });
            }
        };
        let insert = tx
            .prepare_cached(
                "INSERT INTO callbacks (received_at, payment_id, token_hash, source, checkout_request_id, outcome, note, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .await
            .map_err(pg_error)?;
        tx.execute(
            &insert,
            &[
                &incoming.received_at,
                &payment_id.as_ref().map(PaymentId::as_str),
                &incoming.token_hash,
                &incoming.source,
                &checkout_id,
                &decision.outcome.as_str(),
                &note,
                &body,
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(CallbackStored { outcome: decision.outcome, stored: true, payment_id, status })
    }

    pub(super) async fn claim_due_checks(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<DueCheck>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE payments SET lease_until = $2
                 WHERE id IN (SELECT id FROM payments
                              WHERE status = 'pending' AND next_check_at IS NOT NULL AND next_check_at <= $1
                                AND checkout_request_id IS NOT NULL AND (lease_until IS NULL OR lease_until <= $1)
                              ORDER BY next_check_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, checkout_request_id, check_attempts, created_at",
                &[&now, &lease_until, &i64::from(limit)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| DueCheck {
                id: PaymentId::from_db(r.get(0)),
                checkout_request_id: r.get(1),
                attempts: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
                created_at: r.get(3),
            })
            .collect())
    }

    pub(super) async fn settle_from_query(
        &self,
        id: PaymentId,
        result: daraja::QueryResult,
        now: i64,
    ) -> Result<Decision, StoreError> {
        let mut client = self.client().await?;
        let mut tx = client.transaction().await.map_err(pg_error)?;
        let row = tx
            .query_one(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 FOR UPDATE"), &[&id.as_str()])
            .await
            .map_err(pg_error)?;
        let payment = payment_from_row(&row)?;
        let decision = settlement::on_query(&current(&payment), &result);
        tx.execute(
            "UPDATE payments SET check_attempts = check_attempts + 1, lease_until = NULL, next_check_at = NULL WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .map_err(pg_error)?;
        let (decision, _) = apply(&mut tx, &payment.id, payment.status, decision, "query", now).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(decision)
    }

    pub(super) async fn reschedule_check(
        &self,
        id: PaymentId,
        note: String,
        next_at: i64,
        failed_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute(
            "UPDATE payments SET check_attempts = check_attempts + 1, lease_until = NULL,
                next_check_at = CASE WHEN status = 'pending' THEN $2::BIGINT END, query_failed_at = $3
             WHERE id = $1",
            &[&id.as_str(), &next_at, &failed_at],
        )
        .await
        .map_err(pg_error)?;
        event(&tx, &id, now, "query", &serde_json::json!({"answer": note})).await?;
        tx.commit().await.map_err(pg_error)
    }

    pub(super) async fn expire_overdue(
        &self,
        created_before: i64,
        failing_before: i64,
        now: i64,
    ) -> Result<Vec<PaymentId>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let rows = tx
            .query(
                &format!(
                    "UPDATE payments SET status = 'expired', settled_by = 'expiry', settled_at = $2, updated_at = $2,
                        next_check_at = NULL, lease_until = NULL, needs_review = needs_review OR {PUSH_UNHEARD}
                     WHERE id IN (SELECT id FROM payments WHERE status = 'pending' AND created_at < $1
                         AND (lease_until IS NULL OR lease_until <= $2)
                         AND ({ASKABLE_NO_LONGER} OR created_at < $3) FOR UPDATE SKIP LOCKED)
                     RETURNING id, {PUSH_UNHEARD}"
                ),
                &[&created_before, &now, &failing_before],
            )
            .await
            .map_err(pg_error)?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = PaymentId::from_db(r.get(0));
            event(&tx, &id, now, "expired", &expiry_note(r.get(1))).await?;
            announce(&tx, &id, "payment.expired", now).await?;
            ids.push(id);
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(ids)
    }

    // ---- plain SQL (see `sql.rs`) ----

    pub(super) async fn query(&self, sql: &'static str, args: Vec<Arg>) -> Result<Rows, StoreError> {
        let args: Vec<Box<dyn ToSql + Sync + Send>> = args.iter().map(pg_arg).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
        let rows = self.client().await?.query(sql, &refs).await.map_err(pg_error)?;
        rows.iter().map(|r| (0..r.len()).map(|i| pg_cell(r, i)).collect()).collect()
    }

    pub(super) async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let mut counts = Vec::with_capacity(statements.len());
        for (sql, args) in &statements {
            let args: Vec<Box<dyn ToSql + Sync + Send>> = args.iter().map(pg_arg).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
            counts.push(tx.execute(*sql, &refs).await.map_err(pg_error)?);
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(counts)
    }

    // ---- checkout sessions ----

    pub(super) async fn insert_checkout_session(&self, new: NewCheckoutSession) -> Result<SessionInserted, StoreError> {
        let client = self.client().await?;
        let find = async |key: &str| -> Result<Option<SessionInserted>, StoreError> {
            let row = client
                .query_opt(
                    &format!(
                        "SELECT {SESSION_COLUMNS}, request_hash FROM checkout_sessions
                         WHERE api_key_id = $1 AND idempotency_key = $2"
                    ),
                    &[&new.session.api_key_id, &key],
                )
                .await
                .map_err(pg_error)?;
            row.map(|r| Ok(SessionInserted::Existing(session_from_row(&r)?, r.get(SESSION_COLUMN_COUNT)))).transpose()
        };
        if let Some(key) = &new.idempotency_key
            && let Some(existing) = find(key).await?
        {
            return Ok(existing);
        }
        let s = &new.session;
        let inserted = client
            .execute(
                "INSERT INTO checkout_sessions (id, api_key_id, idempotency_key, request_hash, amount, account_reference,
                    description, success_url, cancel_url, phone, customer_email, webhook_url, metadata, created_at,
                    expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT (api_key_id, idempotency_key) DO NOTHING",
                &[
                    &s.id,
                    &s.api_key_id,
                    &new.idempotency_key,
                    &new.request_hash,
                    &i32::try_from(s.amount).map_err(|_| corrupt("amount out of range"))?,
                    &s.account_reference,
                    &s.description,
                    &s.success_url,
                    &s.cancel_url,
                    &s.phone,
                    &s.customer_email,
                    &s.webhook_url,
                    &s.metadata.to_string(),
                    &s.created_at,
                    &s.expires_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        // Zero rows: a concurrent request with the same key won the insert; answer with its session.
        match (inserted, &new.idempotency_key) {
            (0, Some(key)) => find(key).await?.ok_or_else(|| StoreError::Conflict("checkout session vanished".into())),
            _ => Ok(SessionInserted::Created(new.session.clone())),
        }
    }

    pub(super) async fn checkout_session(&self, id: String) -> Result<Option<CheckoutSession>, StoreError> {
        self.client()
            .await?
            .query_opt(&format!("SELECT {SESSION_COLUMNS} FROM checkout_sessions WHERE id = $1"), &[&id])
            .await
            .map_err(pg_error)?
            .map(|r| session_from_row(&r))
            .transpose()
    }

    // ---- emails ----

    pub(super) async fn claim_due_emails(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<EmailJob>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE emails SET lease_until = $2
                 WHERE id IN (SELECT id FROM emails
                              WHERE status = 'pending' AND next_attempt_at <= $1
                                AND (lease_until IS NULL OR lease_until <= $1)
                              ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, payment_id, recipient, attempts, created_at",
                &[&now, &lease_until, &i64::from(limit)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| EmailJob {
                id: r.get(0),
                payment_id: PaymentId::from_db(r.get(1)),
                recipient: r.get(2),
                attempts: u32::try_from(r.get::<_, i32>(3)).unwrap_or(0),
                created_at: r.get(4),
            })
            .collect())
    }

    pub(super) async fn finish_email(&self, job: EmailJob, next: EmailNext, now: i64) -> Result<(), StoreError> {
        let (status, next_at, error, tried) = super::email_columns(&next);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute(
            "UPDATE emails SET status = $2, next_attempt_at = $3, last_error = $4, attempts = attempts + $5,
                sent_at = CASE WHEN $2 = 'sent' THEN $6::BIGINT END, lease_until = NULL
             WHERE id = $1",
            &[&job.id, &status, &next_at, &error, &tried, &now],
        )
        .await
        .map_err(pg_error)?;
        let (kind, detail) = super::email_event(&job, &next);
        event(&tx, &job.payment_id, now, kind, &detail).await?;
        tx.commit().await.map_err(pg_error)
    }

    // ---- webhooks ----

    pub(super) async fn webhook_secret(&self, api_key_id: String) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT webhook_secret FROM api_keys WHERE id = $1", &[&api_key_id])
            .await
            .map_err(pg_error)?;
        Ok(row.and_then(|r| r.get(0)))
    }

    pub(super) async fn set_webhook_secret(&self, id_or_name: String, secret: String) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE api_keys SET webhook_secret = $2 WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
                &[&id_or_name, &secret],
            )
            .await
            .map_err(pg_error)?;
        Ok(n > 0)
    }

    pub(super) async fn init_webhook_secret(&self, api_key_id: String, secret: String) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE api_keys SET webhook_secret = $2 WHERE id = $1 AND webhook_secret IS NULL",
                &[&api_key_id, &secret],
            )
            .await
            .map(drop)
            .map_err(pg_error)
    }

    pub(super) async fn claim_due_webhooks(
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
            .client()
            .await?
            .query(
                "UPDATE webhook_events SET lease_until = $2
                 WHERE id IN (
                    SELECT id FROM (
                        SELECT id, next_attempt_at,
                               ROW_NUMBER() OVER (PARTITION BY COALESCE(url, '') ORDER BY next_attempt_at, id) AS nth
                        FROM (SELECT id, url, next_attempt_at FROM webhook_events
                              WHERE status = 'pending' AND next_attempt_at <= $1
                                AND (lease_until IS NULL OR lease_until <= $1)
                                AND NOT EXISTS (SELECT 1 FROM unnest($5::TEXT[]) AS b(busy)
                                                WHERE COALESCE(url, '') = busy OR url LIKE busy || '/%'
                                                   OR url LIKE busy || '?%' OR url LIKE busy || '#%')
                              ORDER BY next_attempt_at LIMIT $3::BIGINT * 4 FOR UPDATE SKIP LOCKED) due
                    ) ranked
                    WHERE nth <= $4::BIGINT ORDER BY next_attempt_at, id LIMIT $3::BIGINT)
                 RETURNING id, payment_id, api_key_id, type, url, payload, attempts, created_at",
                &[&now, &lease_until, &i64::from(limit), &i64::from(per_endpoint), &busy],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| WebhookJob {
                id: r.get(0),
                payment_id: r.get(1),
                api_key_id: r.get(2),
                event_type: r.get(3),
                url: r.get(4),
                payload: r.get(5),
                attempts: u32::try_from(r.get::<_, i32>(6)).unwrap_or(0),
                created_at: r.get(7),
            })
            .collect())
    }

    pub(super) async fn finish_webhook_attempt(
        &self,
        attempt: Option<WebhookAttempt>,
        event_id: String,
        next: WebhookNext,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        if let Some(a) = &attempt {
            tx.execute(
                "INSERT INTO webhook_attempts (event_id, at, url, status, latency_ms, error, response)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&a.event_id, &a.at, &a.url, &a.status.map(i32::from), &a.latency_ms, &a.error, &a.response],
            )
            .await
            .map_err(pg_error)?;
        }
        let tried = i32::from(attempt.is_some());
        let at = attempt.as_ref().map(|a| a.at);
        let (status, next_at, delivered) = match next {
            WebhookNext::Delivered => ("delivered", None, at),
            WebhookNext::RetryAt(t) => ("pending", Some(t), None),
            WebhookNext::Dead => ("dead", None, None),
            WebhookNext::NoEndpoint => ("no_endpoint", None, None),
        };
        tx.execute(
            "UPDATE webhook_events SET status = $2, next_attempt_at = $3, delivered_at = COALESCE($4, delivered_at),
                attempts = attempts + $5, lease_until = NULL
             WHERE id = $1",
            &[&event_id, &status, &next_at, &delivered, &tried],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    pub(super) async fn redeliver_webhook(
        &self,
        event_id: String,
        api_key_id: Option<String>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE webhook_events SET status = 'pending', next_attempt_at = $2,
                    lease_until = CASE WHEN lease_until > $2 THEN lease_until END
                 WHERE id = $1 AND ($3::TEXT IS NULL OR api_key_id = $3)",
                &[&event_id, &now, &api_key_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(n > 0)
    }

    pub(super) async fn webhook_events(&self, id: PaymentId) -> Result<Vec<WebhookEvent>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, payment_id, type, status, created_at, delivered_at FROM webhook_events
                 WHERE payment_id = $1 ORDER BY created_at, id",
                &[&id.as_str()],
            )
            .await
            .map_err(pg_error)?;
        let mut events = Vec::with_capacity(rows.len());
        for r in &rows {
            let event_id: String = r.get(0);
            let attempts = client
                .query(
                    "SELECT event_id, at, url, status, latency_ms, error, response FROM webhook_attempts
                     WHERE event_id = $1 ORDER BY id",
                    &[&event_id],
                )
                .await
                .map_err(pg_error)?
                .iter()
                .map(|a| WebhookAttempt {
                    event_id: a.get(0),
                    at: a.get(1),
                    url: a.get(2),
                    status: a.get::<_, Option<i32>>(3).and_then(|s| u16::try_from(s).ok()),
                    latency_ms: a.get(4),
                    error: a.get(5),
                    response: a.get(6),
                })
                .collect();
            events.push(WebhookEvent {
                id: event_id,
                payment_id: r.get(1),
                event_type: r.get(2),
                status: r.get(3),
                created_at: r.get(4),
                delivered_at: r.get(5),
                attempts,
            });
        }
        Ok(events)
    }

    pub(super) async fn events(&self, id: PaymentId) -> Result<Vec<Event>, StoreError> {
        let rows = self
            .client()
            .await?
            .query("SELECT at, kind, detail FROM events WHERE payment_id = $1 ORDER BY id", &[&id.as_str()])
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| Event {
                at: r.get(0),
                kind: r.get(1),
                detail: serde_json::from_str(r.get::<_, &str>(2)).unwrap_or_default(),
            })
            .collect())
    }

    pub(super) async fn callbacks_for(&self, id: PaymentId) -> Result<Vec<StoredCallback>, StoreError> {
        let client = self.client().await?;
        stored_callbacks(&client, "WHERE payment_id = $1 ORDER BY id", &[&id.as_str()]).await
    }

    pub(super) async fn unmatched_callbacks(&self) -> Result<Vec<StoredCallback>, StoreError> {
        let client = self.client().await?;
        stored_callbacks(&client, "WHERE payment_id IS NULL ORDER BY id", &[]).await
    }
}

async fn stored_callbacks(
    c: &impl GenericClient,
    clause: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Vec<StoredCallback>, StoreError> {
    let rows = c
        .query(
            &format!("SELECT id, received_at, payment_id, outcome, note, source, body FROM callbacks {clause}"),
            args,
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|r| StoredCallback {
            id: r.get(0),
            received_at: r.get(1),
            payment_id: r.get(2),
            outcome: r.get(3),
            note: r.get(4),
            source: r.get(5),
            body: String::from_utf8_lossy(r.get::<_, &[u8]>(6)).into_owned(),
        })
        .collect())
}

/// Writes a decision's change and its timeline event (see the SQLite store's `apply`).
async fn apply(
    tx: &mut deadpool_postgres::Transaction<'_>,
    id: &PaymentId,
    status: Status,
    decision: Decision,
    source: &str,
    now: i64,
) -> Result<(Decision, Status), StoreError> {
    let mut decision = decision;
    let mut new_status = status;
    if let Some(change) = decision.change.clone() {
        if write_change(tx, id, &change, decision.outcome.needs_review(), now).await? {
            new_status = change.status;
        } else {
            // The receipt or CheckoutRequestID already belongs to another payment.
            let receipt = change.receipt.clone().unwrap_or_default();
            let other = tx
                .query_opt("SELECT id FROM payments WHERE receipt = $1", &[&receipt])
                .await
                .map_err(pg_error)?
                .map(|r| r.get::<_, String>(0));
            decision = settlement::already_used(&receipt, other.as_deref());
        }
    }
    if decision.change.is_none() && decision.outcome.needs_review() {
        tx.execute("UPDATE payments SET needs_review = TRUE, updated_at = $2 WHERE id = $1", &[&id.as_str(), &now])
            .await
            .map_err(pg_error)?;
    }
    let (kind, detail) = settlement_event(source, &decision, new_status);
    event(&*tx, id, now, &kind, &detail).await?;
    if let Some(event_type) = announcement(decision.outcome, status, new_status) {
        announce(&*tx, id, event_type, now).await?;
    }
    Ok((decision, new_status))
}

/// Writes the change unless its receipt or CheckoutRequestID belongs to another payment
/// (then returns false and writes nothing). Two concurrent settlements of different payments
/// with one receipt are still stopped by the unique index (the loser is not acknowledged and
/// its retry finds the conflict here).
async fn write_change(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &PaymentId,
    ch: &Change,
    review: bool,
    now: i64,
) -> Result<bool, StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE payments SET status = $2, failure_reason = $3, result_code = $4, result_desc = $5,
                receipt = COALESCE($6, receipt), transaction_date = COALESCE($7, transaction_date),
                checkout_request_id = COALESCE(checkout_request_id, $8), settled_by = $9,
                settled_at = COALESCE(settled_at, $10), needs_review = needs_review OR $11, updated_at = $10,
                next_check_at = NULL, lease_until = NULL
             WHERE id = $1
               AND NOT EXISTS (SELECT 1 FROM payments o WHERE o.id <> $1
                               AND (o.receipt = $6 OR ($8::TEXT IS NOT NULL AND o.checkout_request_id = $8)))",
        )
        .await
        .map_err(pg_error)?;
    let n = tx
        .execute(
            &stmt,
            &[
                &id.as_str(),
                &ch.status.as_str(),
                &ch.failure_reason.map(FailureReason::as_str),
                &ch.result_code,
                &ch.result_desc,
                &ch.receipt,
                &ch.transaction_date,
                &ch.checkout_request_id,
                &ch.settled_by.as_str(),
                &now,
                &review,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(n == 1)
}

/// Writes a webhook event for the payment as it now is, in the caller's transaction.
async fn announce(c: &impl GenericClient, id: &PaymentId, event_type: &str, now: i64) -> Result<(), StoreError> {
    let payment = load(c, id).await?;
    let event_id = new_event_id();
    let payload = webhook_payload(&event_id, event_type, now, &payment)?;
    let stmt = c
        .prepare_cached(
            "INSERT INTO webhook_events (id, payment_id, api_key_id, type, url, payload, status, created_at, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
        )
        .await
        .map_err(pg_error)?;
    c.execute(
        &stmt,
        &[&event_id, &id.as_str(), &payment.api_key_id, &event_type, &payment.webhook_url, &payload, &now],
    )
    .await
    .map_err(pg_error)?;
    if sends_receipt(event_type, &payment) {
        c.execute(
            "INSERT INTO emails (id, payment_id, recipient, status, created_at, next_attempt_at)
             VALUES ($1, $2, $3, 'pending', $4, $4)",
            &[&new_email_id(), &id.as_str(), &payment.customer_email, &now],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}

async fn event(
    c: &impl GenericClient,
    id: &PaymentId,
    at: i64,
    kind: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO events (payment_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
        &[&id.as_str(), &at, &kind, &detail.to_string()],
    )
    .await
    .map_err(pg_error)
    .map(|_| ())
}

async fn by_idempotency_key(
    c: &impl GenericClient,
    api_key_id: &str,
    key: &str,
) -> Result<Option<(Payment, String)>, StoreError> {
    let row = c
        .query_opt(
            &format!(
                "SELECT {PAYMENT_COLUMNS}, request_hash FROM payments WHERE api_key_id = $1 AND idempotency_key = $2"
            ),
            &[&api_key_id, &key],
        )
        .await
        .map_err(pg_error)?;
    row.map(|r| Ok((payment_from_row(&r)?, r.get::<_, String>(PAYMENT_COLUMN_COUNT)))).transpose()
}

async fn load(c: &impl GenericClient, id: &PaymentId) -> Result<Payment, StoreError> {
    let row = c
        .query_one(&format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"), &[&id.as_str()])
        .await
        .map_err(pg_error)?;
    payment_from_row(&row)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn settling_from_row(r: &Row) -> Result<Settling, StoreError> {
    Ok(Settling {
        id: PaymentId::from_db(r.get(0)),
        status: Status::parse(r.get(1)).ok_or_else(|| corrupt("unknown status"))?,
        amount: u32::try_from(r.get::<_, i64>(2)).map_err(|_| corrupt("amount out of range"))?,
        phone: r.get(3),
        checkout_request_id: r.get(4),
        receipt: r.get(5),
        result_code: r.get(6),
        settled_by: r
            .get::<_, Option<&str>>(7)
            .map(|s| SettledBy::parse(s).ok_or_else(|| corrupt("unknown settled_by")))
            .transpose()?,
    })
}

fn pg_arg(a: &Arg) -> Box<dyn ToSql + Sync + Send> {
    match a {
        Arg::Int(v) => Box::new(*v),
        Arg::Text(t) => Box::new(t.clone()),
        Arg::Bool(b) => Box::new(*b),
        Arg::NullInt => Box::new(None::<i64>),
        Arg::NullText => Box::new(None::<String>),
    }
}

fn pg_cell(r: &Row, i: usize) -> Result<Cell, StoreError> {
    use tokio_postgres::types::Type;
    let ty = r.columns().get(i).map(|c| c.type_().clone()).ok_or_else(|| corrupt("no such column"))?;
    let cell = match ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map_or(Cell::Null, Cell::Int)),
        Type::INT4 => r.try_get::<_, Option<i32>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.into()))),
        Type::INT2 => r.try_get::<_, Option<i16>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.into()))),
        Type::BOOL => r.try_get::<_, Option<bool>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.into()))),
        #[allow(clippy::cast_possible_truncation)]
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.round() as i64))),
        Type::BYTEA => r
            .try_get::<_, Option<Vec<u8>>>(i)
            .map(|v| v.map_or(Cell::Null, |v| Cell::Text(String::from_utf8_lossy(&v).into_owned()))),
        _ => r.try_get::<_, Option<String>>(i).map(|v| v.map_or(Cell::Null, Cell::Text)),
    };
    cell.map_err(|e| corrupt(&format!("column {i}: {e}")))
}

const SESSION_COLUMNS: &str = "id, api_key_id, amount, account_reference, description, success_url, cancel_url, phone,
    customer_email, webhook_url, metadata, created_at, expires_at, payment_id, attempts";
const SESSION_COLUMN_COUNT: usize = 15;

fn session_from_row(r: &Row) -> Result<CheckoutSession, StoreError> {
    Ok(CheckoutSession {
        id: r.get(0),
        api_key_id: r.get(1),
        amount: u32::try_from(r.get::<_, i32>(2)).map_err(|_| corrupt("amount out of range"))?,
        account_reference: r.get(3),
        description: r.get(4),
        success_url: r.get(5),
        cancel_url: r.get(6),
        phone: r.get(7),
        customer_email: r.get(8),
        webhook_url: r.get(9),
        metadata: serde_json::from_str(r.get::<_, &str>(10)).map_err(|_| corrupt("session metadata is not JSON"))?,
        created_at: r.get(11),
        expires_at: r.get(12),
        payment_id: r.get(13),
        attempts: u32::try_from(r.get::<_, i32>(14)).map_err(|_| corrupt("attempts out of range"))?,
    })
}

const PAYMENT_COLUMNS: &str = "id, status, amount, phone, account_reference, description, metadata, webhook_url,
    customer_email, merchant_request_id, checkout_request_id, receipt, transaction_date, failure_reason, result_code,
    result_desc, settled_by, needs_review, created_at, updated_at, settled_at, callback_token_hash, api_key_id";
const PAYMENT_COLUMN_COUNT: usize = 23;

fn payment_from_row(r: &Row) -> Result<Payment, StoreError> {
    Ok(Payment {
        id: PaymentId::from_db(r.get(0)),
        status: Status::parse(r.get(1)).ok_or_else(|| corrupt("unknown status"))?,
        amount: u32::try_from(r.get::<_, i64>(2)).map_err(|_| corrupt("amount out of range"))?,
        phone: r.get(3),
        account_reference: r.get(4),
        description: r.get(5),
        metadata: serde_json::from_str(r.get::<_, &str>(6)).map_err(|_| corrupt("metadata is not JSON"))?,
        webhook_url: r.get(7),
        customer_email: r.get(8),
        merchant_request_id: r.get(9),
        checkout_request_id: r.get(10),
        receipt: r.get(11),
        transaction_date: r.get(12),
        failure_reason: r
            .get::<_, Option<&str>>(13)
            .map(|s| FailureReason::parse(s).ok_or_else(|| corrupt("unknown reason")))
            .transpose()?,
        result_code: r.get(14),
        result_desc: r.get(15),
        settled_by: r
            .get::<_, Option<&str>>(16)
            .map(|s| SettledBy::parse(s).ok_or_else(|| corrupt("unknown settled_by")))
            .transpose()?,
        needs_review: r.get(17),
        created_at: r.get(18),
        updated_at: r.get(19),
        settled_at: r.get(20),
        callback_token_hash: r.get(21),
        api_key_id: r.get(22),
    })
}

fn api_key_from_row(r: &Row) -> ApiKey {
    ApiKey { id: r.get(0), name: r.get(1), prefix: r.get(2), created_at: r.get(3), revoked_at: r.get(4) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test server (`LIPA_TEST_POSTGRES_URL`), or `None` after saying the test is skipped
    /// (a failure when `LIPA_REQUIRE_ALL=1`).
    fn server(test: &str) -> Option<String> {
        let url = std::env::var("LIPA_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty());
        if url.is_none() {
            assert!(
                std::env::var("LIPA_REQUIRE_ALL").as_deref() != Ok("1"),
                "{test}: LIPA_REQUIRE_ALL=1 but LIPA_TEST_POSTGRES_URL is not set"
            );
            eprintln!("{test}: skipped (set LIPA_TEST_POSTGRES_URL to run it against PostgreSQL)");
        }
        url
    }

    /// A database whose default is `synchronous_commit = off`: COMMIT would return before the
    /// WAL is flushed, and a server crash would lose acknowledged callbacks. Every connection
    /// of the store's pool commits synchronously all the same.
    #[tokio::test]
    async fn every_connection_commits_synchronously_whatever_the_database_default() {
        let Some(admin) = server("every_connection_commits_synchronously_whatever_the_database_default") else {
            return;
        };
        let name = format!("lipa_t_{}", crate::ids::random_hex(6));
        let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        client.batch_execute(&format!("ALTER DATABASE {name} SET synchronous_commit = off")).await.unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base));

        let (plain, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(conn);
        let default: String = plain.query_one("SHOW synchronous_commit", &[]).await.unwrap().get(0);
        assert_eq!(default, "off", "the database's default applies to a connection of its own");

        let store = PostgresStore::open(&url).await.unwrap();
        // Several connections held at once, so each is a different one of the pool's.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(store.client().await.unwrap());
        }
        for client in &held {
            let setting: String = client.query_one("SHOW synchronous_commit", &[]).await.unwrap().get(0);
            assert_eq!(setting, "on");
        }
        drop(held);
        store.ping().await.unwrap();
        drop((store, plain));
        let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    }

    /// Where the `SET` cannot hold (a pooler in transaction mode hands later statements to
    /// other server connections), the store says so instead of acknowledging undurable commits.
    #[tokio::test]
    async fn a_connection_that_commits_asynchronously_is_refused() {
        let Some(admin) = server("a_connection_that_commits_asynchronously_is_refused") else {
            return;
        };
        let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.unwrap();
        tokio::spawn(conn);
        commits_durably(&client).await.unwrap();
        client.batch_execute("SET synchronous_commit = off").await.unwrap();
        let refused = commits_durably(&client).await.unwrap_err().to_string();
        assert!(refused.contains("synchronous_commit = off") && refused.contains("session mode"), "{refused}");
    }
}
