//! What happens to a refund after it is taken: how its Reversal request went
//! ([`record_send`]), and Daraja's answers about it ([`settle_message`]): each stored with its
//! raw body in `callbacks`, decided by `settlement::refund`, written with its timeline event
//! and its webhook (`refund.succeeded`, `refund.failed`), in one transaction.

use daraja::result::{AsyncResult, QueueTimeout};

use super::{REFUND_COLUMNS, refund_from};
use crate::payment::{Payment, PaymentId};
use crate::refund::{Refund, RefundStatus};
use crate::settlement::Outcome;
use crate::settlement::refund::{Change, Current, Verdict, on_result, on_status, on_timeout};
use crate::store::StoreError;
use crate::store::settle::{event, load};
use crate::store::sql::Arg;
use crate::store::tx::Tx;

/// How sending a refund's Reversal went.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// Daraja queued it; ask about it at `check_at` if no result came by then.
    Accepted {
        /// `OriginatorConversationID`.
        originator_conversation_id: String,
        /// `ConversationID`.
        conversation_id: String,
        /// When to ask Transaction Status if the result has not come (ms).
        check_at: i64,
    },
    /// Nothing reached Daraja's Reversal (the connection or the access token failed, or the
    /// store could not be read): sent again from `retry_at`.
    NotSent {
        /// What went wrong.
        why: String,
        /// When to try again (ms).
        retry_at: i64,
    },
    /// Daraja refused it at once: nothing was queued; the refund fails.
    Refused {
        /// Daraja's error code, or `invalid` for a request Lipa could not build.
        code: String,
        /// What it said.
        message: String,
    },
    /// No answer: Daraja may have queued it. Never sent again; left for staff.
    Unknown {
        /// What went wrong.
        why: String,
    },
}

/// Which secret URL a message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// The Reversal's `ResultURL`.
    Result,
    /// The Reversal's `QueueTimeOutURL`.
    Timeout,
    /// A Transaction Status answer about the Reversal.
    Status,
    /// The Transaction Status request's `QueueTimeOutURL`.
    StatusTimeout,
}

impl MessageKind {
    /// The path segment, and the `source` its body is stored with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Result => "result",
            Self::Timeout => "timeout",
            Self::Status => "status",
            Self::StatusTimeout => "status-timeout",
        }
    }

    /// Reads a path segment.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "result" => Self::Result,
            "timeout" => Self::Timeout,
            "status" => Self::Status,
            "status-timeout" => Self::StatusTimeout,
            _ => return None,
        })
    }
}

/// A message about a refund, parsed as its URL says.
#[derive(Debug, Clone)]
pub struct RefundMessage {
    /// SHA-256 of the URL's secret.
    pub token_hash: String,
    /// Which URL.
    pub kind: MessageKind,
    /// The body as received.
    pub body: Vec<u8>,
    /// What it says (a result for `Result` and `Status`, a notice for the timeouts), or why
    /// it could not be read.
    pub parsed: Result<Parsed, String>,
    /// When Transaction Status should be asked, if the message calls for it (ms).
    pub ask_at: i64,
    /// The `OriginatorConversationID` the reversal's own result or timeout names: it makes a
    /// refund whose request's answer was lost followable again.
    pub reversal_conversation: Option<String>,
    /// How many Transaction Status questions Lipa asks about one refund before giving up.
    pub max_status_checks: u32,
    /// Now, ms.
    pub now: i64,
}

/// A message's content.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// A `Result` envelope.
    Result(AsyncResult),
    /// A queue timeout notice.
    Timeout(QueueTimeout),
}

/// What a message did.
#[derive(Debug, Clone)]
pub struct MessageStored {
    /// The refund as it now is.
    pub refund: Refund,
    /// How the message was classified.
    pub outcome: Outcome,
}

