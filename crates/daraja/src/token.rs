//! The OAuth access-token cache.
//!
//! Invariants:
//! - single flight: at most one OAuth request is in flight per client; concurrent callers on a
//!   cold or stale cache wait for it and share its token;
//! - a token is refreshed a safety margin before it expires (`expires_in` arrives as a string
//!   or a number, and both are accepted);
//! - a token that Daraja rejected is dropped only if it is still the cached one, so a burst of
//!   rejections triggers one refresh, not one each;
//! - a failed refresh is not repeated by every caller that queued behind it: they get the
//!   failure at once; and a token inside its refresh margin but not yet expired is still used
//!   when a refresh fails.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::error::Error;
use crate::secret::Secret;

/// Daraja says 3599 s; anything beyond a day is treated as a day.
const MAX_LIFETIME_SECS: u64 = 86_400;

/// A token with the instant after which it is refreshed and the one it expires at.
#[derive(Clone)]
struct CachedToken {
    token: Secret,
    refresh_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

#[derive(Default)]
struct State {
    current: Option<CachedToken>,
    /// Incremented by every failed refresh.
    failures: u64,
    last_failure: String,
}

pub(crate) struct TokenCache {
    state: Mutex<State>,
    failures_seen: std::sync::atomic::AtomicU64,
    margin: Duration,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache").field("margin", &self.margin).finish_non_exhaustive()
    }
}

impl TokenCache {
    pub(crate) fn new(margin: Duration) -> Self {
        Self { state: Mutex::new(State::default()), failures_seen: std::sync::atomic::AtomicU64::new(0), margin }
    }

    /// Returns a fresh token, calling `fetch` (once, whoever else is waiting) when needed.
    pub(crate) async fn get<F, Fut>(&self, now: OffsetDateTime, fetch: F) -> Result<Secret, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<GrantedToken, Error>>,
    {
        use std::sync::atomic::Ordering;
        let failures_before = self.failures_seen.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if let Some(cached) = state.current.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(cached.token.clone());
        }
        if state.failures != failures_before {
            // A refresh failed while this caller waited: report it instead of asking again.
            return Err(Error::decode(
                "oauth",
                0,
                format!("token refresh failed just now: {}", state.last_failure),
                b"",
            ));
        }
        match fetch().await {
            Ok(granted) => {
                let lifetime = Duration::from_secs(granted.expires_in_secs.min(MAX_LIFETIME_SECS));
                let usable =
                    if lifetime > self.margin.saturating_mul(2) { lifetime - self.margin } else { lifetime / 2 };
                let at = |d: Duration| {
                    now.checked_add(time::Duration::try_from(d).unwrap_or(time::Duration::ZERO)).unwrap_or(now)
                };
                let token = granted.access_token;
                state.current =
                    Some(CachedToken { token: token.clone(), refresh_at: at(usable), expires_at: at(lifetime) });
                Ok(token)
            }
            Err(e) => {
                if let Some(still_valid) = state.current.as_ref().filter(|c| now < c.expires_at) {
                    tracing::warn!(error = %e, "token refresh failed; using the current token until it expires");
                    return Ok(still_valid.token.clone());
                }
                state.failures += 1;
                state.last_failure = e.to_string();
                self.failures_seen.store(state.failures, Ordering::Release);
                Err(e)
            }
        }
    }

    /// Forgets `rejected` if it is still the cached token.
    pub(crate) async fn invalidate(&self, rejected: &Secret) {
        let mut state = self.state.lock().await;
        if state.current.as_ref().is_some_and(|c| &c.token == rejected) {
            state.current = None;
        }
    }
}

/// The OAuth answer, with `expires_in` normalised to seconds.
pub(crate) struct GrantedToken {
    pub(crate) access_token: Secret,
    pub(crate) expires_in_secs: u64,
}

#[derive(Deserialize)]
struct Wire {
    access_token: String,
    expires_in: serde_json::Value,
}

impl GrantedToken {
    /// Parses `{"access_token": "...", "expires_in": "3599" | 3599}`.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        let wire: Wire = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let expires_in_secs = match &wire.expires_in {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|secs| *secs > 0)
        .ok_or_else(|| format!("expires_in {} is not a positive number of seconds", wire.expires_in))?;
        if wire.access_token.trim().is_empty() {
            return Err("access_token is empty".into());
        }
        Ok(Self { access_token: Secret::new(wire.access_token), expires_in_secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_as_string_or_number() {
        let s = GrantedToken::parse(br#"{"access_token":"abc","expires_in":"3599"}"#).unwrap();
        assert_eq!(s.expires_in_secs, 3599);
        let n = GrantedToken::parse(br#"{"access_token":"abc","expires_in":3599}"#).unwrap();
        assert_eq!(n.expires_in_secs, 3599);
        assert!(GrantedToken::parse(br#"{"access_token":"abc","expires_in":"soon"}"#).is_err());
        assert!(GrantedToken::parse(br#"{"access_token":"abc","expires_in":0}"#).is_err());
        assert!(GrantedToken::parse(br#"{"access_token":"","expires_in":1}"#).is_err());
        assert!(GrantedToken::parse(br#"{"expires_in":1}"#).is_err());
    }

    #[tokio::test]
    async fn absurd_lifetimes_are_capped_not_overflowed() {
        let cache = TokenCache::new(Duration::from_secs(300));
        let now = OffsetDateTime::now_utc();
        let token = cache
            .get(now, || async { Ok(GrantedToken { access_token: Secret::new("t"), expires_in_secs: u64::MAX }) })
            .await
            .unwrap();
        assert_eq!(token.expose(), "t");
        // Still cached an hour later, refreshed after the one-day cap.
        let fetched_again = std::sync::atomic::AtomicBool::new(false);
        let later = now + time::Duration::hours(1);
        cache
            .get(later, || async {
                fetched_again.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(GrantedToken { access_token: Secret::new("u"), expires_in_secs: 10 })
            })
            .await
            .unwrap();
        assert!(!fetched_again.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_valid_token_is_kept_when_a_refresh_inside_the_margin_fails() {
        let cache = TokenCache::new(Duration::from_secs(300));
        let now = OffsetDateTime::now_utc();
        cache
            .get(now, || async { Ok(GrantedToken { access_token: Secret::new("t"), expires_in_secs: 3599 }) })
            .await
            .unwrap();
        let in_margin = now + time::Duration::seconds(3400);
        let kept = cache.get(in_margin, || async { Err(Error::decode("oauth", 503, "down", b"")) }).await.unwrap();
        assert_eq!(kept.expose(), "t");
        let expired = now + time::Duration::seconds(3600);
        assert!(cache.get(expired, || async { Err(Error::decode("oauth", 503, "down", b"")) }).await.is_err());
    }
}
