//! SQLite backend: the engine (`engine.rs`: one writer thread with group commit, a thread
//! that makes each commit durable, checkpoints, readers) and the callback hot path, which
//! settles each callback inside the writer's batch with statements tuned for SQLite. Every
//! other write runs the shared code of [`super::writes`] in the writer, through [`SqliteTx`].

use std::borrow::Cow;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sql::{Arg, Cell, Rows, Statement, to_sqlite};
use super::tx::{Tx, at_once};
use super::{
    CallbackStored, IncomingCallback, Inserted, Kept, NewCheckoutSession, NewPayment, PAYMENT_COLUMN_COUNT,
    PAYMENT_COLUMNS, PushResult, SessionInserted, StoreError, callback_decision, current, kept, settle, unserialisable,
    writes,
};
use crate::payment::{FailureReason, Payment, PaymentId, SettledBy, Status};
use crate::settlement::plan::{self, Outbox, Plan};
use crate::settlement::{self, Change, Decision};

mod engine;
mod refunds;
#[cfg(test)]
mod tests;

pub use engine::SqliteStore;
use engine::*;

impl SqliteStore {
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.kept()?;
        self.read(|c| row(c, "SELECT 1", [], |_| Ok(())).map_err(sql_error)).await
    }

    // ---- API keys ----

    // ---- payments ----

    pub(super) async fn insert_payment(&self, new: NewPayment) -> Result<Inserted, StoreError> {
        self.write(move |c| at_once(writes::insert_payment(&mut SqliteTx(c), &new))).await
    }

    pub(super) async fn record_push(&self, id: PaymentId, result: PushResult, now: i64) -> Result<Payment, StoreError> {
        self.write(move |c| at_once(writes::record_push(&mut SqliteTx(c), &id, &result, now))).await
    }

    // ---- callbacks and queries ----

    pub(super) async fn settle_from_callback(&self, incoming: IncomingCallback) -> Result<CallbackStored, StoreError> {
        self.write_repeatable(move |c| {
            // The whole payment: its webhook is written from it, as the settlement leaves it.
            static BY_TOKEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                format!("SELECT {PAYMENT_COLUMNS}, rowid FROM payments WHERE callback_token_hash = ?1")
            });
            let found = row(c, &BY_TOKEN, [&incoming.token_hash], payment_and_rowid).optional().map_err(sql_error)?;
            let decision = callback_decision(&incoming.parsed, found.as_ref().map(|(p, _)| current(p)));
            let payment_id = found.as_ref().map(|(p, _)| p.id.clone());
            // A malformed body with a known token still belongs to that payment: flagged for
            // review, with its reason on the payment's timeline.
            let (outcome, note, status) = match found {
                Some((payment, rowid)) => {
                    let before = payment.status;
                    let plan = apply(c, rowid, payment, Plan::of("callback", decision, before), incoming.received_at)?;
                    (plan.outcome, plan.note, Some(plan.after))
                }
                None => (decision.outcome, decision.note, None),
            };
            let stored = match kept(&incoming, payment_id.as_ref(), outcome, note) {
                Kept::Row(r) => exec(
                    c,
                    INSERT_CALLBACK,
                    params![
                        r.received_at,
                        r.payment_id,
                        r.token_hash,
                        r.source,
                        r.checkout_request_id,
                        r.outcome,
                        r.note,
                        r.body
                    ],
                ),
                Kept::Counted(t) => exec(c, &COUNT_UNMATCHED, params![t.minute, 1, t.bytes, t.at]).map(|_| 0),
            };
            let stored = stored.map_err(sql_error)? > 0;
            Ok(CallbackStored { outcome, stored, payment_id, status })
        })
        .await
    }

    pub(super) async fn settle_from_query(
        &self,
        id: PaymentId,
        result: daraja::QueryResult,
        now: i64,
    ) -> Result<Decision, StoreError> {
        self.write(move |c| at_once(settle::settle_from_query(&mut SqliteTx(c), &id, &result, now))).await
    }

    pub(super) async fn expire_overdue(
        &self,
        created_before: i64,
        failing_before: i64,
        now: i64,
    ) -> Result<Vec<PaymentId>, StoreError> {
        self.write(move |c| at_once(settle::expire_overdue(&mut SqliteTx(c), created_before, failing_before, now)))
            .await
    }

    // ---- Paybill payments ----

    pub(super) async fn settle_from_confirmation(
        &self,
        incoming: super::IncomingConfirmation,
    ) -> Result<super::ConfirmationStored, StoreError> {
        self.write(move |c| at_once(super::c2b::settle_confirmation(&mut SqliteTx(c), &incoming))).await
    }

    pub(super) async fn assign_c2b(
        &self,
        trans_id: String,
        payment_id: PaymentId,
        actor: String,
        note: String,
        now: i64,
    ) -> Result<super::Resolved, StoreError> {
        self.write(move |c| at_once(super::c2b::assign(&mut SqliteTx(c), &trans_id, &payment_id, &actor, &note, now)))
            .await
    }

    pub(super) async fn c2b_refunded_outside(
        &self,
        trans_id: String,
        actor: String,
        note: String,
        now: i64,
    ) -> Result<super::Resolved, StoreError> {
        self.write(move |c| at_once(super::c2b::refunded_outside(&mut SqliteTx(c), &trans_id, &actor, &note, now)))
            .await
    }

    pub(super) async fn sweep_unmatched(&self, announce_before: i64, now: i64) -> Result<(u64, u64), StoreError> {
        self.write(move |c| at_once(super::c2b::sweep_unmatched(&mut SqliteTx(c), announce_before, now))).await
    }

    // ---- plain SQL (see `sql.rs`) ----

    pub(super) async fn query(&self, sql: Cow<'static, str>, args: Vec<Arg>) -> Result<Rows, StoreError> {
        self.read(move |c| rows_of(c, &sql, &args)).await
    }

    pub(super) async fn execute_returning(&self, sql: &'static str, args: Vec<Arg>) -> Result<Rows, StoreError> {
        self.write(move |c| rows_of(c, sql, &args)).await
    }

    /// Completes once everything committed so far is flushed (an empty write).
    pub(super) async fn wait_until_durable(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(())).await
    }

    pub(super) async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        self.write(move |c| {
            statements
                .iter()
                .map(|(sql, args)| {
                    exec(c, &to_sqlite(sql), rusqlite::params_from_iter(args)).map(|n| n as u64).map_err(sql_error)
                })
                .collect()
        })
        .await
    }

    // ---- checkout sessions ----

    pub(super) async fn insert_checkout_session(&self, new: NewCheckoutSession) -> Result<SessionInserted, StoreError> {
        self.write(move |c| at_once(writes::insert_checkout_session(&mut SqliteTx(c), new))).await
    }

    // ---- emails ----
}