/// Records how sending went; returns the refund as it now is.
pub(in crate::store) async fn record_send(
    tx: &mut impl Tx,
    id: &crate::refund::RefundId,
    outcome: &SendOutcome,
    now: i64,
) -> Result<Refund, StoreError> {
    let refund =
        super::by_id(tx, id).await?.ok_or_else(|| StoreError::corrupt(format_args!("refund {id} vanished")))?;
    let payment = load(tx, &refund.payment_id).await?;
    let refund = locked(tx, id).await?;
    match outcome {
        SendOutcome::Accepted { originator_conversation_id, conversation_id, check_at } => {
            // From `unknown` too: a send the stale check gave up on may still be answered.
            let changed = tx
                .execute(
                    "UPDATE refunds SET send_state = 'accepted', originator_conversation_id = $2, conversation_id = $3,
                    next_check_at = CASE WHEN status = 'pending' THEN CAST($4 AS BIGINT) END,
                    updated_at = CASE WHEN updated_at > $5 THEN updated_at ELSE $5 END
                 WHERE id = $1 AND send_state IN ('sending', 'unknown')",
                    vec![
                        id.as_str().into(),
                        originator_conversation_id.as_str().into(),
                        conversation_id.as_str().into(),
                        (*check_at).into(),
                        now.into(),
                    ],
                )
                .await?;
            if changed > 0 {
                let detail =
                    serde_json::json!({"refund_id": id, "originator_conversation_id": originator_conversation_id});
                event(tx, &refund.payment_id, now, "refund_sent", &detail).await?;
            }
        }
        SendOutcome::NotSent { why, retry_at } => {
            let changed = tx
                .execute(
                    "UPDATE refunds SET send_state = 'new', next_check_at = $2, note = $3, updated_at = $4
                     WHERE id = $1 AND send_state = 'sending' AND status = 'pending'",
                    vec![
                        id.as_str().into(),
                        (*retry_at).into(),
                        format!("not sent ({why}); trying again shortly").into(),
                        now.into(),
                    ],
                )
                .await?;
            if changed > 0 {
                let detail = serde_json::json!({"refund_id": id, "error": why});
                event(tx, &refund.payment_id, now, "refund_not_sent", &detail).await?;
            }
        }
        SendOutcome::Refused { code, message } => {
            let changed = tx
                .execute(
                    "UPDATE refunds SET send_state = 'refused' WHERE id = $1 AND send_state = 'sending' AND status = 'pending'",
                    vec![id.as_str().into()],
                )
                .await?;
            if changed == 0 {
                return super::by_id(tx, id)
                    .await?
                    .ok_or_else(|| StoreError::corrupt(format_args!("refund {id} vanished")));
            }
            let verdict = Verdict {
                outcome: Outcome::Applied,
                change: Some(Change {
                    status: RefundStatus::Failed,
                    receipt: None,
                    code: code.clone(),
                    desc: message.clone(),
                }),
                review: false,
                ask_status: false,
                note: format!("Daraja refused the reversal request: {message}"),
            };
            apply(tx, &payment, &refund, &verdict, "send", now, 0).await?;
        }
        SendOutcome::Unknown { why } => {
            let changed = tx.execute(
                "UPDATE refunds SET send_state = 'unknown', needs_review = 1, next_check_at = NULL, note = $2, updated_at = $3
                 WHERE id = $1 AND send_state = 'sending'",
                vec![
                    id.as_str().into(),
                    format!(
                        "the reversal was sent and no answer came ({why}): Daraja may have carried it out, so it is not \
                         sent again; check the M-Pesa statement"
                    )
                    .into(),
                    now.into(),
                ],
            )
            .await?;
            if changed > 0 {
                flag_payment(tx, &refund.payment_id, now).await?;
                let detail = serde_json::json!({"refund_id": id, "error": why, "needs_review": true});
                event(tx, &refund.payment_id, now, "refund_send_unknown", &detail).await?;
            }
        }
    }
    super::by_id(tx, id).await?.ok_or_else(|| StoreError::corrupt(format_args!("refund {id} vanished")))
}

/// Staff decide a pending refund from the M-Pesa statement (its request's answer was lost, or
/// Daraja could not be asked): it succeeded (the money went back) or failed (nothing moved).
/// Returns the refund as it now is, or `None` when it is not pending (nothing written).
pub(in crate::store) async fn resolve(
    tx: &mut impl Tx,
    id: &crate::refund::RefundId,
    succeeded: bool,
    actor: &str,
    note: &str,
    now: i64,
) -> Result<Option<Refund>, StoreError> {
    let Some(refund) = super::by_id(tx, id).await? else { return Ok(None) };
    let payment = load(tx, &refund.payment_id).await?;
    let refund = locked(tx, id).await?;
    if refund.status != RefundStatus::Pending {
        return Ok(None);
    }
    let status = if succeeded { RefundStatus::Succeeded } else { RefundStatus::Failed };
    let verdict = Verdict {
        outcome: Outcome::Applied,
        change: Some(Change {
            status,
            receipt: None,
            code: "staff".into(),
            desc: format!("{actor} decided from the M-Pesa statement"),
        }),
        review: false,
        ask_status: false,
        note: format!("{actor}: {note}"),
    };
    apply(tx, &payment, &refund, &verdict, "staff", now, 0).await?;
    tx.execute("UPDATE refunds SET needs_review = 0 WHERE id = $1", vec![id.as_str().into()]).await?;
    super::by_id(tx, id).await
}

