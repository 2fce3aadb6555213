//! The sweep of unmatched payments by hand: linking STK payments heard of by C2B (before their
//! callback, or after a query settled them without a receipt), and announcing the rest.

use super::{C2B_COLUMNS, C2bTransaction, c2b_from, payment_where};
use crate::payment::{PaymentId, Status};
use crate::settlement::Outcome;
use crate::settlement::plan::Plan;
use crate::store::StoreError;
use crate::store::settle::apply;
use crate::store::sql::Cell;
use crate::store::tx::Tx;

/// Links unmatched transactions to the STK payments they turned out to be (a shortcode that
/// also hears of its STK payments by C2B may hear of one before its STK callback arrives),
/// then announces those still unmatched that were received before `announce_before`
/// (webhook `c2b.unmatched`, once each, at most 100 a call). Returns (linked, announced).
pub(in crate::store) async fn sweep_unmatched(
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
        .map_err(crate::store::unserialisable)?;
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
