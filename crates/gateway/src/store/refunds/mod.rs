//! Refunds executed over one [`Tx`], the same on both databases: taking a refund request
//! (under the payment's row lock, so concurrent requests take one), recording how its
//! Reversal was sent, and applying Daraja's answers (`settle.rs`). Reads for the API and the
//! worker's leases are on [`Store`](super::Store) in `reads` below.

/// The columns a refund is read with (a macro, for statements built with `concat!`).
macro_rules! refund_columns {
    () => {
        "id, payment_id, amount, status, reason, reversal_receipt, result_code, result_desc, needs_review, \
         requested_by, created_at, updated_at, settled_at, send_state, originator_conversation_id, timed_out, \
         status_checks, note, api_key_id"
    };
}

mod reads;
mod settle;

pub use settle::{MessageKind, MessageStored, Parsed, RefundMessage, SendOutcome};
pub(super) use settle::{record_send, resolve, settle_message};

use super::StoreError;
use super::settle::{event, load};
use super::sql::Cell;
use super::tx::Tx;
use crate::payment::PaymentId;
use crate::refund::{Refund, RefundId, RefundStatus, SendState};
use crate::settlement::refund::{Refusal, may_refund};

/// [`refund_columns!`] as a constant.
pub(super) const REFUND_COLUMNS: &str = refund_columns!();

/// A refund read as `SELECT REFUND_COLUMNS`.
pub(super) fn refund_from(row: &[Cell]) -> Result<Refund, StoreError> {
    let [
        id,
        payment_id,
        amount,
        status,
        reason,
        receipt,
        result_code,
        result_desc,
        needs_review,
        requested_by,
        created_at,
        updated_at,
        settled_at,
        send_state,
        originator_conversation_id,
        timed_out,
        status_checks,
        note,
        api_key_id,
    ] = row
    else {
        return Err(StoreError::corrupt(format_args!("a refund row has {} columns", row.len())));
    };
    Ok(Refund {
        id: RefundId::from_db(id.text()),
        payment_id: PaymentId::from_db(payment_id.text()),
        amount: super::received(amount.int())?,
        status: RefundStatus::parse(&status.text()).ok_or_else(|| StoreError::corrupt("unknown refund status"))?,
        reason: reason.text(),
        receipt: receipt.opt_text(),
        result_code: result_code.opt_text(),
        result_desc: result_desc.opt_text(),
        needs_review: needs_review.int() != 0,
        requested_by: requested_by.text(),
        created_at: created_at.int(),
        updated_at: updated_at.int(),
        settled_at: settled_at.opt_int(),
        send_state: SendState::parse(&send_state.text()).ok_or_else(|| StoreError::corrupt("unknown send state"))?,
        originator_conversation_id: originator_conversation_id.opt_text(),
        timed_out: timed_out.int() != 0,
        status_checks: u32::try_from(status_checks.int()).unwrap_or(u32::MAX),
        note: note.text(),
        api_key_id: api_key_id.opt_text(),
    })
}

/// A refund to take.
#[derive(Debug, Clone)]
pub struct NewRefund {
    /// Its id.
    pub id: RefundId,
    /// The payment to refund.
    pub payment_id: PaymentId,
    /// The merchant's key asking (the payment must be its own); `None` for staff.
    pub api_key_id: Option<String>,
    /// The request's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// What the request asked, hashed: the same key with another request is refused.
    pub request_hash: String,
    /// The amount asked for, if one was given (only the whole amount is taken).
    pub amount: Option<u64>,
    /// Why.
    pub reason: String,
    /// `api` or `admin:<user>`.
    pub requested_by: String,
    /// SHA-256 of the secret in its result URLs.
    pub token_hash: String,
    /// When the worker sends it if the request's own send never happened (ms).
    pub send_by: i64,
    /// Now, ms.
    pub now: i64,
}

/// What taking a refund request did.
#[derive(Debug, Clone)]
pub enum RefundInserted {
    /// A new pending refund.
    Created(Refund),
    /// The refund made earlier with the same idempotency key, and that request's hash.
    Existing(Refund, String),
    /// The payment cannot be refunded now.
    Refused(Refusal),
    /// No such payment (for this key).
    NoPayment,
}

/// The refund an API key made with an idempotency key, and its request hash.
async fn by_idempotency_key(tx: &mut impl Tx, key_id: &str, key: &str) -> Result<Option<(Refund, String)>, StoreError> {
    let sql =
        format!("SELECT {REFUND_COLUMNS}, request_hash FROM refunds WHERE api_key_id = $1 AND idempotency_key = $2");
    let rows = tx.rows(&sql, vec![key_id.into(), key.into()]).await?;
    let Some((hash, refund)) = rows.first().and_then(|r| r.split_last()) else { return Ok(None) };
    Ok(Some((refund_from(refund)?, hash.text())))
}

