//! Group commit for Paybill confirmations on PostgreSQL: concurrent confirmations share one
//! transaction (see `batch.rs`), decided one by one by the rules a confirmation settled alone
//! follows (`settlement::c2b::on_confirmation`), written with set-based statements: the
//! TransIDs claimed at once, the payments named locked at once, the plans written through
//! `plans.rs`. Confirmations for one payment (its account number) go into successive rounds.

use std::collections::{HashMap, HashSet};

use super::batch::{self, Batched, Failed};
use super::plans::PlanRows;
use super::{PostgresStore, payment_from_row, pg_error, pool_error};
use crate::payment::{Payment, Status, normalize_paybill_account};
use crate::settlement::Outcome;
use crate::settlement::c2b::{Payable, on_confirmation};
use crate::settlement::plan::Plan;
use crate::store::c2b::{kind, payer_hash};
use crate::store::{ConfirmationStored, IncomingConfirmation, PAYMENT_COLUMNS, StoreError};

/// Most confirmations settled in one transaction.
const MAX_BATCH: usize = 256;
/// Batches settling at once, as for callbacks.
const IN_FLIGHT: usize = 2;

pub(super) type Queue = batch::Queue<IncomingConfirmation>;

/// Starts the collector; it ends when every clone of the returned queue is dropped.
pub(super) fn start(store: PostgresStore) -> Queue {
    batch::start(store, MAX_BATCH, IN_FLIGHT)
}

/// The account number a confirmation names, as stored.
fn account(incoming: &IncomingConfirmation) -> Option<String> {
    normalize_paybill_account(&incoming.payment.bill_ref_number)
}

impl Batched for IncomingConfirmation {
    type Out = ConfirmationStored;
    const WHAT: &'static str = "confirmation";

    /// Copies of one transaction, and payments for one account number, go into successive rounds.
    fn key(&self) -> String {
        account(self).unwrap_or_else(|| self.payment.trans_id.to_string())
    }

    async fn together(store: &PostgresStore, jobs: &[Self]) -> Result<Vec<ConfirmationStored>, Failed> {
        settle_together(store, jobs).await
    }

    async fn alone(store: &PostgresStore, job: Self) -> Result<ConfirmationStored, StoreError> {
        store.settle_confirmation_alone(job).await
    }
}

async fn settle_together(
    store: &PostgresStore,
    jobs: &[IncomingConfirmation],
) -> Result<Vec<ConfirmationStored>, Failed> {
    let mut client = store.pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(pg_error)?;

    // The payments named, by receipt (an STK payment's own transaction) or account number,
    // locked in id order so batches of several processes cannot deadlock each other. Under
    // those locks, what is recorded already is a copy; two processes with copies of one
    // TransID that names no payment both get here, and the second one's insert below fails
    // the batch (then each is settled alone, where the claim comes first).
    let trans_ids: Vec<&str> = jobs.iter().map(|j| j.payment.trans_id.as_str()).collect();
    let named: Vec<String> = jobs.iter().filter_map(account).collect();
    let select = tx
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE receipt = ANY($1) OR paybill_account = ANY($2) ORDER BY id FOR UPDATE"
        ))
        .await
        .map_err(pg_error)?;
    let (mut by_receipt, mut by_account): (HashMap<String, Payment>, HashMap<String, Payment>) = Default::default();
    for row in tx.query(&select, &[&trans_ids, &named]).await.map_err(pg_error)? {
        let p = payment_from_row(&row)?;
        if let Some(r) = &p.receipt {
            by_receipt.insert(r.to_string(), p.clone());
        }
        if let Some(a) = p.paybill_account.clone() {
            by_account.insert(a, p);
        }
    }
    let known: HashSet<String> = tx
        .query("SELECT trans_id FROM c2b_transactions WHERE trans_id = ANY($1)", &[&trans_ids])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // A pull finding what a confirmation told already is not another copy of it.
    let copies: Vec<&str> = jobs
        .iter()
        .filter(|j| j.source != "pull" && known.contains(j.payment.trans_id.as_str()))
        .map(|j| j.payment.trans_id.as_str())
        .collect();
    if !copies.is_empty() {
        tx.execute("UPDATE c2b_transactions SET copies = copies + 1 WHERE trans_id = ANY($1)", &[&copies])
            .await
            .map_err(pg_error)?;
    }

    // Each decided as one alone would be, its writes collected.
    let mut plans = PlanRows::default();
    let mut rows = TxnRows::default();
    let mut results = Vec::with_capacity(jobs.len());
    for j in jobs {
        let trans_id = j.payment.trans_id.as_str();
        if known.contains(trans_id) {
            results.push(ConfirmationStored { outcome: Outcome::Duplicate, payment_id: None, status: None });
            continue;
        }
        let payment = by_receipt.get(trans_id).or_else(|| account(j).and_then(|a| by_account.get(&a)));
        let payable = payment.map(|pay| Payable {
            status: pay.status,
            amount: pay.amount,
            amount_received: pay.amount_received,
            receipt: pay.receipt.as_ref(),
            open: matches!(pay.status, Status::Pending | Status::Failed) && pay.created_at >= j.open_since,
        });
        let decided = on_confirmation(payable, &j.payment);
        let (outcome, note, status) = match payment {
            Some(pay) => {
                if decided.received > 0 {
                    plans.receive(pay.id.as_str(), i64::try_from(decided.received).unwrap_or(i64::MAX));
                }
                let pushed = plans.push(pay.id.as_str(), Plan::of("c2b", decided.decision, pay.status), j.received_at);
                (pushed.outcome, pushed.note, Some(pushed.after))
            }
            None => (decided.decision.outcome, decided.decision.note, None),
        };
        let payment_id = payment.map(|pay| pay.id.clone());
        rows.push(j, decided.txn.as_str(), note, payment_id.as_ref().map(|id| id.as_str().to_owned()));
        results.push(ConfirmationStored { outcome, payment_id, status });
    }

    rows.insert(&tx).await?;
    let changed = plans.write_changes(&tx).await?;
    plans.write_events(&tx, changed).await?;
    tx.commit().await.map_err(|e| Failed::AtCommit(pg_error(e)))?;
    Ok(results)
}