/// Runs a statement from the connection's statement cache.
fn exec(c: &Connection, sql: &str, args: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(args)
}

/// Reads one row with a statement from the connection's statement cache.
fn row<T>(
    c: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(args, f)
}

/// Executes a settlement plan on the payment in row `rowid`; returns the plan as carried out
/// (a receipt that already paid another payment turns it into a conflict's).
fn apply(c: &Connection, rowid: i64, payment: Payment, plan: Plan, now: i64) -> Result<Plan, StoreError> {
    let mut plan = plan;
    if let Some(change) = &plan.change {
        match write_change(c, rowid, change, plan.review, now) {
            Ok(()) => {}
            // A unique index refused it (the receipt or CheckoutRequestID belongs to another
            // payment): one M-Pesa transaction cannot settle two payments.
            Err(StoreError::Conflict(_)) => {
                let receipt = change.receipt.as_deref().unwrap_or_default();
                let other: Option<String> =
                    row(c, "SELECT id FROM payments WHERE receipt = ?1", [receipt], |r| r.get(0))
                        .optional()
                        .map_err(sql_error)?;
                plan = plan.replanned(settlement::already_used(change.receipt.as_ref(), other.as_deref()));
            }
            Err(e) => return Err(e),
        }
    }
    if plan.flags_only() {
        exec(c, "UPDATE payments SET needs_review = 1, updated_at = ?2 WHERE rowid = ?1", params![rowid, now])
            .map_err(sql_error)?;
    }
    let payment = plan.applied_to(payment, now);
    debug_assert_eq!(Some(&payment), load(c, &payment.id).ok().as_ref(), "the settled payment as written");
    record(c, &payment, &plan, now)?;
    Ok(plan)
}

