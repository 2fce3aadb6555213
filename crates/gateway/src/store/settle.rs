//! Settlement executed over one [`Tx`], the same on both databases: a plan's change, flag,
//! timeline event and outbox rows ([`apply`], [`record`]), settling from an STK Query,
//! expiring, and settling one callback alone. It never decides what to write: the rules and
//! the plan did (`crate::settlement`).
//!
//! The callback hot path is not here: SQLite's writer and PostgreSQL's batches settle
//! callbacks with their own tuned statements, executing the same plans.

use super::reads::payment_from;
use super::sql::{Arg, Cell};
use super::tx::Tx;
use super::{CallbackStored, IncomingCallback, Kept, StoreError, callback_decision, current, kept, unserialisable};
use crate::payment::{FailureReason, Payment, PaymentId};
use crate::settlement::plan::{self, Outbox, Plan};
use crate::settlement::{self, Change, Decision};

/// A payment, read again in the transaction.
pub(super) async fn load(tx: &mut impl Tx, id: &PaymentId) -> Result<Payment, StoreError> {
    // Its row is locked for the rest of the transaction (if this transaction's writes have
    // not locked it already).
    let sql = concat!("SELECT ", payment_columns!(), " FROM payments WHERE id = $1 /*for_update*/");
    let rows = tx.rows(sql, vec![id.as_str().into()]).await?;
    payment_from(rows.first().ok_or_else(|| StoreError::corrupt(format_args!("payment {id} vanished")))?)
}

/// Counts callbacks no payment took beyond the storage budget under their minute: `$1` the
/// minute, `$2` how many, `$3` their bytes, `$4` when the last came. Every backend's callback
/// path uses it.
pub(super) const COUNT_UNMATCHED: &str =
    "INSERT INTO unmatched_callback_counts (minute, count, bytes, last_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (minute) DO UPDATE SET count = unmatched_callback_counts.count + excluded.count,
        bytes = unmatched_callback_counts.bytes + excluded.bytes,
        last_at = CASE WHEN unmatched_callback_counts.last_at > excluded.last_at
                       THEN unmatched_callback_counts.last_at ELSE excluded.last_at END";

/// A timeline entry, in the same transaction as what it tells.
pub(super) async fn event(
    tx: &mut impl Tx,
    id: &PaymentId,
    at: i64,
    kind: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (payment_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
        vec![id.as_str().into(), at.into(), kind.into(), detail.to_string().into()],
    )
    .await
    .map(drop)
}

/// Queues a webhook event in the outbox.
pub(super) async fn webhook(tx: &mut impl Tx, w: plan::NewWebhookEvent) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO webhook_events (id, payment_id, api_key_id, type, url, payload, status, created_at, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
        vec![
            w.id.into(),
            w.payment_id.as_str().into(),
            w.api_key_id.into(),
            w.event_type.into(),
            w.url.into(),
            w.payload.into(),
            w.at.into(),
        ],
    )
    .await
    .map(drop)
}

/// Writes a plan's timeline event and announcement, for `payment` as the plan left it.
pub(super) async fn record(tx: &mut impl Tx, payment: &Payment, plan: &Plan, now: i64) -> Result<(), StoreError> {
    event(tx, &payment.id, now, &plan.event.kind, &plan.event.detail).await?;
    let Some(event_type) = plan.announce else { return Ok(()) };
    let Outbox { webhook: w, email } = plan::outbox(payment, event_type, now).map_err(unserialisable)?;
    webhook(tx, w).await?;
    if let Some(e) = email {
        tx.execute(
            "INSERT INTO emails (id, payment_id, recipient, status, created_at, next_attempt_at)
             VALUES ($1, $2, $3, 'pending', $4, $4)",
            vec![e.id.into(), e.payment_id.as_str().into(), e.recipient.into(), e.at.into()],
        )
        .await?;
    }
    Ok(())
}

/// Writes a change unless its receipt or CheckoutRequestID belongs to another payment (then
/// returns false and writes nothing). Two concurrent settlements of different payments with
/// one receipt are still stopped by the unique index: the loser is not acknowledged, and its
/// retry finds the conflict here.
async fn write_change(
    tx: &mut impl Tx,
    id: &PaymentId,
    ch: &Change,
    review: bool,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = tx
        .execute(
            "UPDATE payments SET status = $2, failure_reason = $3, result_code = $4, result_desc = $5,
                receipt = COALESCE($6, receipt), transaction_date = COALESCE($7, transaction_date),
                checkout_request_id = COALESCE(checkout_request_id, $8), settled_by = $9,
                settled_at = COALESCE(settled_at, $10), needs_review = needs_review OR $11, updated_at = $10,
                next_check_at = NULL, lease_until = NULL
             WHERE id = $1
               AND NOT EXISTS (SELECT 1 FROM payments o WHERE o.id <> $1
                               AND (o.receipt = $6 OR (CAST($8 AS TEXT) IS NOT NULL AND o.checkout_request_id = $8)))",
            vec![
                id.as_str().into(),
                ch.status.as_str().into(),
                Arg::from(ch.failure_reason.map(FailureReason::as_str)),
                ch.result_code.as_str().into(),
                ch.result_desc.as_str().into(),
                ch.receipt.as_deref().into(),
                Arg::from(ch.transaction_date),
                ch.checkout_request_id.as_deref().into(),
                ch.settled_by.as_str().into(),
                now.into(),
                Arg::Bool(review),
            ],
        )
        .await?;
    Ok(changed == 1)
}