/// The payment's refund that is pending or succeeded, if any (at most one: `refunds_once`).
pub(super) async fn open_refund(tx: &mut impl Tx, payment_id: &PaymentId) -> Result<Option<Refund>, StoreError> {
    let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id = $1 AND status <> 'failed'");
    let rows = tx.rows(&sql, vec![payment_id.as_str().into()]).await?;
    rows.first().map(|r| refund_from(r)).transpose()
}

/// Takes a refund request: under the payment's row lock, the rules decide; at most one refund
/// per payment is open, whatever number of requests race (the lock, then `refunds_once`).
pub(super) async fn insert_refund(tx: &mut impl Tx, new: &NewRefund) -> Result<RefundInserted, StoreError> {
    if let (Some(key_id), Some(key)) = (&new.api_key_id, &new.idempotency_key)
        && let Some((refund, hash)) = by_idempotency_key(tx, key_id, key).await?
    {
        return Ok(RefundInserted::Existing(refund, hash));
    }
    let exists = tx.rows("SELECT api_key_id FROM payments WHERE id = $1", vec![new.payment_id.as_str().into()]).await?;
    let owned = exists.first().is_some_and(|r| new.api_key_id.as_ref().is_none_or(|k| *k == r[0].text()));
    if !owned {
        return Ok(RefundInserted::NoPayment);
    }
    let payment = load(tx, &new.payment_id).await?;
    // Under the payment's lock: a request with the same key may have committed meanwhile.
    if let (Some(key_id), Some(key)) = (&new.api_key_id, &new.idempotency_key)
        && let Some((refund, hash)) = by_idempotency_key(tx, key_id, key).await?
    {
        return Ok(RefundInserted::Existing(refund, hash));
    }
    if let Err(refusal) = may_refund(&payment, open_refund(tx, &new.payment_id).await?.as_ref(), new.amount) {
        return Ok(RefundInserted::Refused(refusal));
    }
    let inserted = tx
        .execute(
            "INSERT INTO refunds (id, payment_id, api_key_id, idempotency_key, request_hash, amount, reason, requested_by,
                status, send_state, result_token_hash, next_check_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 'new', $9, $10, $11, $11)
             ON CONFLICT DO NOTHING",
            vec![
                new.id.as_str().into(),
                new.payment_id.as_str().into(),
                new.api_key_id.clone().into(),
                new.idempotency_key.clone().into(),
                new.request_hash.as_str().into(),
                i64::from(payment.amount.shillings()).into(),
                new.reason.as_str().into(),
                new.requested_by.as_str().into(),
                new.token_hash.as_str().into(),
                new.send_by.into(),
                new.now.into(),
            ],
        )
        .await?;
    if inserted == 0 {
        // Another process took a request for this payment, or this idempotency key, first.
        if let (Some(key_id), Some(key)) = (&new.api_key_id, &new.idempotency_key)
            && let Some((refund, hash)) = by_idempotency_key(tx, key_id, key).await?
        {
            return Ok(RefundInserted::Existing(refund, hash));
        }
        return match open_refund(tx, &new.payment_id).await? {
            Some(open) => Ok(RefundInserted::Refused(
                may_refund(&payment, Some(&open), None).err().unwrap_or(Refusal::InProgress(open.id.clone())),
            )),
            None => {
                Err(StoreError::Conflict("a refund could not be recorded, and no other refund holds its place".into()))
            }
        };
    }
    let detail = serde_json::json!({"refund_id": new.id, "amount": payment.amount, "reason": new.reason, "by": new.requested_by});
    event(tx, &new.payment_id, new.now, "refund_requested", &detail).await?;
    let refund = by_id(tx, &new.id).await?.ok_or_else(|| StoreError::corrupt("a refund vanished as it was written"))?;
    Ok(RefundInserted::Created(refund))
}

/// A refund by id.
pub(super) async fn by_id(tx: &mut impl Tx, id: &RefundId) -> Result<Option<Refund>, StoreError> {
    let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1");
    let rows = tx.rows(&sql, vec![id.as_str().into()]).await?;
    rows.first().map(|r| refund_from(r)).transpose()
}

/// Marks a new refund as being sent; `None` when it is not new (sent already, or by another
/// process now).
pub(super) async fn begin_send(tx: &mut impl Tx, id: &RefundId, now: i64) -> Result<Option<Refund>, StoreError> {
    let changed = tx
        .execute(
            "UPDATE refunds SET send_state = 'sending', updated_at = $2, next_check_at = NULL
             WHERE id = $1 AND send_state = 'new' AND status = 'pending'",
            vec![id.as_str().into(), now.into()],
        )
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    by_id(tx, id).await
}