/// Writes a plan's timeline event and announcement, for `payment` as the plan left it: the
/// hot path's copy of [`writes::record`] with SQLite's own statements (through [`SqliteTx`]
/// the writer ran 6 % more instructions per callback, `scripts/count-ingest.sh`).
fn record(c: &Connection, payment: &Payment, plan: &Plan, now: i64) -> Result<(), StoreError> {
    let event = &plan.event;
    exec(c, INSERT_EVENT, params![payment.id.as_str(), now, event.kind, event.detail.to_string()])
        .map_err(sql_error)?;
    let Some(event_type) = plan.announce else { return Ok(()) };
    let Outbox { webhook: w, email } = plan::outbox(payment, event_type, now).map_err(unserialisable)?;
    exec(
        c,
        INSERT_WEBHOOK_EVENT,
        params![w.id, w.payment_id.as_str(), w.api_key_id, w.event_type, w.url, w.payload, w.at],
    )
    .map_err(sql_error)?;
    if let Some(e) = email {
        exec(c, INSERT_EMAIL, params![e.id, e.payment_id.as_str(), e.recipient, e.at]).map_err(sql_error)?;
    }
    Ok(())
}

/// The UPDATE that settles a payment, naming only the columns the change brings (bit 1: the
/// receipt, 2: the transaction date, 4: the CheckoutRequestID). SQLite rewrites the index
/// entries of every column named in SET, even to the same value, so naming an unchanged
/// receipt or CheckoutRequestID would cost its unique index a delete, an insert and a
/// uniqueness check. The eight statements, one per combination, are written once.
static SETTLE: std::sync::LazyLock<[String; 8]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|brings| {
        let column = |bit: usize, set: &'static str| if brings & bit != 0 { set } else { "" };
        format!(
            "UPDATE payments SET status = ?2, failure_reason = ?3, result_code = ?4, result_desc = ?5,{}{}{}
                settled_by = ?9, settled_at = COALESCE(settled_at, ?10), needs_review = MAX(needs_review, ?11),
                updated_at = ?10, next_check_at = NULL, lease_until = NULL
             WHERE rowid = ?1",
            column(1, " receipt = ?6,"),
            column(2, " transaction_date = ?7,"),
            column(4, " checkout_request_id = COALESCE(checkout_request_id, ?8),"),
        )
    })
});

/// The writes of a settlement besides the payment's own UPDATE ([`SETTLE`]).
const INSERT_CALLBACK: &str =
    "INSERT INTO callbacks (received_at, payment_id, token_hash, source, checkout_request_id, outcome, note, body)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
/// [`settle::COUNT_UNMATCHED`] as SQLite's statement cache knows it.
static COUNT_UNMATCHED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| to_sqlite(settle::COUNT_UNMATCHED));
const INSERT_EVENT: &str = "INSERT INTO events (payment_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)";
const INSERT_WEBHOOK_EVENT: &str =
    "INSERT INTO webhook_events (id, payment_id, api_key_id, type, url, payload, status, created_at, next_attempt_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)";
const INSERT_EMAIL: &str = "INSERT INTO emails (id, payment_id, recipient, status, created_at, next_attempt_at)
     VALUES (?1, ?2, ?3, 'pending', ?4, ?4)";

/// Writes a change to the payment in row `rowid`.
fn write_change(c: &Connection, rowid: i64, ch: &Change, review: bool, now: i64) -> Result<(), StoreError> {
    let brings = usize::from(ch.receipt.is_some())
        | usize::from(ch.transaction_date.is_some()) << 1
        | usize::from(ch.checkout_request_id.is_some()) << 2;
    let changed = exec(
        c,
        &SETTLE[brings],
        params![
            rowid,
            ch.status.as_str(),
            ch.failure_reason.map(FailureReason::as_str),
            ch.result_code,
            ch.result_desc,
            ch.receipt.as_deref(),
            ch.transaction_date,
            ch.checkout_request_id.as_deref(),
            ch.settled_by.as_str(),
            now,
            i64::from(review),
        ],
    )
    .map_err(sql_error)?;
    match changed {
        1 => Ok(()),
        n => Err(StoreError::corrupt(format_args!("settling payment row {rowid} changed {n} rows instead of one"))),
    }
}

