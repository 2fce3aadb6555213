//! Receipts checked with Transaction Status: the check is recorded before Daraja is asked,
//! and its answer (at a secret URL) is stored with its raw body, and, for a payment that lacks
//! its receipt, may add it (`settlement::receipt`), all in one transaction over [`Tx`].

use serde::Serialize;

use super::settle::{apply, load};
use super::sql::{Arg, Cell};
use super::tx::Tx;
use super::{Store, StoreError};
use crate::payment::PaymentId;
use crate::settlement::Outcome;
use crate::settlement::plan::Plan;

/// A receipt check, as the admin and `lipa receipts check` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptCheck {
    /// `chk_…`.
    pub id: String,
    /// The receipt asked about.
    pub receipt: String,
    /// The payment it was asked for, if any.
    pub payment_id: Option<String>,
    /// Who asked (`admin:<user>`, `cli`).
    pub requested_by: String,
    /// `asked`, `found`, `not_found` or `failed`.
    pub status: String,
    /// What Daraja said.
    pub detail: serde_json::Value,
    /// What Lipa made of it.
    pub note: String,
    /// Asked (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub created_at: i64,
    /// Answered (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::opt_millis")]
    pub answered_at: Option<i64>,
}

const COLUMNS: &str = "id, receipt, payment_id, requested_by, status, detail, note, created_at, answered_at";

fn check_from(r: &[Cell]) -> Result<ReceiptCheck, StoreError> {
    let [id, receipt, payment_id, requested_by, status, detail, note, created_at, answered_at] = r else {
        return Err(StoreError::corrupt(format_args!("a receipt check row has {} columns", r.len())));
    };
    Ok(ReceiptCheck {
        id: id.text(),
        receipt: receipt.text(),
        payment_id: payment_id.opt_text(),
        requested_by: requested_by.text(),
        status: status.text(),
        detail: serde_json::from_str(&detail.text()).unwrap_or_default(),
        note: note.text(),
        created_at: created_at.int(),
        answered_at: answered_at.opt_int(),
    })
}

/// What an answer about a receipt check said.
#[derive(Debug, Clone)]
pub struct CheckAnswer {
    /// SHA-256 of the URL's secret.
    pub token_hash: String,
    /// `result` or `timeout`.
    pub source: &'static str,
    /// The body as received.
    pub body: Vec<u8>,
    /// The check's new status (`found`, `not_found`, `failed`; `asked` for a timeout).
    pub status: &'static str,
    /// Daraja's details, as JSON.
    pub detail: serde_json::Value,
    /// Daraja's details, typed, when found.
    pub found: Option<daraja::status::Details>,
    /// What Lipa made of it.
    pub note: String,
    /// Now, ms.
    pub now: i64,
}

