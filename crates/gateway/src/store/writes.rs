//! The writes of creating a payment both databases run the same way, over one [`Tx`]: the
//! payment (idempotency, the phone's live prompt and hourly limit), the push's answer, and a
//! checkout session. Settlement is in `settle.rs`.

use super::reads::{payment_from, session_from};
use super::settle::{event, load, record};
use super::tx::Tx;
use super::{Inserted, NewCheckoutSession, NewPayment, PushResult, SessionInserted, StoreError};
use crate::payment::{FailureReason, Payment, PaymentId};
use crate::settlement::plan::Plan;

/// The payment an API key created with an idempotency key, and its request hash.
async fn by_idempotency_key(
    tx: &mut impl Tx,
    api_key_id: &str,
    key: &str,
) -> Result<Option<(Payment, String)>, StoreError> {
    let sql = concat!(
        "SELECT ",
        payment_columns!(),
        ", request_hash FROM payments WHERE api_key_id = $1 AND idempotency_key = $2"
    );
    let rows = tx.rows(sql, vec![api_key_id.into(), key.into()]).await?;
    let Some((hash, payment)) = rows.first().and_then(|r| r.split_last()) else { return Ok(None) };
    Ok(Some((payment_from(payment)?, hash.text())))
}

/// Inserts a pending payment, or finds the one made earlier with the same idempotency key.
/// The phone's live-prompt check and hourly count run in the same transaction as the insert,
/// under the phone's lock, so two requests for one phone cannot both pass.
pub(super) async fn insert_payment(tx: &mut impl Tx, new: &NewPayment) -> Result<Inserted, StoreError> {
    tx.lock(&new.phone.to_string()).await?;
    if let Some(key) = &new.idempotency_key
        && let Some((payment, hash)) = by_idempotency_key(tx, &new.api_key_id, key).await?
    {
        return Ok(Inserted::Existing(payment, hash));
    }
    let counts = tx
        .rows(
            "SELECT COALESCE(SUM(CASE WHEN status = 'pending' AND push_state IN ('sending', 'accepted', 'unknown')
                                      AND created_at >= $2 THEN 1 ELSE 0 END), 0),
                    COUNT(*)
             FROM payments WHERE phone = $1 AND created_at >= $3",
            vec![new.phone.to_string().into(), new.live_prompt_since.into(), new.per_phone_since.into()],
        )
        .await?;
    let (live, count) = counts.first().map_or((0, 0), |r| (r[0].int(), r[1].int()));
    if live > 0 {
        return Ok(Inserted::PhoneBusy);
    }
    if count >= i64::from(new.per_phone_limit) {
        return Ok(Inserted::TooManyForPhone(u32::try_from(count).unwrap_or(u32::MAX)));
    }
    let paybill_account = free_paybill_account(tx).await?;
    let inserted = tx
        .execute(
            "INSERT INTO payments (id, api_key_id, idempotency_key, request_hash, amount, phone, account_reference,
                description, metadata, webhook_url, customer_email, status, callback_token_hash, push_state,
                created_at, updated_at, paybill_account)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, 'sending', $13, $13, $14)
             ON CONFLICT (api_key_id, idempotency_key) DO NOTHING",
            vec![
                new.id.as_str().into(),
                new.api_key_id.as_str().into(),
                new.idempotency_key.clone().into(),
                new.request_hash.as_str().into(),
                i64::from(new.amount.shillings()).into(),
                new.phone.to_string().into(),
                new.account_reference.as_str().into(),
                new.description.as_str().into(),
                new.metadata.to_string().into(),
                new.webhook_url.clone().into(),
                new.customer_email.clone().into(),
                new.callback_token_hash.as_str().into(),
                new.now.into(),
                paybill_account.into(),
            ],
        )
        .await?;
    if inserted == 0 {
        // Another process inserted the same idempotency key (for another phone) first.
        let key = new.idempotency_key.as_deref().unwrap_or_default();
        return match by_idempotency_key(tx, &new.api_key_id, key).await? {
            Some((payment, hash)) => Ok(Inserted::Existing(payment, hash)),
            None => Err(StoreError::Conflict("the payment's idempotency key is taken, but its payment is gone".into())),
        };
    }
    let created = serde_json::json!({"amount": new.amount, "phone": new.phone});
    event(tx, &new.id, new.now, "created", &created).await?;
    if let Some(a) = &new.checkout {
        // Only the attempt after the session's last one is taken.
        tx.execute(
            "UPDATE checkout_sessions SET payment_id = $2, attempts = CAST($3 AS BIGINT)
             WHERE id = $1 AND attempts = CAST($3 AS BIGINT) - 1",
            vec![a.session_id.as_str().into(), new.id.as_str().into(), i64::from(a.attempt).into()],
        )
        .await?;
    }
    Ok(Inserted::Created(load(tx, &new.id).await?))
}

/// An account number no payment has yet. Collisions are rare (one in 3.4e10 per payment
/// stored), so a few tries always find one; two processes picking the same one at the same
/// moment are stopped by the unique index (that insert fails and is retried by its caller).
async fn free_paybill_account(tx: &mut impl Tx) -> Result<String, StoreError> {
    for _ in 0..8 {
        let candidate = crate::payment::new_paybill_account();
        let taken =
            tx.rows("SELECT 1 FROM payments WHERE paybill_account = $1", vec![candidate.as_str().into()]).await?;
        if taken.is_empty() {
            return Ok(candidate);
        }
    }
    Err(StoreError::Conflict("no free Paybill account number was found in 8 tries".into()))
}

