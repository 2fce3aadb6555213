//! Group commit for callbacks on PostgreSQL: concurrent callbacks share one transaction.
//!
//! One collector takes whatever callbacks are waiting (up to [`MAX_BATCH`]) and settles them
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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{PostgresStore, payment_from_row, pg_error, pool_error, settling_from_row};
use crate::payment::{FailureReason, Payment};
use crate::settlement::plan::{self, Plan};
use crate::store::settle::COUNT_UNMATCHED;
use crate::store::{
    CallbackStored, IncomingCallback, Kept, PAYMENT_COLUMNS, Settling, StoreError, Tally, callback_decision, kept,
    unserialisable,
};

/// Most callbacks settled in one transaction.
const MAX_BATCH: usize = 256;
/// Batches settling at once (each holds one pooled connection). Measured with
/// `scripts/bench-ingest.sh` on 2 cores: 2 → 6.9–7.0k/s, 3 → 6.7–7.0k/s, 4 → 6.4k/s,
/// 8 → 4.4k/s; two keep p99 lowest.
const IN_FLIGHT: usize = 2;

pub(super) type Reply = oneshot::Sender<Result<CallbackStored, StoreError>>;
pub(super) type Queue = mpsc::UnboundedSender<(IncomingCallback, Reply)>;

/// Starts the collector; it ends when every clone of the returned queue is dropped.
pub(super) fn start(store: PostgresStore) -> Queue {
    let (tx, mut rx) = mpsc::unbounded_channel::<(IncomingCallback, Reply)>();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let store = store.clone();
            tokio::spawn(async move {
                settle_batch(&store, batch).await;
                drop(slot);
            });
        }
    });
    tx
}

async fn settle_batch(store: &PostgresStore, batch: Vec<(IncomingCallback, Reply)>) {
    // The first callback of each token goes into the shared transaction; later copies go into
    // the next round's, after this one committed, so each sees the one before it.
    let mut waiting = batch;
    while !waiting.is_empty() {
        let mut tokens = HashSet::new();
        let (together, later): (Vec<_>, Vec<_>) =
            waiting.into_iter().partition(|(incoming, _)| tokens.insert(incoming.token_hash.clone()));
        settle_round(store, together).await;
        waiting = later;
    }
}

async fn settle_round(store: &PostgresStore, round: Vec<(IncomingCallback, Reply)>) {
    let (incoming, replies): (Vec<_>, Vec<_>) = round.into_iter().unzip();
    match settle_together(store, &incoming).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(Failed::BeforeCommit(e)) => {
            tracing::warn!(error = %e, callbacks = incoming.len(), "callback batch rolled back; settling one at a time");
            for (incoming, reply) in incoming.into_iter().zip(replies) {
                let _ = reply.send(store.settle_one(incoming).await);
            }
        }
        // The commit's fate is unknown: nothing is acknowledged, and the sender's retry is
        // recognised as a duplicate if the commit did land.
        Err(Failed::AtCommit(e)) => {
            for reply in replies {
                let _ = reply.send(Err(StoreError::unavailable(&e)));
            }
        }
    }
}

enum Failed {
    BeforeCommit(StoreError),
    AtCommit(StoreError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Self::BeforeCommit(e)
    }
}

/// The rows the batch writes, column by column (the shape `unnest` takes); text from the
/// callbacks and the locked payments is borrowed, not copied.
#[derive(Default)]
struct Writes<'a> {
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
                let id = p.id.as_str();
                let Plan { outcome, change, review, after, event, announce, note, .. } =
                    Plan::of("callback", decision, p.status);
                if let Some(ch) = change {
                    w.ids.push(id);
                    w.statuses.push(ch.status.as_str());
                    w.reasons.push(ch.failure_reason.map(FailureReason::as_str));
                    w.codes.push(ch.result_code);
                    w.descs.push(ch.result_desc);
                    w.receipts.push(ch.receipt.map(String::from));
                    w.dates.push(ch.transaction_date);
                    w.checkout_ids.push(ch.checkout_request_id.map(String::from));
                    w.settled_by.push(ch.settled_by.as_str());
                    w.changed_at.push(now);
                    w.review.push(review);
                } else if review {
                    w.flagged.push(id);
                    w.flagged_at.push(now);
                }
                w.event_payments.push(id);
                w.event_at.push(now);
                w.event_kinds.push(event.kind);
                w.event_details.push(event.detail.to_string());
                if let Some(event_type) = announce {
                    w.announce.push((id, event_type, now));
                }
                (outcome, note, Some(after))
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
    let mut changed: HashMap<String, Payment> = HashMap::with_capacity(w.ids.len());
    if !w.ids.is_empty() {
        // The same guard as one at a time: a receipt or CheckoutRequestID that belongs to
        // another payment is not written; then the whole batch is settled one at a time,
        // where that case is decided and recorded.
        let update = tx
            .prepare_cached(&format!(
                "UPDATE payments SET status = c_status, failure_reason = c_reason, result_code = c_code,
                    result_desc = c_descr, receipt = COALESCE(c_receipt, receipt),
                    transaction_date = COALESCE(c_tdate, transaction_date),
                    checkout_request_id = COALESCE(checkout_request_id, c_checkout_id),
                    settled_by = c_settled_by, settled_at = COALESCE(settled_at, c_at),
                    needs_review = needs_review OR c_review, updated_at = c_at,
                    next_check_at = NULL, lease_until = NULL
                 FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::INT8[],
                             $8::TEXT[], $9::TEXT[], $10::INT8[], $11::BOOL[])
                      AS c(c_id, c_status, c_reason, c_code, c_descr, c_receipt, c_tdate, c_checkout_id,
                           c_settled_by, c_at, c_review)
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
                    &w.ids,
                    &w.statuses,
                    &w.reasons,
                    &w.codes,
                    &w.descs,
                    &w.receipts,
                    &w.dates,
                    &w.checkout_ids,
                    &w.settled_by,
                    &w.changed_at,
                    &w.review,
                ],
            )
            .await
            .map_err(pg_error)?;
        if rows.len() != w.ids.len() {
            return Err(Failed::BeforeCommit(StoreError::Conflict(
                "a receipt or CheckoutRequestID of the batch belongs to another payment".into(),
            )));
        }
        for row in &rows {
            let p = payment_from_row(row)?;
            changed.insert(p.id.as_str().to_owned(), p);
        }
    }
    if !w.flagged.is_empty() {
        tx.execute(
            "UPDATE payments SET needs_review = TRUE, updated_at = GREATEST(payments.updated_at, f.at)
             FROM unnest($1::TEXT[], $2::INT8[]) AS f(id, at) WHERE payments.id = f.id",
            &[&w.flagged, &w.flagged_at],
        )
        .await
        .map_err(pg_error)?;
    }
    // The rest is independent: sent together (pipelined on the one connection).
    let events = async {
        if w.event_payments.is_empty() {
            return Ok(());
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO events (payment_id, at, kind, detail)
                 SELECT * FROM unnest($1::TEXT[], $2::INT8[], $3::TEXT[], $4::TEXT[])",
            )
            .await
            .map_err(pg_error)?;
        tx.execute(&insert, &[&w.event_payments, &w.event_at, &w.event_kinds, &w.event_details])
            .await
            .map_err(pg_error)
            .map(|_| ())
    };
    let announcements = async {
        if w.announce.is_empty() {
            return Ok(());
        }
        announce_all(&tx, &w.announce, changed).await
    };
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
    tokio::try_join!(events, announcements, stored, counted)?;
    tx.commit().await.map_err(|e| Failed::AtCommit(pg_error(e)))?;
    Ok(results)
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