/// Stores an answer and applies it; `None` when no check has its secret.
pub(super) async fn settle_answer(tx: &mut impl Tx, a: &CheckAnswer) -> Result<Option<ReceiptCheck>, StoreError> {
    let rows = tx
        .rows("SELECT id, payment_id FROM receipt_checks WHERE token_hash = $1", vec![a.token_hash.as_str().into()])
        .await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let (id, payment_id) = (row[0].text(), row[1].opt_text().map(PaymentId::from_db));
    // Only the first answer to a check still asked counts; later ones are recorded.
    let answered = tx
        .execute(
            "UPDATE receipt_checks SET status = $2, detail = $3, note = $4,
                answered_at = CASE WHEN $2 = 'asked' THEN answered_at ELSE CAST($5 AS BIGINT) END
             WHERE id = $1 AND status = 'asked'",
            vec![
                id.as_str().into(),
                a.status.into(),
                a.detail.to_string().into(),
                a.note.as_str().into(),
                a.now.into(),
            ],
        )
        .await?;
    let mut note = a.note.clone();
    let mut outcome = if answered == 0 { Outcome::Duplicate } else { Outcome::Applied };
    if let (Some(pid), Some(details), 1) = (&payment_id, &a.found, answered) {
        let payment = load(tx, pid).await?;
        let receipt = details.receipt.as_deref().unwrap_or_default();
        let apart = tx
            .rows(
                "SELECT trans_id FROM c2b_transactions WHERE trans_id = $1 AND (payment_id IS NULL OR payment_id <> $2)",
                vec![receipt.into(), pid.as_str().into()],
            )
            .await?;
        let decided = if apart.is_empty() {
            crate::settlement::receipt::receipt_for(&payment, details)
        } else {
            Err("it is a payment by hand recorded apart: give it to this payment on the Paybill page instead".into())
        };
        match decided {
            Ok(decision) => {
                let plan = apply(tx, pid, Plan::of("status", decision, payment.status), a.now).await?;
                outcome = plan.outcome;
                note = plan.note.clone();
            }
            Err(why) => note = format!("{note}; not added to the payment: {why}"),
        }
        tx.execute("UPDATE receipt_checks SET note = $2 WHERE id = $1", vec![id.as_str().into(), note.as_str().into()])
            .await?;
    }
    tx.execute(
        "INSERT INTO callbacks (received_at, payment_id, token_hash, source, outcome, note, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            a.now.into(),
            Arg::from(payment_id.as_ref().map(PaymentId::as_str)),
            a.token_hash.as_str().into(),
            format!("receipt_check_{}", a.source).into(),
            outcome.as_str().into(),
            note.as_str().into(),
            Arg::Bytes(a.body.clone()),
        ],
    )
    .await?;
    let sql = format!("SELECT {COLUMNS} FROM receipt_checks WHERE id = $1");
    let rows = tx.rows(&sql, vec![id.as_str().into()]).await?;
    rows.first().map(|r| check_from(r)).transpose()
}

impl Store {
    /// Records a check before Daraja is asked.
    pub async fn insert_receipt_check(
        &self,
        id: &str,
        receipt: &str,
        payment_id: Option<&PaymentId>,
        requested_by: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute_all(vec![(
            "INSERT INTO receipt_checks (id, receipt, payment_id, requested_by, token_hash, status, created_at)
             VALUES ($1, $2, $3, $4, $5, 'asked', $6)",
            vec![
                id.into(),
                receipt.into(),
                Arg::from(payment_id.map(PaymentId::as_str)),
                requested_by.into(),
                token_hash.into(),
                now.into(),
            ],
        )])
        .await
        .map(drop)
    }

    /// Records that Daraja could not be asked.
    pub async fn receipt_check_failed(&self, id: &str, note: &str, now: i64) -> Result<(), StoreError> {
        self.execute_all(vec![(
            "UPDATE receipt_checks SET status = 'failed', note = $2, answered_at = $3 WHERE id = $1 AND status = 'asked'",
            vec![id.into(), note.into(), now.into()],
        )])
        .await
        .map(drop)
    }

    /// A check by id.
    pub async fn receipt_check(&self, id: &str) -> Result<Option<ReceiptCheck>, StoreError> {
        let rows = self.query(format!("SELECT {COLUMNS} FROM receipt_checks WHERE id = $1"), vec![id.into()]).await?;
        rows.first().map(|r| check_from(r)).transpose()
    }

    /// A payment's checks, newest first.
    pub async fn receipt_checks_of(&self, payment_id: &PaymentId) -> Result<Vec<ReceiptCheck>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM receipt_checks WHERE payment_id = $1 ORDER BY created_at DESC, id DESC");
        let rows = self.query(sql, vec![payment_id.as_str().into()]).await?;
        rows.iter().map(|r| check_from(r)).collect()
    }

    /// Stores an answer about a check and applies it, in one commit.
    pub async fn settle_check_answer(&self, answer: CheckAnswer) -> Result<Option<ReceiptCheck>, StoreError> {
        match self {
            Store::Sqlite(s) => s.settle_check_answer(answer).await,
            Store::Postgres(s) => s.settle_check_answer(answer).await,
        }
    }
}
