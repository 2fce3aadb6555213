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

use std::borrow::Cow;

use deadpool_postgres::{GenericClient, Hook, HookError, Pool, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::sql::{Arg, Rows, Statement};
use super::tx::{POSTGRES_WORDS, Tx};
use super::{
    CallbackStored, Detail, IncomingCallback, Inserted, NewCheckoutSession, NewPayment, PushResult, SessionInserted,
    StoreError, settle, writes,
};
use crate::payment::{Payment, PaymentId};
use crate::settlement::Decision;

/// Runs a write of [`super::writes`] in one transaction, committed if it succeeds.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident| $write:expr) => {{
        let mut client = $store.client().await?;
        let transaction = client.transaction().await.map_err(pg_error)?;
        let done = {
            let $tx = &mut PgTx(&transaction);
            $write.await?
        };
        transaction.commit().await.map_err(pg_error)?;
        Ok(done)
    }};
}

mod batch;
mod confirm;
mod ingest;
mod plans;
mod refunds;
mod rows;

use rows::{payment_from_row, pg_cell, settling_from_row};

const MIGRATION_LOCK: i64 = 0x6c69_7061; // "lipa"

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Callbacks waiting for a shared commit (`None` in the collectors' own copy).
    ingest: Option<ingest::Queue>,
    /// Paybill confirmations waiting for a shared commit (`None` in the collectors' copy).
    confirm: Option<confirm::Queue>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("pool_size", &self.pool.status().max_size).finish_non_exhaustive()
    }
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    // The server's own message ("db error" alone says nothing).
    let text = e.as_db_error().map_or_else(|| e.to_string(), |db| format!("{} ({})", db.message(), db.code().code()));
    let kind: fn(Detail) -> StoreError = match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => StoreError::Conflict,
        Some(c) if c.code().starts_with("22") => StoreError::Corrupt,
        _ => StoreError::Unavailable,
    };
    kind(Detail::caused_by(text, e))
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(Detail::caused_by(format!("no database connection: {e}"), e))
}

type Client = deadpool_postgres::Object;

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
        let unusable =
            |e: &dyn std::fmt::Display| StoreError::unavailable(format_args!("DATABASE_URL is not usable: {e}"));
        let pool = config
            .builder(NoTls)
            .map_err(|e| unusable(&e))?
            .runtime(Runtime::Tokio1)
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move { client.batch_execute(DURABLE_COMMITS).await.map_err(HookError::Backend) })
            }))
            .build()
            .map_err(|e| unusable(&e))?;
        let mut store = Self { pool, ingest: None, confirm: None };
        commits_durably(&**store.client().await?).await?;
        store.migrate().await?;
        let collectors = store.clone();
        store.ingest = Some(ingest::start(collectors.clone()));
        store.confirm = Some(confirm::start(collectors));
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

    // ---- payments ----

    pub(super) async fn insert_payment(&self, new: NewPayment) -> Result<Inserted, StoreError> {
        in_transaction!(self, |tx| writes::insert_payment(tx, &new))
    }

    pub(super) async fn record_push(&self, id: PaymentId, result: PushResult, now: i64) -> Result<Payment, StoreError> {
        in_transaction!(self, |tx| writes::record_push(tx, &id, &result, now))
    }

    // ---- callbacks and queries ----

    /// Settles a callback in a commit shared with the callbacks arriving beside it.
    pub(super) async fn settle_from_callback(&self, incoming: IncomingCallback) -> Result<CallbackStored, StoreError> {
        let Some(queue) = &self.ingest else { return self.settle_one(incoming).await };
        queue.settle(incoming).await
    }

    /// Settles one callback in its own transaction.
    async fn settle_one(&self, incoming: IncomingCallback) -> Result<CallbackStored, StoreError> {
        in_transaction!(self, |tx| settle::settle_callback_alone(tx, &incoming))
    }

    pub(super) async fn settle_from_query(
        &self,
        id: PaymentId,
        result: daraja::QueryResult,
        now: i64,
    ) -> Result<Decision, StoreError> {
        in_transaction!(self, |tx| settle::settle_from_query(tx, &id, &result, now))
    }

    pub(super) async fn expire_overdue(
        &self,
        created_before: i64,
        failing_before: i64,
        now: i64,
    ) -> Result<Vec<PaymentId>, StoreError> {
        in_transaction!(self, |tx| settle::expire_overdue(tx, created_before, failing_before, now))
    }

    // ---- Paybill payments ----

    /// Settles a confirmation in a commit shared with those arriving beside it (one that
    /// needs the till rule's search, alone).
    pub(super) async fn settle_from_confirmation(
        &self,
        incoming: super::IncomingConfirmation,
    ) -> Result<super::ConfirmationStored, StoreError> {
        let till_rule = incoming.till_by_phone_and_amount && incoming.payment.bill_ref_number.is_empty();
        match &self.confirm {
            Some(queue) if !till_rule => queue.settle(incoming).await,
            _ => self.settle_confirmation_alone(incoming).await,
        }
    }

    /// Settles one confirmation in its own transaction.
    async fn settle_confirmation_alone(
        &self,
        incoming: super::IncomingConfirmation,
    ) -> Result<super::ConfirmationStored, StoreError> {
        in_transaction!(self, |tx| super::c2b::settle_confirmation(tx, &incoming))
    }

    pub(super) async fn assign_c2b(
        &self,
        trans_id: String,
        payment_id: PaymentId,
        actor: String,
        note: String,
        now: i64,
    ) -> Result<super::Resolved, StoreError> {
        in_transaction!(self, |tx| super::c2b::assign(tx, &trans_id, &payment_id, &actor, &note, now))
    }

    pub(super) async fn c2b_refunded_outside(
        &self,
        trans_id: String,
        actor: String,
        note: String,
        now: i64,
    ) -> Result<super::Resolved, StoreError> {
        in_transaction!(self, |tx| super::c2b::refunded_outside(tx, &trans_id, &actor, &note, now))
    }

    pub(super) async fn sweep_unmatched(&self, announce_before: i64, now: i64) -> Result<(u64, u64), StoreError> {
        in_transaction!(self, |tx| super::c2b::sweep_unmatched(tx, announce_before, now))
    }

    // ---- plain SQL (see `sql.rs`) ----

    pub(super) async fn query(&self, sql: Cow<'static, str>, args: Vec<Arg>) -> Result<Rows, StoreError> {
        rows_of(&*self.client().await?, &sql, &args).await
    }

    pub(super) async fn execute_returning(&self, sql: &'static str, args: Vec<Arg>) -> Result<Rows, StoreError> {
        rows_of(&*self.client().await?, sql, &args).await
    }

    pub(super) async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let mut counts = Vec::with_capacity(statements.len());
        for (sql, args) in &statements {
            let args: Vec<&(dyn ToSql + Sync)> = args.iter().map(pg_arg).collect();
            let statement = tx.prepare_cached(sql).await.map_err(pg_error)?;
            counts.push(tx.execute(&statement, &args).await.map_err(pg_error)?);
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(counts)
    }

    // ---- checkout sessions ----

    pub(super) async fn insert_checkout_session(&self, new: NewCheckoutSession) -> Result<SessionInserted, StoreError> {
        in_transaction!(self, |tx| writes::insert_checkout_session(tx, new))
    }

    // ---- emails ----
}