/// Records how the push went; returns the payment as it now is. `updated_at` never goes
/// back: a callback may have come first.
pub(super) async fn record_push(
    tx: &mut impl Tx,
    id: &PaymentId,
    result: &PushResult,
    now: i64,
) -> Result<Payment, StoreError> {
    match result {
        PushResult::Accepted { merchant_request_id, checkout_request_id, first_check_at } => {
            // A callback may have arrived first and set the CheckoutRequestID already.
            tx.execute(
                "UPDATE payments SET push_state = 'accepted', merchant_request_id = $2,
                    checkout_request_id = COALESCE(checkout_request_id, $3),
                    next_check_at = CASE WHEN status = 'pending' THEN CAST($4 AS BIGINT) END,
                    updated_at = CASE WHEN updated_at > $5 THEN updated_at ELSE $5 END
                 WHERE id = $1",
                vec![
                    id.as_str().into(),
                    merchant_request_id.as_str().into(),
                    checkout_request_id.as_str().into(),
                    (*first_check_at).into(),
                    now.into(),
                ],
            )
            .await?;
            let detail = serde_json::json!({"merchant_request_id": merchant_request_id, "checkout_request_id": checkout_request_id});
            event(tx, id, now, "push_accepted", &detail).await?;
        }
        PushResult::Refused { code, message } => {
            // Fails the payment only if nothing settled it meanwhile (a callback can race the
            // push's answer); only that move is announced.
            let failed = tx
                .execute(
                    "UPDATE payments SET push_state = 'refused', status = 'failed', failure_reason = $2,
                        result_code = $3, result_desc = $4, settled_by = 'push', settled_at = $5, updated_at = $5
                     WHERE id = $1 AND status = 'pending'",
                    vec![
                        id.as_str().into(),
                        FailureReason::RejectedByDaraja.as_str().into(),
                        code.as_str().into(),
                        message.as_str().into(),
                        now.into(),
                    ],
                )
                .await?;
            if failed == 0 {
                tx.execute(
                    "UPDATE payments SET push_state = 'refused',
                        updated_at = CASE WHEN updated_at > $2 THEN updated_at ELSE $2 END
                     WHERE id = $1",
                    vec![id.as_str().into(), now.into()],
                )
                .await?;
            }
            let payment = load(tx, id).await?;
            record(tx, &payment, &Plan::push_refused(code, message, failed > 0), now).await?;
            return Ok(payment);
        }
        PushResult::Unknown { error, first_check_at } => {
            tx.execute(
                "UPDATE payments SET push_state = 'unknown', next_check_at = $2,
                    updated_at = CASE WHEN updated_at > $3 THEN updated_at ELSE $3 END
                 WHERE id = $1",
                vec![id.as_str().into(), (*first_check_at).into(), now.into()],
            )
            .await?;
            event(tx, id, now, "push_unknown", &serde_json::json!({"error": error})).await?;
        }
    }
    load(tx, id).await
}

/// Inserts a checkout session, or finds the one made earlier with the same idempotency key.
pub(super) async fn insert_checkout_session(
    tx: &mut impl Tx,
    new: NewCheckoutSession,
) -> Result<SessionInserted, StoreError> {
    let find = concat!(
        "SELECT ",
        session_columns!(),
        ", request_hash FROM checkout_sessions WHERE api_key_id = $1 AND idempotency_key = $2"
    );
    if let Some(key) = &new.idempotency_key {
        let rows = tx.rows(find, vec![new.session.api_key_id.as_str().into(), key.as_str().into()]).await?;
        if let Some((hash, session)) = rows.first().and_then(|r| r.split_last()) {
            return Ok(SessionInserted::Existing(session_from(session)?, hash.text()));
        }
    }
    let s = &new.session;
    let inserted = tx
        .execute(
            "INSERT INTO checkout_sessions (id, api_key_id, idempotency_key, request_hash, amount, account_reference,
                description, success_url, cancel_url, phone, customer_email, webhook_url, metadata, created_at,
                expires_at)
             VALUES ($1, $2, $3, $4, CAST($5 AS BIGINT), $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (api_key_id, idempotency_key) DO NOTHING",
            vec![
                s.id.as_str().into(),
                s.api_key_id.as_str().into(),
                new.idempotency_key.clone().into(),
                new.request_hash.as_str().into(),
                i64::from(s.amount).into(),
                s.account_reference.as_str().into(),
                s.description.as_str().into(),
                s.success_url.as_str().into(),
                s.cancel_url.as_str().into(),
                s.phone.clone().into(),
                s.customer_email.clone().into(),
                s.webhook_url.clone().into(),
                s.metadata.to_string().into(),
                s.created_at.into(),
                s.expires_at.into(),
            ],
        )
        .await?;
    // Nothing inserted: a concurrent request with the same key won; answer with its session.
    match (inserted, &new.idempotency_key) {
        (0, Some(key)) => {
            let rows = tx.rows(find, vec![s.api_key_id.as_str().into(), key.as_str().into()]).await?;
            let (hash, session) = rows.first().and_then(|r| r.split_last()).ok_or_else(|| {
                StoreError::Conflict("the checkout session's idempotency key is taken, but its session is gone".into())
            })?;
            Ok(SessionInserted::Existing(session_from(session)?, hash.text()))
        }
        _ => Ok(SessionInserted::Created(new.session)),
    }
}