/// The refund row, locked for the rest of the transaction (after its payment's row).
async fn locked(tx: &mut impl Tx, id: &crate::refund::RefundId) -> Result<Refund, StoreError> {
    let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 /*for_update*/");
    let rows = tx.rows(&sql, vec![id.as_str().into()]).await?;
    refund_from(rows.first().ok_or_else(|| StoreError::corrupt(format_args!("refund {id} vanished")))?)
}

async fn flag_payment(tx: &mut impl Tx, id: &PaymentId, now: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE payments SET needs_review = TRUE, updated_at = $2 WHERE id = $1",
        vec![id.as_str().into(), now.into()],
    )
    .await
    .map(drop)
}

/// Stores a message about a refund and applies it; `None` when no refund has its secret.
pub(in crate::store) async fn settle_message(
    tx: &mut impl Tx,
    message: &RefundMessage,
) -> Result<Option<MessageStored>, StoreError> {
    let found = tx
        .rows(
            "SELECT id, payment_id FROM refunds WHERE result_token_hash = $1",
            vec![message.token_hash.as_str().into()],
        )
        .await?;
    let Some(row) = found.first() else { return Ok(None) };
    let (id, payment_id) = (crate::refund::RefundId::from_db(row[0].text()), PaymentId::from_db(row[1].text()));
    let payment = load(tx, &payment_id).await?;
    let refund = locked(tx, &id).await?;
    let others = tx
        .rows(
            "SELECT 1 FROM refunds WHERE payment_id = $1 AND id <> $2 AND status <> 'failed'",
            vec![payment_id.as_str().into(), id.as_str().into()],
        )
        .await?;
    let current = Current {
        status: refund.status,
        receipt: refund.receipt.as_deref(),
        other_open: !others.is_empty(),
        amount: refund.amount,
        original: payment.receipt.as_deref(),
        last_question: refund.status_checks >= message.max_status_checks,
    };
    // The reversal's own messages name it: a refund whose request's answer was lost is
    // followed again from here.
    if let (Some(conversation), MessageKind::Result | MessageKind::Timeout) =
        (&message.reversal_conversation, message.kind)
    {
        tx.execute(
            "UPDATE refunds SET originator_conversation_id = COALESCE(originator_conversation_id, $2),
                send_state = CASE WHEN send_state IN ('sending', 'unknown') THEN 'accepted' ELSE send_state END
             WHERE id = $1",
            vec![id.as_str().into(), conversation.as_str().into()],
        )
        .await?;
    }
    let verdict = match (&message.parsed, message.kind) {
        (Err(why), _) => Verdict {
            outcome: Outcome::Malformed,
            change: None,
            review: true,
            ask_status: refund.status == RefundStatus::Pending,
            note: format!("could not read Daraja's message: {why}"),
        },
        (Ok(Parsed::Result(r)), MessageKind::Result) => on_result(current, &daraja::reversal::outcome(r)),
        (Ok(Parsed::Result(r)), MessageKind::Status) => on_status(current, &daraja::status::report(r)),
        (Ok(_), _) => on_timeout(current),
    };
    let source = format!("refund_{}", message.kind.as_str());
    tx.execute(
        "INSERT INTO callbacks (received_at, payment_id, token_hash, source, outcome, note, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            message.now.into(),
            payment_id.as_str().into(),
            message.token_hash.as_str().into(),
            source.into(),
            verdict.outcome.as_str().into(),
            verdict.note.as_str().into(),
            Arg::Bytes(message.body.clone()),
        ],
    )
    .await?;
    if message.kind == MessageKind::Timeout && refund.status == RefundStatus::Pending {
        tx.execute("UPDATE refunds SET timed_out = 1 WHERE id = $1", vec![id.as_str().into()]).await?;
    }
    apply(tx, &payment, &refund, &verdict, message.kind.as_str(), message.now, message.ask_at).await?;
    let refund =
        super::by_id(tx, &id).await?.ok_or_else(|| StoreError::corrupt(format_args!("refund {id} vanished")))?;
    Ok(Some(MessageStored { refund, outcome: verdict.outcome }))
}

