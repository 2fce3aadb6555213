//! Recovering Paybill payments whose confirmation never arrived: the shortcode's recent
//! transactions are pulled from Daraja (Pull Transactions keeps about 48 hours; the sweep looks
//! back [`C2bSettings::pull_lookback`](crate::config::C2bSettings), well inside that) and each one
//! not recorded yet is settled exactly as a late confirmation would be.

use std::time::Duration;

use daraja::c2b::{C2bPayment, PullQuery, PulledTransaction};

use crate::service::Gateway;
use crate::store::StoreError;
use crate::time_fmt::ms;

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Transactions Daraja listed.
    pub listed: usize,
    /// Of those, the ones recorded now (their confirmation had not arrived).
    pub recovered: usize,
    /// Entries Daraja listed that could not be read (logged).
    pub unreadable: usize,
}

/// A pulled transaction as a confirmation would have told it.
fn as_confirmation(t: &PulledTransaction, short_code: daraja::ShortCode) -> C2bPayment {
    C2bPayment {
        transaction_type: t.transaction_type.clone(),
        trans_id: t.trans_id.clone(),
        trans_time: t.time,
        amount: t.amount,
        business_short_code: short_code,
        bill_ref_number: t.bill_reference.clone(),
        invoice_number: String::new(),
        org_account_balance: String::new(),
        third_party_trans_id: String::new(),
        payer: t.payer.clone(),
        names: Default::default(),
    }
}

/// Pulls the last `lookback` of the shortcode's transactions and settles those not recorded.
/// A Daraja failure ends the sweep (logged); the next one looks back over the same window.
pub async fn sweep(gateway: &Gateway, lookback: Duration) -> Result<Sweep, StoreError> {
    let (client, merchant) = gateway.daraja();
    let short_code = merchant.business_short_code();
    let now = time::OffsetDateTime::now_utc();
    // A minute ahead: a transaction of this very second (or a clock a little behind
    // Safaricom's) is not left for the next sweep.
    let mut query = PullQuery { short_code, start: now - lookback, end: now + Duration::from_secs(60), offset: 0 };
    let mut report = Sweep::default();
    // A page at most per listed transaction: bounded even if Daraja kept answering.
    for _ in 0..1_000 {
        let started = std::time::Instant::now();
        let page = match client.pull_transactions(&query).await {
            Ok(page) => page,
            Err(e) => {
                gateway.metrics().daraja("pull_query", &crate::metrics::error_label(&e), started.elapsed());
                tracing::warn!(error = %e, "Pull Transactions failed; the next sweep tries again");
                break;
            }
        };
        gateway.metrics().daraja("pull_query", "ok", started.elapsed());
        if page.is_empty() {
            break;
        }
        report.listed += page.transactions.len();
        report.unreadable += page.unreadable.len();
        for why in &page.unreadable {
            tracing::warn!(entry = %why, "Pull Transactions listed an entry that cannot be read");
        }
        let ids: Vec<String> = page.transactions.iter().map(|t| t.trans_id.to_string()).collect();
        let known = gateway.store().c2b_known(&ids).await?;
        for t in page.transactions.iter().filter(|t| !known.contains(t.trans_id.as_str())) {
            let body = serde_json::json!({
                "transactionId": t.trans_id.as_str(),
                "trxDate": crate::time_fmt::rfc3339(crate::time_fmt::to_millis(t.time)),
                "billreference": t.bill_reference,
                "amount": t.amount,
                "msisdn": t.payer.display(),
            });
            let stored = gateway.ingest_confirmation(body.to_string(), as_confirmation(t, short_code), "pull").await?;
            if stored.outcome != crate::settlement::Outcome::Duplicate {
                report.recovered += 1;
                tracing::info!(trans_id = %t.trans_id, outcome = stored.outcome.as_str(), "recovered a Paybill payment by pulling");
            }
        }
        query.offset = query.offset.saturating_add(u32::try_from(page.len()).unwrap_or(u32::MAX));
    }
    Ok(report)
}

/// Sweeps every [`C2bSettings::pull_every`](crate::config::C2bSettings) until `shutdown`
/// (never, when that is zero).
pub async fn run(gateway: Gateway, shutdown: tokio::sync::watch::Receiver<bool>) {
    let c2b = &gateway.settings().c2b;
    let (every, lookback) = (c2b.pull_every, c2b.pull_lookback);
    if every.is_zero() {
        return;
    }
    let mut last: Option<i64> = None;
    crate::worker::repeat("pull", Duration::from_secs(30), shutdown, || {
        let gateway = gateway.clone();
        let due = last.is_none_or(|at| gateway.now() - at >= ms(every));
        if due {
            last = Some(gateway.now());
        }
        async move {
            if due {
                sweep(&gateway, lookback).await?;
            }
            // Never "did work": the loop waits between checks either way.
            Ok(false)
        }
    })
    .await;
}