fn load(c: &Connection, id: &PaymentId) -> Result<Payment, StoreError> {
    row(c, &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?1"), [id.as_str()], payment_from_row)
        .map_err(sql_error)
}

/// A payment read as `SELECT {PAYMENT_COLUMNS}, rowid`, with its rowid: settlement reaches
/// the row again by it.
fn payment_and_rowid(r: &Row<'_>) -> rusqlite::Result<(Payment, i64)> {
    Ok((payment_from_row(r)?, r.get(PAYMENT_COLUMN_COUNT)?))
}

/// The rows of a statement written for both backends (see [`super::sql`]).
fn rows_of(c: &Connection, sql: &str, args: &[Arg]) -> Result<Rows, StoreError> {
    let mut stmt = c.prepare_cached(&to_sqlite(sql)).map_err(sql_error)?;
    let n = stmt.column_count();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            (0..n).map(|i| r.get_ref(i).map(sqlite_cell)).collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql_error)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Arg::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Arg::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Arg::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
            Arg::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Arg::NullInt | Arg::NullText => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// A transaction for the writes written once for both backends ([`super::writes`]): the
/// writer's connection, inside its batch.
struct SqliteTx<'c>(&'c Connection);

impl Tx for SqliteTx<'_> {
    async fn rows(&mut self, sql: &str, args: Vec<Arg>) -> Result<Rows, StoreError> {
        rows_of(self.0, sql, &args)
    }

    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        let changed = exec(self.0, &to_sqlite(sql), rusqlite::params_from_iter(&args)).map_err(sql_error)?;
        Ok(changed as u64)
    }

    async fn lock(&mut self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

fn sqlite_cell(v: rusqlite::types::ValueRef<'_>) -> Cell {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        // Only aggregates produce reals here (averages); whole numbers are what is shown.
        #[allow(clippy::cast_possible_truncation)]
        ValueRef::Real(f) => Cell::Int(f.round() as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

fn bad(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, what.to_owned().into())
}

fn id_at<T>(
    r: &Row<'_>,
    col: usize,
    parse: fn(&str) -> Result<T, daraja::InvalidField>,
) -> rusqlite::Result<Option<T>> {
    let text = r.get_ref(col)?.as_str_or_null()?;
    super::daraja_id(text, parse).map_err(|e| bad(col, &e.to_string()))
}

fn payment_from_row(r: &Row<'_>) -> rusqlite::Result<Payment> {
    let status: String = r.get(1)?;
    let metadata: String = r.get(6)?;
    let reason: Option<String> = r.get(13)?;
    let settled_by: Option<String> = r.get(16)?;
    Ok(Payment {
        id: PaymentId::from_db(r.get(0)?),
        status: Status::parse(&status).ok_or_else(|| bad(1, "unknown status"))?,
        amount: daraja::Amount::new(r.get::<_, i64>(2)?.try_into().unwrap_or(0))
            .map_err(|_| bad(2, "amount out of range"))?,
        phone: daraja::Msisdn::parse(&r.get::<_, String>(3)?).map_err(|_| bad(3, "not a Kenyan MSISDN"))?,
        account_reference: r.get(4)?,
        description: r.get(5)?,
        metadata: serde_json::from_str(&metadata).map_err(|_| bad(6, "metadata is not JSON"))?,
        webhook_url: r.get(7)?,
        customer_email: r.get(8)?,
        merchant_request_id: id_at(r, 9, daraja::MerchantRequestId::parse)?,
        checkout_request_id: id_at(r, 10, daraja::CheckoutRequestId::parse)?,
        receipt: id_at(r, 11, daraja::ReceiptNumber::parse)?,
        transaction_date: r.get(12)?,
        failure_reason: reason
            .as_deref()
            .map(|s| FailureReason::parse(s).ok_or_else(|| bad(13, "unknown reason")))
            .transpose()?,
        result_code: r.get(14)?,
        result_desc: r.get(15)?,
        settled_by: settled_by
            .as_deref()
            .map(|s| SettledBy::parse(s).ok_or_else(|| bad(16, "unknown settled_by")))
            .transpose()?,
        needs_review: r.get::<_, i64>(17)? != 0,
        created_at: r.get(18)?,
        updated_at: r.get(19)?,
        settled_at: r.get(20)?,
        callback_token_hash: r.get(21)?,
        api_key_id: r.get(22)?,
        paybill_account: r.get(23)?,
        amount_received: r.get::<_, i64>(24)?.try_into().map_err(|_| bad(24, "amount received is negative"))?,
        refunded_amount: r.get::<_, i64>(25)?.try_into().map_err(|_| bad(25, "amount refunded is negative"))?,
        paybill: None,
    })
}
