//! A token-bucket rate limiter for one process: `n` per second with a burst of `n`.

use std::sync::Mutex;
use std::time::Instant;

/// Admits at most `rate` events per second on average.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `rate` per second; 0 means unlimited.
    pub fn per_second(rate: u32) -> Self {
        let rate = f64::from(rate);
        Self { rate, state: Mutex::new((rate, Instant::now())) }
    }

    /// Takes a token if one is available.
    pub fn try_acquire(&self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = *state;
        let now = Instant::now();
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }

    /// Waits until a token is available.
    pub async fn acquire(&self) {
        while !self.try_acquire() {
            tokio::time::sleep(std::time::Duration::from_secs_f64(1.0 / self.rate.max(1.0))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_burst_then_refuses() {
        let limiter = RateLimiter::per_second(3);
        assert!((0..3).all(|_| limiter.try_acquire()));
        assert!(!limiter.try_acquire());
        let unlimited = RateLimiter::per_second(0);
        assert!((0..1000).all(|_| unlimited.try_acquire()));
    }
}
