//! Paybill payments (C2B) executed over one [`Tx`], the same on both databases: a
//! confirmation is recorded once per TransID, decided by `settlement::c2b`, and its plan
//! executed with the STK settlements' [`apply`]. Read back for the API and the admin; the
//! sweep of unmatched ones is in `sweep.rs`, the operator's decisions in `operator.rs`.

use daraja::c2b::{C2bPayment, TransactionType};

mod operator;
mod sweep;

pub use operator::Resolved;
pub(super) use operator::{assign, refunded_outside};
pub(super) use sweep::sweep_unmatched;

use super::StoreError;
use super::reads::payment_from;
use super::settle::apply;
use super::sql::{Arg, Cell};
use super::tx::Tx;
use crate::payment::{Payment, PaymentId, Status, normalize_paybill_account};
use crate::settlement::Outcome;
use crate::settlement::c2b::{Payable, TxnStatus, on_confirmation};
use crate::settlement::plan::Plan;

/// A customer's payment by hand, as Daraja told it (confirmation or Pull Transactions).
#[derive(Debug, Clone)]
pub struct IncomingConfirmation {
    /// The body as received (a pulled transaction: its JSON as Lipa read it).
    pub body: String,
    /// What it says.
    pub payment: C2bPayment,
    /// `confirmation` or `pull`.
    pub source: &'static str,
    /// Receive time, ms.
    pub received_at: i64,
    /// Payments created before this time (ms) can no longer be paid by hand.
    pub open_since: i64,
    /// Whether a payment with no account number (a till's) pays the one open payment from the
    /// same phone that is due exactly its amount (`[c2b] till_rule = "phone_and_amount"`).
    pub till_by_phone_and_amount: bool,
}

/// What recording a confirmation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationStored {
    /// For the payment its account number names: applied, partial, overpaid, unmatched, the
    /// same transaction; `Duplicate` when the TransID was recorded before (nothing else done).
    pub outcome: Outcome,
    /// The payment it was for, if any.
    pub payment_id: Option<PaymentId>,
    /// That payment's status after it.
    pub status: Option<Status>,
}

/// A recorded C2B transaction, as the API and the admin show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct C2bTransaction {
    /// `TransID`: the M-Pesa receipt.
    pub trans_id: String,
    /// When Lipa first heard of it (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub received_at: i64,
    /// When M-Pesa says it happened.
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub trans_time: i64,
    /// The shortcode paid.
    pub shortcode: String,
    /// `pay_bill`, `buy_goods` or Daraja's own word.
    pub kind: String,
    /// The account number the customer typed (empty for a till).
    pub account: String,
    /// Whole shillings.
    pub amount: u64,
    /// Who paid, as far as staff may see: a masked number, or that Safaricom hid it.
    pub payer: String,
    /// The payer's name as M-Pesa gave it.
    pub payer_name: String,
    /// The payment it counted towards, or was matched to.
    pub payment_id: Option<String>,
    /// `applied`, `same_as_stk`, `unmatched`, `assigned`, `refunded_outside`.
    pub status: String,
    /// What happened, in a sentence.
    pub note: String,
    /// `confirmation` or `pull`.
    pub source: String,
    /// How many times Daraja sent it.
    pub copies: u64,
}

/// The columns a C2B transaction is read with.
pub(super) const C2B_COLUMNS: &str = "trans_id, received_at, trans_time, shortcode, kind, account, amount, payer, payer_name, payment_id, status, note, source, copies";

/// A transaction read as `SELECT C2B_COLUMNS`.
pub(super) fn c2b_from(row: &[Cell]) -> Result<C2bTransaction, StoreError> {
    let [
        trans_id,
        received_at,
        trans_time,
        shortcode,
        kind,
        account,
        amount,
        payer,
        payer_name,
        payment_id,
        status,
        note,
        source,
        copies,
    ] = row
    else {
        return Err(StoreError::corrupt(format_args!("a C2B transaction row has {} columns", row.len())));
    };
    let count = |c: &Cell, what: &str| {
        u64::try_from(c.int()).map_err(|_| StoreError::corrupt(format_args!("a C2B transaction's {what} is negative")))
    };
    Ok(C2bTransaction {
        trans_id: trans_id.text(),
        received_at: received_at.int(),
        trans_time: trans_time.int(),
        shortcode: shortcode.text(),
        kind: kind.text(),
        account: account.text(),
        amount: count(amount, "amount")?,
        payer: payer.text(),
        payer_name: payer_name.text(),
        payment_id: payment_id.opt_text(),
        status: status.text(),
        note: note.text(),
        source: source.text(),
        copies: count(copies, "copies")?,
    })
}

pub(in crate::store) fn kind(t: &TransactionType) -> String {
    match t {
        TransactionType::PayBill => "pay_bill".into(),
        TransactionType::BuyGoods => "buy_goods".into(),
        TransactionType::Other(other) => other.chars().take(40).collect(),
    }
}

/// The SHA-256 of the payer's number, when Daraja gave the number or its hash.
pub(in crate::store) fn payer_hash(payer: &daraja::c2b::Payer) -> Option<String> {
    match payer {
        daraja::c2b::Payer::Plain(phone) => Some(daraja::c2b::hash(*phone)),
        daraja::c2b::Payer::Hashed(hash) => Some(hash.clone()),
        daraja::c2b::Payer::Masked(_) | daraja::c2b::Payer::Unknown => None,
    }
}

