//! Paybill payments (C2B) executed over one [`Tx`], the same on both databases: a
//! confirmation is recorded once per TransID, decided by `settlement::c2b`, and its plan
//! executed with the STK settlements' [`apply`]. Read back for the API and the admin.

use daraja::c2b::{C2bPayment, TransactionType};

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

fn kind(t: &TransactionType) -> String {
    match t {
        TransactionType::PayBill => "pay_bill".into(),
        TransactionType::BuyGoods => "buy_goods".into(),
        TransactionType::Other(other) => other.chars().take(40).collect(),
    }
}

/// The SHA-256 of the payer's number, when Daraja gave the number or its hash.
fn payer_hash(payer: &daraja::c2b::Payer) -> Option<String> {
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
async fn payment_where(tx: &mut impl Tx, condition: &str, value: &str) -> Result<Option<Payment>, StoreError> {
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
    // The row is the claim: a second copy (even one arriving at the same moment, which waits
    // for this transaction) finds it and is only counted.
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
        tx.execute("UPDATE c2b_transactions SET copies = copies + 1 WHERE trans_id = $1", vec![trans_id.into()])
            .await?;
        return Ok(ConfirmationStored { outcome: Outcome::Duplicate, payment_id: None, status: None });
    }
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

/// Links unmatched transactions to the STK payments they turned out to be (a shortcode that
/// also hears of its STK payments by C2B may hear of one before its STK callback arrives),
/// then announces those still unmatched that were received before `announce_before`
/// (webhook `c2b.unmatched`, once each, at most 100 a call). Returns (linked, announced).
pub(super) async fn sweep_unmatched(
    tx: &mut impl Tx,
    announce_before: i64,
    now: i64,
) -> Result<(u64, u64), StoreError> {
    let linked = tx
        .execute(
            "UPDATE c2b_transactions SET status = 'same_as_stk',
                payment_id = (SELECT p.id FROM payments p WHERE p.receipt = c2b_transactions.trans_id),
                note = 'the STK payment with this receipt arrived after it'
             WHERE status = 'unmatched' AND resolved_at IS NULL
               AND EXISTS (SELECT 1 FROM payments p WHERE p.receipt = c2b_transactions.trans_id)",
            vec![],
        )
        .await?;
    // Is it an STK payment a query settled (no receipt to link it by)? Asked of the newest
    // unmatched ones at every sweep, since the payment may be settled after its echo came.
    let mut linked = linked;
    let newest = format!(
        "SELECT {C2B_COLUMNS}, payer_hash FROM c2b_transactions
         WHERE status = 'unmatched' AND resolved_at IS NULL AND payer_hash IS NOT NULL
         ORDER BY received_at DESC LIMIT 100 /*skip_locked*/"
    );
    for row in &tx.rows(&newest, vec![]).await? {
        let (columns, hash) = row.split_at(row.len() - 1);
        let txn = c2b_from(columns)?;
        if let Some(payment) = settled_without_receipt(tx, &txn, &hash[0].text()).await? {
            add_receipt(tx, &payment, &txn, now).await?;
            linked += 1;
        }
    }
    // What stayed unmatched long enough is announced, once.
    let oldest = format!(
        "SELECT {C2B_COLUMNS} FROM c2b_transactions
         WHERE status = 'unmatched' AND announced_at IS NULL AND received_at < $1
         ORDER BY received_at LIMIT 100 /*skip_locked*/"
    );
    let mut announced = 0;
    for row in &tx.rows(&oldest, vec![announce_before.into()]).await? {
        let txn = c2b_from(row)?;
        announce(tx, &txn, now).await?;
        tx.execute(
            "UPDATE c2b_transactions SET announced_at = $2 WHERE trans_id = $1",
            vec![txn.trans_id.as_str().into(), now.into()],
        )
        .await?;
        announced += 1;
    }
    Ok((linked, announced))
}

/// The STK payment a transaction is, when an STK Query settled that payment (a query does not
/// tell the receipt): paid by query without a receipt, with the transaction's amount and
/// account reference, from the payer's phone, and that phone's payment whose prompt the
/// transaction answered. A phone has one prompt at a time, so that is the phone's latest
/// payment made before the transaction; `TransTime` has whole seconds, so a payment made in
/// the transaction's second may be the next one (made once the prompt ended): then it is the
/// one before. `None` unless exactly one payment fits.
async fn settled_without_receipt(
    tx: &mut impl Tx,
    txn: &C2bTransaction,
    payer_hash: &str,
) -> Result<Option<PaymentId>, StoreError> {
    let day = 86_400_000;
    let candidates = tx
        .rows(
            "SELECT DISTINCT phone FROM payments WHERE status = 'paid' AND settled_by = 'query' AND receipt IS NULL
               AND amount = $1 AND account_reference = $2 AND created_at < $3 AND created_at >= $4",
            vec![
                i64::try_from(txn.amount).unwrap_or(i64::MAX).into(),
                txn.account.as_str().into(),
                (txn.trans_time + 1_000).into(),
                (txn.trans_time - day).into(),
            ],
        )
        .await?;
    let phones: Vec<String> = candidates
        .iter()
        .map(|r| r[0].text())
        .filter(|phone| crate::ids::sha256_hex(phone.as_bytes()) == payer_hash)
        .collect();
    let [phone] = phones.as_slice() else { return Ok(None) };
    let latest = tx
        .rows(
            "SELECT id, status = 'paid' AND settled_by = 'query' AND receipt IS NULL AND amount = $3 AND account_reference = $4,
                    created_at, status = 'pending'
             FROM payments WHERE phone = $1 AND created_at < $2 ORDER BY created_at DESC, id DESC LIMIT 2",
            vec![
                phone.as_str().into(),
                (txn.trans_time + 1_000).into(),
                i64::try_from(txn.amount).unwrap_or(i64::MAX).into(),
                txn.account.as_str().into(),
            ],
        )
        .await?;
    let fits = |r: &[Cell]| r[1].int() != 0;
    let in_its_second = |r: &[Cell]| r[2].int() >= txn.trans_time;
    let pending = |r: &[Cell]| r[3].int() != 0;
    // A pending payment may still be the one (settled by query later), or rule another out:
    // no decision until it is final (the sweep asks again).
    Ok(match latest.as_slice() {
        [last, ..] if pending(last) => None,
        [last, ..] if !in_its_second(last) => fits(last).then_some(last),
        // The latest was made in the transaction's second: before its prompt ended, or after.
        [last, before, ..] if !pending(before) => match (fits(last), fits(before)) {
            (true, false) => Some(last),
            (false, true) => Some(before),
            _ => None,
        },
        [last] => fits(last).then_some(last),
        _ => None,
    }
    .map(|r| PaymentId::from_db(r[0].text())))
}

/// Gives a query-settled payment the receipt its C2B echo told (announced as
/// `payment.receipt_added`, as when a late STK callback tells it), and links the echo to it.
async fn add_receipt(tx: &mut impl Tx, payment: &PaymentId, txn: &C2bTransaction, now: i64) -> Result<(), StoreError> {
    let Some(p) = payment_where(tx, "id", payment.as_str()).await? else { return Ok(()) };
    let receipt = daraja::ReceiptNumber::parse(&txn.trans_id)
        .map_err(|e| StoreError::corrupt(format_args!("TransID: {}", e.reason)))?;
    let note = format!("receipt {receipt} added from its C2B confirmation (an STK Query settled it without one)");
    let decision = crate::settlement::Decision {
        outcome: Outcome::ReceiptAdded,
        change: Some(crate::settlement::Change {
            status: Status::Paid,
            failure_reason: None,
            result_code: p.result_code.clone().unwrap_or_else(|| "0".into()),
            result_desc: p.result_desc.clone().unwrap_or_default(),
            receipt: Some(receipt),
            transaction_date: Some(txn.trans_time),
            checkout_request_id: None,
            settled_by: p.settled_by.unwrap_or(crate::payment::SettledBy::Query),
        }),
        note: note.clone(),
    };
    let plan = apply(tx, payment, Plan::of("c2b", decision, p.status), now).await?;
    if plan.outcome != Outcome::ReceiptAdded {
        // The receipt paid another payment meanwhile: leave the transaction for a person.
        return Ok(());
    }
    tx.execute(
        "UPDATE c2b_transactions SET status = 'same_as_stk', payment_id = $2, note = $3 WHERE trans_id = $1",
        vec![txn.trans_id.as_str().into(), payment.as_str().into(), note.into()],
    )
    .await
    .map(drop)
}

/// Queues the `c2b.unmatched` webhook for a transaction: signed by the key of the payment it
/// named (to that payment's URL), else by the installation's oldest active key (to the
/// default URL). With no key at all there is nobody to tell.
async fn announce(tx: &mut impl Tx, txn: &C2bTransaction, now: i64) -> Result<(), StoreError> {
    let owner = match &txn.payment_id {
        Some(id) => {
            tx.rows("SELECT api_key_id, webhook_url FROM payments WHERE id = $1", vec![id.as_str().into()]).await?
        }
        None => {
            tx.rows(
                "SELECT id, CAST(NULL AS TEXT) FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id LIMIT 1",
                vec![],
            )
            .await?
        }
    };
    let Some(owner) = owner.first() else { return Ok(()) };
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        event_type: &'a str,
        #[serde(serialize_with = "crate::time_fmt::millis")]
        created_at: i64,
        data: &'a C2bTransaction,
    }
    let id = format!("evt_{}", crate::ids::time_ordered_hex());
    let payload = serde_json::to_string(&Envelope { id: &id, event_type: "c2b.unmatched", created_at: now, data: txn })
        .map_err(super::unserialisable)?;
    tx.execute(
        "INSERT INTO webhook_events (id, payment_id, api_key_id, type, url, payload, status, created_at, next_attempt_at)
         VALUES ($1, $2, $3, 'c2b.unmatched', $4, $5, 'pending', $6, $6)",
        vec![
            id.into(),
            txn.payment_id.clone().unwrap_or_default().into(),
            owner[0].text().into(),
            owner[1].opt_text().into(),
            payload.into(),
            now.into(),
        ],
    )
    .await
    .map(drop)
}

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
pub(super) async fn assign(
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
        super::admin::audit_statement(actor, "assign_c2b", trans_id, &format!("to {}: {note}", payment.id), now);
    tx.execute(sql, args).await?;
    Ok(Resolved::Done(plan.outcome))
}

/// Marks an unmatched transaction refunded outside Lipa (the operator sent the money back by
/// other means), audited in the same commit.
pub(super) async fn refunded_outside(
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
    let (sql, args) = super::admin::audit_statement(actor, "c2b_refunded_outside", trans_id, note, now);
    tx.execute(sql, args).await?;
    Ok(Resolved::Done(Outcome::Applied))
}
