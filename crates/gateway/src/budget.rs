//! Budgets for what an outsider, with no key and no session, can make the gateway keep or say:
//! callbacks no payment took are stored up to a number per minute and counted beyond it, and
//! log lines whose volume an outsider controls are written up to a number per minute, with a
//! count of the rest.
//!
//! Both are per process and per minute of the clock (the test clock in tests), so a burst
//! costs at most one minute's budget per process.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Callbacks no payment took, stored per minute (each at most
/// [`crate::store::UNMATCHED_EXCERPT_BYTES`]); the rest are only counted.
pub const UNMATCHED_STORED_PER_MINUTE: u32 = 60;

/// Log lines of one kind per minute; the rest are counted and reported with the next line.
pub const LOG_LINES_PER_MINUTE: u32 = 10;

/// A number of things allowed per clock minute.
#[derive(Debug)]
pub struct PerMinute {
    limit: u32,
    /// The minute (ms / 60,000) and how many were taken in it.
    state: Mutex<(i64, u32)>,
    /// The minute whose budget is used up (`i64::MIN`, no minute, until one is): lets
    /// [`Self::has_room`], which runs for every callback, answer without the lock.
    full_in: AtomicI64,
}

impl PerMinute {
    /// `limit` per minute.
    pub fn new(limit: u32) -> Self {
        Self { limit, state: Mutex::new((i64::MIN, 0)), full_in: AtomicI64::new(i64::MIN) }
    }

    /// Whether one more is allowed at `now` (ms), without taking it.
    pub fn has_room(&self, now: i64) -> bool {
        self.full_in.load(Ordering::Relaxed) != now.div_euclid(60_000)
    }

    /// Takes one at `now` (ms) if allowed. When the minute turns over, returns how many were
    /// refused in the minute before as well: `(taken, refused before)`.
    pub fn take(&self, now: i64) -> (bool, u32) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let minute = now.div_euclid(60_000);
        let mut refused_before = 0;
        if state.0 != minute {
            refused_before = state.1.saturating_sub(self.limit);
            *state = (minute, 0);
        }
        state.1 = state.1.saturating_add(1);
        if state.1 >= self.limit {
            self.full_in.store(minute, Ordering::Relaxed);
        }
        (state.1 <= self.limit, refused_before)
    }
}

/// A log line whose volume an outsider controls: at most [`LOG_LINES_PER_MINUTE`] a minute.
#[derive(Debug)]
pub struct LogBudget(PerMinute);

impl Default for LogBudget {
    fn default() -> Self {
        Self(PerMinute::new(LOG_LINES_PER_MINUTE))
    }
}

impl LogBudget {
    /// Whether to write the line at `now` (ms), and how many lines of this kind were left out
    /// in the minute before (to say so in the line).
    pub fn allow(&self, now: i64) -> (bool, u32) {
        self.0.take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_holds_within_a_minute_and_starts_again_at_the_next() {
        let budget = PerMinute::new(2);
        assert!(budget.has_room(60_000));
        assert_eq!(budget.take(60_000), (true, 0));
        assert_eq!(budget.take(60_500), (true, 0));
        assert!(!budget.has_room(61_000));
        assert_eq!(budget.take(61_000), (false, 0));
        assert_eq!(budget.take(119_999), (false, 0));
        assert!(budget.has_room(120_000), "a new minute");
        assert_eq!(budget.take(120_000), (true, 2), "two were refused in the minute before");
        assert_eq!(budget.take(120_001), (true, 0));
    }
}