/// The one open payment (pending or failed, made since `open_since`) from the payer's phone
/// that is due exactly `amount`, locked; `None` when there is none, or more than one.
async fn by_phone_and_amount(
    tx: &mut impl Tx,
    payer_hash: &str,
    amount: u64,
    open_since: i64,
) -> Result<Option<Payment>, StoreError> {
    let sql = format!(
        "SELECT {} FROM payments WHERE status IN ('pending', 'failed') AND created_at >= $1 AND amount - amount_received = $2",
        payment_columns!()
    );
    let rows = tx.rows(&sql, vec![open_since.into(), i64::try_from(amount).unwrap_or(i64::MAX).into()]).await?;
    let mut mine = Vec::new();
    for row in &rows {
        let p = payment_from(row)?;
        if daraja::c2b::hash(p.phone) == payer_hash {
            mine.push(p);
        }
    }
    let [one] = mine.as_slice() else { return Ok(None) };
    // Locked now, as the other lookups lock theirs.
    payment_where(tx, "id", one.id.as_str()).await
}

/// The payment a query finds, locked for the rest of the transaction.
pub(super) async fn payment_where(
    tx: &mut impl Tx,
    condition: &str,
    value: &str,
) -> Result<Option<Payment>, StoreError> {
    let sql = format!("SELECT {} FROM payments WHERE {condition} = $1 /*for_update*/", payment_columns!());
    let rows = tx.rows(&sql, vec![value.into()]).await?;
    rows.first().map(|r| payment_from(r)).transpose()
}

/// Records a confirmation once per TransID and applies it to the payment it names.
pub(super) async fn settle_confirmation(
    tx: &mut impl Tx,
    incoming: &IncomingConfirmation,
) -> Result<ConfirmationStored, StoreError> {
    let p = &incoming.payment;
    let now = incoming.received_at;
    let trans_id = p.trans_id.as_str();
    // The STK payment whose receipt this is, else the payment the account number names.
    let mut payment = payment_where(tx, "receipt", trans_id).await?;
    if payment.is_none()
        && let Some(account) = normalize_paybill_account(&p.bill_ref_number)
    {
        payment = payment_where(tx, "paybill_account", &account).await?;
    }
    if payment.is_none()
        && incoming.till_by_phone_and_amount
        && p.bill_ref_number.is_empty()
        && let Some(hash) = payer_hash(&p.payer)
    {
        payment = by_phone_and_amount(tx, &hash, p.amount, incoming.open_since).await?;
    }
    // The row is the claim: a second copy (even one arriving at the same moment, which waits
    // for this transaction) finds it and is only counted. The payment is locked first, as
    // the batches on PostgreSQL lock theirs before recording their TransIDs: one order for
    // every writer, so none waits on another that waits on it.
    let claimed = tx
        .execute(
            "INSERT INTO c2b_transactions (trans_id, received_at, trans_time, shortcode, kind, account, amount, payer,
                payer_name, status, note, source, body, payer_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'unmatched', '', $10, $11, $12)
             ON CONFLICT (trans_id) DO NOTHING",
            vec![
                trans_id.into(),
                now.into(),
                crate::time_fmt::to_millis(p.trans_time).into(),
                p.business_short_code.to_string().into(),
                kind(&p.transaction_type).into(),
                p.bill_ref_number.as_str().into(),
                i64::try_from(p.amount).unwrap_or(i64::MAX).into(),
                p.payer.display().into(),
                p.payer_name().into(),
                incoming.source.into(),
                incoming.body.as_str().into(),
                payer_hash(&p.payer).into(),
            ],
        )
        .await?;
    if claimed == 0 {
        // A pull finding what a confirmation told already is not another copy of it.
        if incoming.source != "pull" {
            tx.execute("UPDATE c2b_transactions SET copies = copies + 1 WHERE trans_id = $1", vec![trans_id.into()])
                .await?;
        }
        return Ok(ConfirmationStored { outcome: Outcome::Duplicate, payment_id: None, status: None });
    }
    let payable = payment.as_ref().map(|pay| Payable {
        status: pay.status,
        amount: pay.amount,
        amount_received: pay.amount_received,
        receipt: pay.receipt.as_ref(),
        open: matches!(pay.status, Status::Pending | Status::Failed) && pay.created_at >= incoming.open_since,
    });
    let decided = on_confirmation(payable, p);
    let (outcome, note, status, mut txn) = match &payment {
        Some(pay) => {
            if decided.received > 0 {
                tx.execute(
                    "UPDATE payments SET amount_received = amount_received + $2 WHERE id = $1",
                    vec![pay.id.as_str().into(), i64::try_from(decided.received).unwrap_or(i64::MAX).into()],
                )
                .await?;
            }
            let plan = apply(tx, &pay.id, Plan::of("c2b", decided.decision, pay.status), now).await?;
            (plan.outcome, plan.note, Some(plan.after), decided.txn)
        }
        None => (decided.decision.outcome, decided.decision.note, None, decided.txn),
    };
    if outcome == Outcome::Conflict {
        // Its TransID paid another payment meanwhile (see `apply`): for staff.
        txn = TxnStatus::Unmatched;
    }
    let payment_id = payment.map(|pay| pay.id);
    tx.execute(
        "UPDATE c2b_transactions SET status = $2, note = $3, payment_id = $4 WHERE trans_id = $1",
        vec![trans_id.into(), txn.as_str().into(), note.into(), Arg::from(payment_id.as_ref().map(PaymentId::as_str))],
    )
    .await?;
    Ok(ConfirmationStored { outcome, payment_id, status })
}