/// Writes a verdict: the refund's change, its flag, the payment's refunded amount, the
/// timeline event and the webhook.
async fn apply(
    tx: &mut impl Tx,
    payment: &Payment,
    refund: &Refund,
    verdict: &Verdict,
    heard_from: &str,
    now: i64,
    ask_at: i64,
) -> Result<(), StoreError> {
    let id = refund.id.as_str();
    if let Some(change) = &verdict.change {
        let final_state = change.status != RefundStatus::Pending;
        tx.execute(
            "UPDATE refunds SET status = $2, reversal_receipt = COALESCE($3, reversal_receipt), result_code = $4,
                result_desc = $5, note = $6, needs_review = CASE WHEN CAST($7 AS BIGINT) = 1 THEN 1 ELSE needs_review END,
                settled_at = CASE WHEN CAST($8 AS BIGINT) = 1 THEN CAST($9 AS BIGINT) ELSE settled_at END,
                next_check_at = CASE WHEN CAST($8 AS BIGINT) = 1 THEN NULL ELSE next_check_at END, lease_until = NULL, updated_at = $9
             WHERE id = $1",
            vec![
                id.into(),
                change.status.as_str().into(),
                change.receipt.clone().into(),
                change.code.as_str().into(),
                change.desc.as_str().into(),
                verdict.note.as_str().into(),
                i64::from(verdict.review).into(),
                i64::from(final_state).into(),
                now.into(),
            ],
        )
        .await?;
        if change.status == RefundStatus::Succeeded {
            tx.execute(
                "UPDATE payments SET refunded_amount = amount, updated_at = $2 WHERE id = $1",
                vec![payment.id.as_str().into(), now.into()],
            )
            .await?;
        }
    } else {
        tx.execute(
            "UPDATE refunds SET note = $2, needs_review = CASE WHEN CAST($3 AS BIGINT) = 1 THEN 1 ELSE needs_review END,
                next_check_at = CASE WHEN CAST($4 AS BIGINT) = 1 AND status = 'pending' THEN CAST($5 AS BIGINT) ELSE next_check_at END,
                updated_at = $6
             WHERE id = $1",
            vec![
                id.into(),
                verdict.note.as_str().into(),
                i64::from(verdict.review).into(),
                i64::from(verdict.ask_status).into(),
                ask_at.into(),
                now.into(),
            ],
        )
        .await?;
    }
    if verdict.review {
        flag_payment(tx, &payment.id, now).await?;
    }
    let after = verdict.change.as_ref().map_or(refund.status, |c| c.status);
    let kind = match (&verdict.change, verdict.outcome) {
        (Some(_), _) => format!("refund_{}", after.as_str()),
        (None, outcome) => format!("refund_{heard_from}_{}", outcome.as_str()).replace('-', "_"),
    };
    let detail = serde_json::json!({
        "refund_id": refund.id,
        "status": after.as_str(),
        "code": verdict.change.as_ref().map(|c| c.code.as_str()),
        "note": verdict.note,
        "needs_review": verdict.review,
    });
    event(tx, &payment.id, now, &kind, &detail).await?;
    let announce = match (&verdict.change, after) {
        (Some(_), RefundStatus::Succeeded) => Some("refund.succeeded"),
        (Some(_), RefundStatus::Failed) => Some("refund.failed"),
        _ => None,
    };
    if let Some(event_type) = announce {
        let payment = load(tx, &payment.id).await?;
        let refund = super::by_id(tx, &refund.id).await?.ok_or_else(|| StoreError::corrupt("a refund vanished"))?;
        let w = crate::settlement::plan::refund_outbox(&payment, &refund, event_type, now)
            .map_err(crate::store::unserialisable)?;
        if let (Some(recipient), RefundStatus::Succeeded) = (&payment.customer_email, after) {
            tx.execute(
                "INSERT INTO emails (id, payment_id, refund_id, recipient, status, created_at, next_attempt_at)
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
                vec![
                    format!("eml_{}", crate::ids::time_ordered_hex()).into(),
                    payment.id.as_str().into(),
                    refund.id.as_str().into(),
                    recipient.as_str().into(),
                    now.into(),
                ],
            )
            .await?;
        }
        crate::store::settle::webhook(tx, w).await?;
    }
    Ok(())
}
