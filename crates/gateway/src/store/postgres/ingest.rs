//! Group commit for callbacks on PostgreSQL: concurrent callbacks share one transaction.
//!
//! The collector (`batch.rs`) takes whatever callbacks are waiting (up to [`MAX_BATCH`]) and settles them
//! together with set-based statements (one `SELECT … FOR UPDATE` for every payment, one
//! `UPDATE … FROM unnest(…)` for the changes, one insert each for timeline events, webhook
//! events, emails and raw callbacks), then one commit. Every callback of the batch is
//! answered only after that commit. At most [`IN_FLIGHT`] batches run at once; while they do,
//! new callbacks queue, so batches grow with load instead of round trips.
//!
//! The batch is an optimisation, never a second set of rules: each callback is decided by the
//! same function as one settled alone (`callback_decision`, then `settlement::on_callback`),
//! and whenever the set-based path cannot be sure (a receipt already used by another payment,
//! a unique violation, a deadlock with another process), it rolls back and settles each
//! callback alone through the one-at-a-time path. Copies of one
//! callback in a batch go into successive rounds, each its own transaction committed before
//! the next, so a copy sees the effect of the one before it.

use std::collections::HashMap;

use super::batch::{self, Batched, Failed};
use super::plans::PlanRows;
use super::{PostgresStore, pg_error, pool_error, settling_from_row};
use crate::settlement::plan::Plan;
use crate::store::settle::COUNT_UNMATCHED;
use crate::store::{CallbackStored, IncomingCallback, Kept, Settling, StoreError, Tally, callback_decision, kept};

/// Most callbacks settled in one transaction.
const MAX_BATCH: usize = 256;
/// Batches settling at once (each holds one pooled connection). Measured with
/// `scripts/bench-ingest.sh` on 2 cores: 2 → 6.9–7.0k/s, 3 → 6.7–7.0k/s, 4 → 6.4k/s,
/// 8 → 4.4k/s; two keep p99 lowest.
const IN_FLIGHT: usize = 2;

pub(super) type Queue = batch::Queue<IncomingCallback>;

/// Starts the collector; it ends when every clone of the returned queue is dropped.
pub(super) fn start(store: PostgresStore) -> Queue {
    batch::start(store, MAX_BATCH, IN_FLIGHT)
}

impl Batched for IncomingCallback {
    type Out = CallbackStored;
    const WHAT: &'static str = "callback";

    /// Copies of one callback (one token) go into successive rounds.
    fn key(&self) -> String {
        self.token_hash.clone()
    }

    async fn together(store: &PostgresStore, jobs: &[Self]) -> Result<Vec<CallbackStored>, Failed> {
        settle_together(store, jobs).await
    }

    async fn alone(store: &PostgresStore, job: Self) -> Result<CallbackStored, StoreError> {
        store.settle_one(job).await
    }
}

/// The rows the batch writes, column by column (the shape `unnest` takes); text from the
/// callbacks and the locked payments is borrowed, not copied.
#[derive(Default)]
struct Writes<'a> {
    plans: PlanRows<'a>,
    // raw callbacks
    cb_at: Vec<i64>,
    cb_payments: Vec<Option<&'a str>>,
    cb_tokens: Vec<&'a str>,
    cb_sources: Vec<Option<&'a str>>,
    cb_checkout_ids: Vec<Option<&'a str>>,
    cb_outcomes: Vec<&'static str>,
    cb_notes: Vec<String>,
    cb_bodies: Vec<&'a [u8]>,
    /// Callbacks no payment took, beyond the storage budget.
    counted: Vec<Tally>,
}

async fn settle_together(store: &PostgresStore, callbacks: &[IncomingCallback]) -> Result<Vec<CallbackStored>, Failed> {
    let mut client = store.pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let tokens: Vec<&str> = callbacks.iter().map(|c| c.token_hash.as_str()).collect();
    // Locks in id order, so batches of several processes cannot deadlock each other.
    let select = tx
        .prepare_cached(
            "SELECT id, status, amount, phone, checkout_request_id, receipt, result_code, settled_by, callback_token_hash
             FROM payments WHERE callback_token_hash = ANY($1) ORDER BY id FOR UPDATE",
        )
        .await
        .map_err(pg_error)?;
    let mut found = HashMap::new();
    for row in tx.query(&select, &[&tokens]).await.map_err(pg_error)? {
        found.insert(row.get::<_, String>(8), settling_from_row(&row)?);
    }

    // Each callback decided as one at a time would (`callback_decision`), its writes collected.
    let mut w = Writes::default();
    let mut results = Vec::with_capacity(callbacks.len());
    for incoming in callbacks {
        let payment = found.get(&incoming.token_hash);
        let now = incoming.received_at;
        let decision = callback_decision(&incoming.parsed, payment.map(Settling::current));
        // A malformed body with a known token still belongs to that payment: flagged for review,
        // with its reason on the payment's timeline.
        let (outcome, note, status) = match payment {
            Some(p) => {
                let pushed = w.plans.push(p.id.as_str(), Plan::of("callback", decision, p.status), now);
                (pushed.outcome, pushed.note, Some(pushed.after))
            }
            None => (decision.outcome, decision.note, None),
        };
        let payment_id = payment.map(|p| p.id.clone());
        let stored = match kept(incoming, payment.map(|p| &p.id), outcome, note) {
            Kept::Row(r) => {
                w.cb_at.push(r.received_at);
                w.cb_payments.push(r.payment_id);
                w.cb_tokens.push(r.token_hash);
                w.cb_sources.push(r.source);
                w.cb_checkout_ids.push(r.checkout_request_id);
                w.cb_outcomes.push(r.outcome);
                w.cb_notes.push(r.note);
                w.cb_bodies.push(r.body);
                true
            }
            Kept::Counted(t) => {
                w.counted.push(t);
                false
            }
        };
        results.push(CallbackStored { outcome, stored, payment_id, status });
    }

    // The changed payments as they now are (for their announcements).
    let changed = w.plans.write_changes(&tx).await?;
    let events = w.plans.write_events(&tx, changed);
    let stored = async {
        let insert = tx
            .prepare_cached(
                "INSERT INTO callbacks (received_at, payment_id, token_hash, source, checkout_request_id, outcome, note, body)
                 SELECT * FROM unnest($1::INT8[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[],
                                      $8::BYTEA[])",
            )
            .await
            .map_err(pg_error)?;
        tx.execute(
            &insert,
            &[
                &w.cb_at,
                &w.cb_payments,
                &w.cb_tokens,
                &w.cb_sources,
                &w.cb_checkout_ids,
                &w.cb_outcomes,
                &w.cb_notes,
                &w.cb_bodies,
            ],
        )
        .await
        .map_err(pg_error)
        .map(|_| ())
    };
    let counted = async {
        // One row per minute, whatever the batch held.
        let mut minutes: HashMap<i64, (i64, i64, i64)> = HashMap::new();
        for t in &w.counted {
            let tally = minutes.entry(t.minute).or_default();
            *tally = (tally.0 + 1, tally.1.saturating_add(t.bytes), tally.2.max(t.at));
        }
        for (minute, (count, bytes, last_at)) in minutes {
            tx.execute(COUNT_UNMATCHED, &[&minute, &count, &bytes, &last_at]).await.map_err(pg_error)?;
        }
        Ok::<_, StoreError>(())
    };
    tokio::try_join!(events, stored, counted)?;
    tx.commit().await.map_err(|e| Failed::AtCommit(pg_error(e)))?;
    Ok(results)
}
