//! The OAuth access-token cache.
//!
//! Invariants:
//! - single flight: at most one OAuth request is in flight per client; concurrent callers on a
//!   cold or stale cache wait for it and share its token;
//! - a token is refreshed a safety margin before it expires (`expires_in` arrives as a string
//!   or a number, and both are accepted);
//! - a token that Daraja rejected is dropped only if it is still the cached one, so a burst of
//!   rejections triggers one refresh, not one each.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::error::Error;
use crate::secret::Secret;

/// A token with the instant after which it is refreshed.
#[derive(Clone)]
pub(crate) struct CachedToken {
    pub(crate) token: Secret,
    refresh_at: OffsetDateTime,
}

pub(crate) struct TokenCache {
    current: Mutex<Option<CachedToken>>,
    margin: Duration,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache").field("margin", &self.margin).finish_non_exhaustive()
    }
}

impl TokenCache {
    pub(crate) fn new(margin: Duration) -> Self {
        Self { current: Mutex::new(None), margin }
    }

    /// Returns a fresh token, calling `fetch` (once, whoever else is waiting) when needed.
    pub(crate) async fn get<F, Fut>(&self, now: OffsetDateTime, fetch: F) -> Result<Secret, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<GrantedToken, Error>>,
    {
        let mut current = self.current.lock().await;
        if let Some(cached) = current.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(cached.token.clone());
        }
        let granted = fetch().await?;
        let lifetime = Duration::from_secs(granted.expires_in_secs);
        let usable = if lifetime > self.margin * 2 { lifetime - self.margin } else { lifetime / 2 };
        let token = granted.access_token;
        *current = Some(CachedToken { token: token.clone(), refresh_at: now + usable });
        Ok(token)
    }

    /// Forgets `rejected` if it is still the cached token.
    pub(crate) async fn invalidate(&self, rejected: &Secret) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| &c.token == rejected) {
            *current = None;
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
}
