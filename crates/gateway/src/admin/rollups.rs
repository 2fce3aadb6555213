//! Keeps the overview's hourly rollups (`payment_hours`, `settle_hours`), so the overview reads
//! a few hundred rows whatever the number of payments. The worker recomputes every hour of the
//! last 8 days at start, then every 10 s the current and the previous hour (payments settle
//! within minutes), and one older hour in turn (a late settlement shows within hours). The
//! overview's figures are therefore at most about 10 s old.

use std::time::Duration;

use crate::service::Gateway;
use crate::store::StoreError;

const HOUR: i64 = 3_600_000;
const KEPT_HOURS: i64 = 8 * 24;

/// Recomputes every hour of the last 8 days, the current one included.
pub async fn fill(gateway: &Gateway) -> Result<(), StoreError> {
    let current = gateway.now().div_euclid(HOUR);
    for hour in (current - KEPT_HOURS)..=current {
        gateway.store().recompute_hour(hour).await?;
    }
    Ok(())
}

/// Runs until `shutdown` is set.
pub async fn run(gateway: Gateway, shutdown: tokio::sync::watch::Receiver<bool>) {
    if let Err(e) = fill(&gateway).await {
        tracing::warn!(error = %e, "could not compute the overview's rollups");
    }
    // The current hour, the one before, and one older hour in turn, every 10 s. Which hours
    // is decided before each step's future, so the step needs no shared state.
    let mut older = gateway.now().div_euclid(HOUR) - KEPT_HOURS;
    crate::worker::repeat("rollups", Duration::from_secs(10), shutdown, || {
        let current = gateway.now().div_euclid(HOUR);
        if older >= current - 1 || older < current - KEPT_HOURS {
            older = current - KEPT_HOURS;
        }
        let hours = [current, current - 1, older];
        older += 1;
        let store = gateway.store();
        async move {
            for hour in hours {
                store.recompute_hour(hour).await?;
            }
            Ok(false)
        }
    })
    .await;
}
