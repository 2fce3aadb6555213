//! What every background worker shares: the loop around its step (run again at once while
//! it finds work, pause when it does not, stop on shutdown) and the backoff of retried jobs.
//! Each job kind keeps its step in its own file (`reconciliation.rs`, `mail.rs`,
//! `webhooks.rs`, `admin/rollups.rs`).

use std::future::Future;
use std::time::Duration;

use crate::store::StoreError;

/// Runs `step` until `shutdown` is set (or its sender is gone): again at once while it did
/// work, after `pause` when it did none or failed (the failure logged as `name`'s).
pub async fn repeat<F, Fut>(
    name: &'static str,
    pause: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, StoreError>>,
{
    loop {
        if *shutdown.borrow() {
            return;
        }
        let worked = step().await.unwrap_or_else(|e| {
            tracing::error!(error = %e, worker = name, "worker step failed");
            false
        });
        if !worked {
            tokio::select! {
                changed = shutdown.changed() => {
                    // Nobody can stop this worker any more: stop now.
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Exponential backoff from 10 s, doubling per attempt, capped at 6 h, with ±20 % jitter.
pub fn backoff(attempts: u32) -> Duration {
    let base = 10u64.saturating_mul(1u64 << attempts.min(16)).min(6 * 3600);
    let jitter = u64::from_str_radix(&crate::ids::random_hex(2), 16).unwrap_or(0) % 41; // 0..=40
    Duration::from_millis(base * 1000 * (80 + jitter) / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff(0);
        assert!(first >= Duration::from_secs(8) && first <= Duration::from_secs(12), "{first:?}");
        let later = backoff(3);
        assert!(later >= Duration::from_secs(64) && later <= Duration::from_secs(96), "{later:?}");
        for attempts in [12, 16, 40, u32::MAX] {
            assert!(backoff(attempts) <= Duration::from_secs(6 * 3600 * 12 / 10), "{attempts}");
        }
    }

    #[tokio::test]
    async fn a_worker_repeats_while_it_finds_work_and_stops_on_shutdown() {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let steps = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = steps.clone();
        let stop = std::sync::Arc::new(stop);
        let stopper = stop.clone();
        repeat("test", Duration::from_secs(3600), shutdown, move || {
            let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            // Work for five steps (no pause between them), then stop.
            if n == 5 {
                let _ = stopper.send(true);
            }
            async move { Ok(n < 5) }
        })
        .await;
        assert_eq!(steps.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_worker_stops_when_nobody_can_stop_it() {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        drop(stop);
        let done = tokio::time::timeout(
            Duration::from_secs(5),
            repeat("test", Duration::from_secs(3600), shutdown, || async { Ok(false) }),
        )
        .await;
        assert!(done.is_ok(), "the worker kept waiting");
    }
}