/// The rows of a statement written for both backends (see [`super::sql`]).
async fn rows_of(c: &deadpool_postgres::ClientWrapper, sql: &str, args: &[Arg]) -> Result<Rows, StoreError> {
    let args: Vec<&(dyn ToSql + Sync)> = args.iter().map(pg_arg).collect();
    let statement = c.prepare_cached(&pg_sql(sql)).await.map_err(pg_error)?;
    let rows = c.query(&statement, &args).await.map_err(pg_error)?;
    rows.iter().map(|r| (0..r.len()).map(|i| pg_cell(r, i)).collect()).collect()
}

fn pg_arg(a: &Arg) -> &(dyn ToSql + Sync) {
    const NULL_INT: Option<i64> = None;
    const NULL_TEXT: Option<&str> = None;
    match a {
        Arg::Int(v) => v,
        Arg::Text(t) => t,
        Arg::Bool(b) => b,
        Arg::Bytes(b) => b,
        Arg::NullInt => &NULL_INT,
        Arg::NullText => &NULL_TEXT,
    }
}

/// A statement written for both backends as PostgreSQL runs it (see [`super::tx`]).
fn pg_sql(sql: &str) -> Cow<'_, str> {
    if !POSTGRES_WORDS.iter().any(|(words, _)| sql.contains(words)) {
        return Cow::Borrowed(sql);
    }
    Cow::Owned(POSTGRES_WORDS.iter().fold(sql.to_owned(), |sql, (words, own)| sql.replace(words, own)))
}

/// A transaction for the writes written once for both backends ([`super::writes`]).
struct PgTx<'a, 't>(&'a deadpool_postgres::Transaction<'t>);

impl Tx for PgTx<'_, '_> {
    async fn rows(&mut self, sql: &str, args: Vec<Arg>) -> Result<Rows, StoreError> {
        let statement = self.0.prepare_cached(&pg_sql(sql)).await.map_err(pg_error)?;
        let args: Vec<&(dyn ToSql + Sync)> = args.iter().map(pg_arg).collect();
        let rows = self.0.query(&statement, &args).await.map_err(pg_error)?;
        rows.iter().map(|r| (0..r.len()).map(|i| pg_cell(r, i)).collect()).collect()
    }

    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        let statement = self.0.prepare_cached(&pg_sql(sql)).await.map_err(pg_error)?;
        let args: Vec<&(dyn ToSql + Sync)> = args.iter().map(pg_arg).collect();
        self.0.execute(&statement, &args).await.map_err(pg_error)
    }

    async fn lock(&mut self, key: &str) -> Result<(), StoreError> {
        self.0.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&key]).await.map_err(pg_error).map(drop)
    }
}

#[cfg(test)]
mod tests;
