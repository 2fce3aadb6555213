//! The operator's two decisions about an unmatched payment by hand: give it to a payment, or
//! note that it was refunded outside Lipa. Both audited in the same commit.

use daraja::c2b::{C2bPayment, TransactionType};

use super::{C2B_COLUMNS, c2b_from, payment_where};
use crate::payment::{PaymentId, Status};
use crate::settlement::Outcome;
use crate::settlement::c2b::{Payable, TxnStatus, on_confirmation};
use crate::settlement::plan::Plan;
use crate::store::StoreError;
use crate::store::settle::apply;
use crate::store::tx::Tx;

/// What an operator's decision about an unmatched transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Done; for an assignment, the payment's outcome (paid, partial, overpaid).
    Done(Outcome),
    /// The transaction is not (or no longer) unmatched.
    NotUnmatched,
    /// The payment does not exist.
    NoPayment,
    /// The payment is paid already: refund the transaction instead.
    AlreadyPaid,
}

/// Gives an unmatched transaction to a payment, as the operator decided: it counts towards the
/// payment by the rules of a confirmation (pays it, or part of it), whatever the payment's
/// state except paid, and the decision is audited in the same commit.
pub(in crate::store) async fn assign(
    tx: &mut impl Tx,
    trans_id: &str,
    payment_id: &PaymentId,
    actor: &str,
    note: &str,
    now: i64,
) -> Result<Resolved, StoreError> {
    let sql = format!("SELECT {C2B_COLUMNS} FROM c2b_transactions WHERE trans_id = $1 /*for_update*/");
    let rows = tx.rows(&sql, vec![trans_id.into()]).await?;
    let Some(txn) = rows.first().map(|r| c2b_from(r)).transpose()? else { return Ok(Resolved::NotUnmatched) };
    if txn.status != TxnStatus::Unmatched.as_str() {
        return Ok(Resolved::NotUnmatched);
    }
    let Some(payment) = payment_where(tx, "id", payment_id.as_str()).await? else { return Ok(Resolved::NoPayment) };
    if payment.status == Status::Paid {
        return Ok(Resolved::AlreadyPaid);
    }
    let told = C2bPayment {
        transaction_type: TransactionType::PayBill,
        trans_id: daraja::ReceiptNumber::parse(&txn.trans_id)
            .map_err(|e| StoreError::corrupt(format_args!("TransID: {}", e.reason)))?,
        trans_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(txn.trans_time) * 1_000_000)
            .map_err(|_| StoreError::corrupt("a C2B transaction's time is out of range"))?,
        amount: txn.amount,
        business_short_code: daraja::ShortCode::parse(&txn.shortcode)
            .map_err(|e| StoreError::corrupt(format_args!("shortcode: {}", e.reason)))?,
        bill_ref_number: txn.account.clone(),
        invoice_number: String::new(),
        org_account_balance: String::new(),
        third_party_trans_id: String::new(),
        payer: daraja::c2b::Payer::Unknown,
        names: Default::default(),
    };
    // The operator vouches for the match, so the payment counts as open.
    let payable = Payable {
        status: payment.status,
        amount: payment.amount,
        amount_received: payment.amount_received,
        receipt: payment.receipt.as_ref(),
        open: true,
    };
    let mut decided = on_confirmation(Some(payable), &told);
    decided.decision.note = format!("{} (assigned by {actor}: {note})", decided.decision.note);
    tx.execute(
        "UPDATE payments SET amount_received = amount_received + $2 WHERE id = $1",
        vec![payment.id.as_str().into(), i64::try_from(decided.received).unwrap_or(i64::MAX).into()],
    )
    .await?;
    let plan = apply(tx, &payment.id, Plan::of("assignment", decided.decision, payment.status), now).await?;
    tx.execute(
        "UPDATE c2b_transactions SET status = 'assigned', payment_id = $2, note = $3, resolved_at = $4 WHERE trans_id = $1",
        vec![trans_id.into(), payment.id.as_str().into(), plan.note.as_str().into(), now.into()],
    )
    .await?;
    let (sql, args) =
        crate::store::admin::audit_statement(actor, "assign_c2b", trans_id, &format!("to {}: {note}", payment.id), now);
    tx.execute(sql, args).await?;
    Ok(Resolved::Done(plan.outcome))
}

/// Marks an unmatched transaction refunded outside Lipa (the operator sent the money back by
/// other means), audited in the same commit.
pub(in crate::store) async fn refunded_outside(
    tx: &mut impl Tx,
    trans_id: &str,
    actor: &str,
    note: &str,
    now: i64,
) -> Result<Resolved, StoreError> {
    let done = tx
        .execute(
            "UPDATE c2b_transactions SET status = 'refunded_outside', note = $2, resolved_at = $3
             WHERE trans_id = $1 AND status = 'unmatched'",
            vec![trans_id.into(), format!("refunded outside Lipa by {actor}: {note}").into(), now.into()],
        )
        .await?;
    if done == 0 {
        return Ok(Resolved::NotUnmatched);
    }
    let (sql, args) = crate::store::admin::audit_statement(actor, "c2b_refunded_outside", trans_id, note, now);
    tx.execute(sql, args).await?;
    Ok(Resolved::Done(Outcome::Applied))
}