/// The transactions' rows, column by column, with what became of each.
#[derive(Default)]
struct TxnRows<'a> {
    ids: Vec<&'a str>,
    at: Vec<i64>,
    times: Vec<i64>,
    codes: Vec<String>,
    kinds: Vec<String>,
    accounts: Vec<&'a str>,
    amounts: Vec<i64>,
    payers: Vec<String>,
    names: Vec<String>,
    sources: Vec<&'static str>,
    bodies: Vec<&'a str>,
    hashes: Vec<Option<String>>,
    statuses: Vec<&'static str>,
    notes: Vec<String>,
    payments: Vec<Option<String>>,
}

impl<'a> TxnRows<'a> {
    fn push(&mut self, j: &'a IncomingConfirmation, status: &'static str, note: String, payment: Option<String>) {
        let p = &j.payment;
        self.ids.push(p.trans_id.as_str());
        self.at.push(j.received_at);
        self.times.push(crate::time_fmt::to_millis(p.trans_time));
        self.codes.push(p.business_short_code.to_string());
        self.kinds.push(kind(&p.transaction_type));
        self.accounts.push(p.bill_ref_number.as_str());
        self.amounts.push(i64::try_from(p.amount).unwrap_or(i64::MAX));
        self.payers.push(p.payer.display());
        self.names.push(p.payer_name());
        self.sources.push(j.source);
        self.bodies.push(j.body.as_str());
        self.hashes.push(payer_hash(&p.payer));
        self.statuses.push(status);
        self.notes.push(note);
        self.payments.push(payment);
    }

    /// Inserts every row; one recorded meanwhile by another process fails the batch.
    async fn insert(&self, tx: &deadpool_postgres::Transaction<'_>) -> Result<(), Failed> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO c2b_transactions (trans_id, received_at, trans_time, shortcode, kind, account, amount, payer,
                    payer_name, source, body, payer_hash, status, note, payment_id)
                 SELECT * FROM unnest($1::TEXT[], $2::INT8[], $3::INT8[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::INT8[],
                                      $8::TEXT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $13::TEXT[],
                                      $14::TEXT[], $15::TEXT[])
                 ON CONFLICT (trans_id) DO NOTHING",
            )
            .await
            .map_err(pg_error)?;
        let inserted = tx
            .execute(
                &insert,
                &[
                    &self.ids,
                    &self.at,
                    &self.times,
                    &self.codes,
                    &self.kinds,
                    &self.accounts,
                    &self.amounts,
                    &self.payers,
                    &self.names,
                    &self.sources,
                    &self.bodies,
                    &self.hashes,
                    &self.statuses,
                    &self.notes,
                    &self.payments,
                ],
            )
            .await
            .map_err(pg_error)?;
        if usize::try_from(inserted).unwrap_or(0) != self.ids.len() {
            return Err(Failed::BeforeCommit(StoreError::Conflict(
                "a TransID of the batch was recorded meanwhile by another process".into(),
            )));
        }
        Ok(())
    }
}
