//! Reconciliation: STK Query for payments whose push was accepted but whose callback never
//! came, and expiry of payments nothing conclusive arrived for.
//!
//! Jobs are rows: a pending payment with `next_check_at` due is leased to one worker, queried
//! under the process's query rate limit, then settled (`settled_by = query`) or rescheduled.
//! "Being processed" means wait; spike arrest and other errors back off by the attempt count.
//! A query never overrides a callback (the settlement rules see to that).

use std::time::Duration;

use daraja::{ApiErrorKind, QueryOutcome};

use crate::service::Gateway;
use crate::store::StoreError;
use crate::time_fmt::ms;

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Payments queried.
    pub queried: usize,
    /// Payments a query settled.
    pub settled: usize,
    /// Payments expired.
    pub expired: usize,
    /// Unmatched Paybill payments found to be STK payments heard of by C2B first.
    pub linked: u64,
    /// Unmatched Paybill payments announced (`c2b.unmatched`).
    pub announced: u64,
}

impl Step {
    /// Whether the step found any work.
    pub fn did_work(&self) -> bool {
        self.queried + self.expired > 0
    }
}

/// How long a payment by hand stays unmatched before it is announced (`c2b.unmatched`).
pub const UNMATCHED_GRACE_MS: i64 = 60_000;

/// Queries due payments (at most `batch`) and expires overdue ones.
#[tracing::instrument(skip_all)]
pub async fn step(gateway: &Gateway, batch: u32) -> Result<Step, StoreError> {
    let settings = &gateway.settings().reconciliation;
    let store = gateway.store();
    let now = gateway.now();
    let mut report = Step::default();

    // Queries run one after another, each bounded by the request timeout: the lease outlives
    // the whole batch so another worker never queries the same payment meanwhile.
    let lease = ms(gateway.settings().mpesa.request_timeout).saturating_mul(i64::from(batch)) + 60_000;
    let due = store.claim_due_checks(now, now.saturating_add(lease), batch).await?;
    let (client, merchant) = gateway.daraja();
    for check in due {
        gateway.query_limit().acquire().await;
        report.queried += 1;
        let Ok(checkout_id) = daraja::CheckoutRequestId::parse(&check.checkout_request_id) else {
            store.reschedule_check(&check.id, "unreadable CheckoutRequestID".into(), i64::MAX, false, now).await?;
            continue;
        };
        let backoff = ms(settings.query_interval) * 2i64.saturating_pow(check.attempts.min(6));
        let now = gateway.now();
        let started = std::time::Instant::now();
        let answer = client.stk_query(merchant, &checkout_id).await;
        let label = match &answer {
            Ok(QueryOutcome::Completed(_)) => "ok".to_owned(),
            Ok(QueryOutcome::Pending) => "pending".to_owned(),
            Err(e) => crate::metrics::error_label(e),
        };
        gateway.metrics().daraja("stk_query", &label, started.elapsed());
        match answer {
            Ok(QueryOutcome::Completed(result)) => {
                let decision = store.settle_from_query(&check.id, result, now).await?;
                if decision.change.is_some() {
                    report.settled += 1;
                    gateway.changed(&check.id);
                } else if decision.outcome == crate::settlement::Outcome::Mismatch {
                    // An answer about another transaction said nothing about this one: ask
                    // again, as after a failed query (which also keeps it from expiring
                    // meanwhile).
                    let note = "the answer named another transaction; asking again".to_owned();
                    store.reschedule_check(&check.id, note, now + backoff, true, now).await?;
                }
            }
            Ok(QueryOutcome::Pending) => {
                let next = now + ms(settings.query_interval);
                store.reschedule_check(&check.id, "being processed".into(), next, false, now).await?;
            }
            Err(e) => {
                let note = match e.api_kind() {
                    Some(ApiErrorKind::SpikeArrest | ApiErrorKind::QuotaExceeded) => {
                        "rate limited by Daraja".to_owned()
                    }
                    _ => e.to_string(),
                };
                tracing::warn!(payment_id = %check.id, error = %e, "STK Query failed");
                store.reschedule_check(&check.id, note, now + backoff, true, now).await?;
            }
        }
    }

    // A payment Daraja cannot be asked about (its last query failed) is not expired: the
    // customer may have paid. Queries go on with backoff; after a day it expires regardless.
    let now = gateway.now();
    let expired = store.expire_overdue(now - ms(settings.expire_after), now - 86_400_000, now).await?;
    report.expired = expired.len();
    for id in &expired {
        tracing::info!(payment_id = %id, "expired: no conclusive answer in time");
        gateway.changed(id);
    }
    // An STK payment's C2B echo may come before its callback: give the callback a minute
    // before calling the money unmatched.
    (report.linked, report.announced) = store.sweep_unmatched(now - UNMATCHED_GRACE_MS, now).await?;
    Ok(report)
}

/// Runs [`step`] until `shutdown` completes, pausing when idle.
pub async fn run(gateway: Gateway, shutdown: tokio::sync::watch::Receiver<bool>) {
    crate::worker::repeat("reconciliation", Duration::from_secs(1), shutdown, || async {
        step(&gateway, 50).await.map(|report| report.did_work())
    })
    .await;
}

/// Queries Daraja about one payment now (an admin's "query now"), applies a final answer by
/// the usual rules, and says what happened in a sentence.
pub async fn query_now(gateway: &Gateway, payment: &crate::payment::Payment) -> Result<String, StoreError> {
    let Some(checkout) = payment.checkout_request_id.as_deref() else {
        return Ok("Daraja never accepted this push, so there is nothing to query.".into());
    };
    let Ok(checkout_id) = daraja::CheckoutRequestId::parse(checkout) else {
        return Ok(format!("{checkout:?} is not a CheckoutRequestID Daraja would accept."));
    };
    let (client, merchant) = gateway.daraja();
    gateway.query_limit().acquire().await;
    let started = std::time::Instant::now();
    let answer = client.stk_query(merchant, &checkout_id).await;
    let label = answer.as_ref().map_or_else(crate::metrics::error_label, |_| "ok".to_owned());
    gateway.metrics().daraja("stk_query", &label, started.elapsed());
    Ok(match answer {
        Ok(QueryOutcome::Completed(result)) => {
            let said = format!("Daraja answered {} ({})", result.result_code.as_str(), result.result_desc);
            let decision = gateway.store().settle_from_query(&payment.id, result, gateway.now()).await?;
            if decision.change.is_some() {
                gateway.changed(&payment.id);
            }
            format!("{said}: {}.", decision.note)
        }
        Ok(QueryOutcome::Pending) => "Daraja says the payment is still being processed.".into(),
        Err(e) => format!("The query failed: {e}."),
    })
}