/// Executes a settlement plan on payment `id`; returns the plan as carried out (a receipt
/// that already paid another payment turns it into a conflict's).
pub(super) async fn apply(tx: &mut impl Tx, id: &PaymentId, plan: Plan, now: i64) -> Result<Plan, StoreError> {
    let mut plan = plan;
    if let Some(change) = &plan.change
        && !write_change(tx, id, change, plan.review, now).await?
    {
        let receipt = change.receipt.as_deref().unwrap_or_default();
        let other = tx.rows("SELECT id FROM payments WHERE receipt = $1", vec![receipt.into()]).await?;
        let other = other.first().and_then(|r| r.first()).map(Cell::text);
        plan = plan.replanned(settlement::already_used(change.receipt.as_ref(), other.as_deref()));
    }
    if plan.flags_only() {
        tx.execute(
            "UPDATE payments SET needs_review = TRUE, updated_at = $2 WHERE id = $1",
            vec![id.as_str().into(), now.into()],
        )
        .await?;
    }
    if plan.announce.is_some() {
        let payment = load(tx, id).await?;
        record(tx, &payment, &plan, now).await?;
    } else {
        event(tx, id, now, &plan.event.kind, &plan.event.detail).await?;
    }
    Ok(plan)
}

/// Applies an STK Query's final answer to a payment under its row lock.
pub(super) async fn settle_from_query(
    tx: &mut impl Tx,
    id: &PaymentId,
    result: &daraja::QueryResult,
    now: i64,
) -> Result<Decision, StoreError> {
    let payment = load(tx, id).await?;
    let plan = Plan::of("query", settlement::on_query(&current(&payment), result), payment.status);
    tx.execute(
        "UPDATE payments SET check_attempts = check_attempts + 1, lease_until = NULL, next_check_at = NULL WHERE id = $1",
        vec![id.as_str().into()],
    )
    .await?;
    Ok(apply(tx, id, plan, now).await?.decision())
}

/// Expires pending payments created before `created_before`, except those with a
/// CheckoutRequestID that were never queried or whose last STK Query failed (Daraja could not
/// be asked), unless they were created before `failing_before`; returns their ids. A payment
/// whose push's answer never came is flagged (see [`Plan::expiry`]). One paid in part by hand
/// waits for the rest until `failing_before`, then expires flagged.
pub(super) async fn expire_overdue(
    tx: &mut impl Tx,
    created_before: i64,
    failing_before: i64,
    now: i64,
) -> Result<Vec<PaymentId>, StoreError> {
    let rows = tx
        .rows(
            "UPDATE payments SET status = 'expired', settled_by = 'expiry', settled_at = $2, updated_at = $2,
                next_check_at = NULL, lease_until = NULL,
                needs_review = needs_review OR push_state IN ('sending', 'unknown') OR amount_received > 0
             WHERE id IN (SELECT id FROM payments WHERE status = 'pending' AND created_at < $1
                 AND (lease_until IS NULL OR lease_until <= $2)
                 AND ((query_failed_at IS NULL AND (checkout_request_id IS NULL OR check_attempts > 0)
                       AND amount_received = 0)
                      OR created_at < $3) /*skip_locked*/)
             RETURNING id, push_state IN ('sending', 'unknown'), amount_received",
            vec![created_before.into(), now.into(), failing_before.into()],
        )
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = PaymentId::from_db(r[0].text());
        let payment = load(tx, &id).await?;
        let received = u64::try_from(r[2].int()).unwrap_or(0);
        record(tx, &payment, &Plan::expiry(r[1].int() != 0, received), now).await?;
        ids.push(id);
    }
    Ok(ids)
}

/// Stores a callback and applies it, alone in its transaction (PostgreSQL's path when a
/// batch cannot be sure; see `postgres/ingest.rs`).
pub(super) async fn settle_callback_alone(
    tx: &mut impl Tx,
    incoming: &IncomingCallback,
) -> Result<CallbackStored, StoreError> {
    let found = tx
        .rows(
            "SELECT id, status, amount, phone, checkout_request_id, receipt, result_code, settled_by
             FROM payments WHERE callback_token_hash = $1 /*for_update*/",
            vec![incoming.token_hash.as_str().into()],
        )
        .await?;
    let found = found.first().map(|r| super::Settling::from_cells(r)).transpose()?;
    let decision = callback_decision(&incoming.parsed, found.as_ref().map(super::Settling::current));
    // A malformed body with a known token still belongs to that payment: flagged for review,
    // with its reason on the payment's timeline.
    let (outcome, note, status) = match &found {
        Some(p) => {
            let plan = apply(tx, &p.id, Plan::of("callback", decision, p.status), incoming.received_at).await?;
            (plan.outcome, plan.note, Some(plan.after))
        }
        None => (decision.outcome, decision.note, None),
    };
    let payment_id = found.map(|p| p.id);
    let stored = match kept(incoming, payment_id.as_ref(), outcome, note) {
        Kept::Row(r) => tx
            .execute(
                "INSERT INTO callbacks (received_at, payment_id, token_hash, source, checkout_request_id, outcome, note, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                vec![
                    r.received_at.into(),
                    Arg::from(r.payment_id),
                    r.token_hash.into(),
                    Arg::from(r.source),
                    Arg::from(r.checkout_request_id),
                    r.outcome.into(),
                    r.note.into(),
                    Arg::Bytes(r.body.to_vec()),
                ],
            )
            .await
            .map(|n| n > 0)?,
        Kept::Counted(t) => {
            tx.execute(COUNT_UNMATCHED, vec![t.minute.into(), 1.into(), t.bytes.into(), t.at.into()]).await?;
            false
        }
    };
    Ok(CallbackStored { outcome, stored, payment_id, status })
}
