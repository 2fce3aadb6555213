//! Admin sign-in: argon2 password hashes, session cookies (HttpOnly, SameSite=Strict, Secure
//! over https) with idle and absolute timeouts, a CSRF token per session (and one for the
//! sign-in form itself), and sign-in throttling per user and per address.
//!
//! The sign-in form is open to anyone, so each attempt costs bounded work and state: the user
//! name is checked against the naming rule before it is used; an attempt is reserved in the
//! store (shared by every process and kept across restarts) before its password is checked,
//! for the address first and then the user, so a throttled address touches nothing else and
//! concurrent attempts cannot pass the limit together; passwords are checked on the blocking
//! pool, a few at a time, never on the threads that serve requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::ids;
use crate::service::Gateway;
use crate::store::admin::{AdminSession, AdminUser, Role};
use crate::store::{Store, StoreError};

/// The session cookie.
pub const COOKIE: &str = "lipa_admin";
/// A session ends after this long without a request.
pub const IDLE_TIMEOUT_MS: i64 = 30 * 60_000;
/// And after this long in any case.
pub const ABSOLUTE_TIMEOUT_MS: i64 = 12 * 3_600_000;
/// Failed logins allowed per user (and, ×4, per address) in [`THROTTLE_WINDOW_MS`].
pub const MAX_FAILURES: i64 = 5;
/// Passwords checked at once (argon2 takes tens of milliseconds of CPU and 19 MiB of memory
/// for each); the rest wait their turn, at most [`CHECK_WAIT`].
pub const CHECKS_AT_ONCE: usize = 1;
/// How long a sign-in waits for its turn to have its password checked before it is told to
/// try again.
pub const CHECK_WAIT: Duration = Duration::from_secs(10);
/// Addresses this process remembers as throttled, refused without a write (emptied when full).
const REMEMBERED: usize = 10_000;
/// How long an address is refused without asking the store again.
const REMEMBER_MS: i64 = 60_000;
/// The throttling window.
pub const THROTTLE_WINDOW_MS: i64 = 15 * 60_000;

/// An argon2id hash (PHC string) of `password`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// A real hash of nothing, checked when the user name is unknown so that a wrong name takes as
/// long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no such user").unwrap_or_default())
}

/// Whether `password` matches the stored hash.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Bad name.
    #[error("the name must be 1 to 40 characters: letters, digits, dot, dash or underscore")]
    Name,
    /// Weak password.
    #[error("the password must be at least 10 characters")]
    WeakPassword,
    /// Taken.
    #[error("a user with this name already exists")]
    Taken,
    /// Hashing failed.
    #[error("could not hash the password: {0}")]
    Hash(String),
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `name` follows the rule for user names: 1 to 40 letters, digits, dots, dashes or
/// underscores. A name that does not cannot belong to anyone.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Creates an admin user.
pub async fn create_user(store: &Store, name: &str, password: &str, role: Role, now: i64) -> Result<(), UserError> {
    if !valid_name(name) {
        return Err(UserError::Name);
    }
    if password.chars().count() < 10 {
        return Err(UserError::WeakPassword);
    }
    let user = AdminUser {
        id: format!("adm_{}", ids::random_hex(8)),
        name: name.to_owned(),
        password_hash: hash_password(password).map_err(UserError::Hash)?,
        role,
        created_at: now,
    };
    if !store.insert_admin_user(&user).await? {
        return Err(UserError::Taken);
    }
    store.audit("setup", "create_user", name, role.as_str(), now).await?;
    Ok(())
}

/// The throttling key of a client address: its network (for IPv6 its /64, see
/// [`crate::api::client_network`]).
pub fn address_key(ip: std::net::IpAddr) -> String {
    format!("addr:{}", crate::api::client_network(ip))
}

/// The throttling key of a (valid) user name.
pub fn user_key(name: &str) -> String {
    format!("user:{name}")
}

/// Sign-in attempts: reserved in the store before the password is checked, and the checks
/// themselves, one at a time off the request threads.
///
/// Three limits, each per [`THROTTLE_WINDOW_MS`]: [`MAX_FAILURES`] for a user from one
/// address, 4 times that for an address whatever the user, and 10 times that for a user from
/// everywhere. So one address cannot lock a user out for the others (a user's own limit needs
/// ten addresses' worth of attempts), and many addresses cannot try more than 50 passwords on
/// one user.
#[derive(Debug)]
pub struct Throttle {
    /// Address keys refused lately, and until when this process refuses them without a write.
    throttled: Mutex<HashMap<String, i64>>,
    checks: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self { throttled: Mutex::default(), checks: std::sync::Arc::new(tokio::sync::Semaphore::new(CHECKS_AT_ONCE)) }
    }
}

/// A password could not be checked in time: too many sign-ins at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The throttling keys of a user name from an address: this user from there, this user.
fn user_keys(user: &str, address: &str) -> [String; 2] {
    [format!("{}@{address}", user_key(user)), user_key(user)]
}

impl Throttle {
    /// Reserves an attempt from `address` (an [`address_key`]) and, if the name is valid, for
    /// `user` from there and for `user`: false when any has used up its attempts in the
    /// window (the reservations already made then stand: they were attempts). The address
    /// comes first, so a throttled address reserves nothing for any user name it sends.
    pub async fn reserve(
        &self,
        store: &Store,
        user: Option<&str>,
        address: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        {
            let mut throttled = self.throttled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if throttled.get(address).is_some_and(|until| *until > now) {
                return Ok(false);
            }
            throttled.remove(address);
        }
        if !store.reserve_login_attempt(address, MAX_FAILURES * 4, THROTTLE_WINDOW_MS, now).await? {
            let mut throttled = self.throttled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if throttled.len() >= REMEMBERED {
                throttled.clear();
            }
            throttled.insert(address.to_owned(), now + REMEMBER_MS);
            return Ok(false);
        }
        let Some(user) = user else { return Ok(true) };
        let [from_here, anywhere] = user_keys(user, address);
        Ok(store.reserve_login_attempt(&from_here, MAX_FAILURES, THROTTLE_WINDOW_MS, now).await?
            && store.reserve_login_attempt(&anywhere, MAX_FAILURES * 10, THROTTLE_WINDOW_MS, now).await?)
    }

    /// After a successful sign-in: the user's attempts are forgotten and the address's
    /// reservation given back.
    pub async fn succeeded(&self, store: &Store, user: &str, address: &str) -> Result<(), StoreError> {
        store.release_login_attempts(&user_keys(user, address), &[address.to_owned()]).await
    }

    /// After an attempt whose password could not be checked (too busy, the store down): its
    /// reservations are given back, as it tried nothing.
    pub async fn not_tried(&self, store: &Store, user: Option<&str>, address: &str) -> Result<(), StoreError> {
        let mut keys = vec![address.to_owned()];
        if let Some(user) = user {
            keys.extend(user_keys(user, address));
        }
        store.release_login_attempts(&[], &keys).await
    }

    /// Checks `password` against `hash` (against [`dummy_hash`] when there is none, so that an
    /// unknown name takes as long as a wrong password) on the blocking pool, at most
    /// [`CHECKS_AT_ONCE`] at a time, after waiting at most [`CHECK_WAIT`] for a turn. The turn
    /// goes with the check: a request dropped meanwhile does not free it while the check runs.
    pub async fn check_password(&self, hash: Option<String>, password: String) -> Result<bool, Busy> {
        let turn = tokio::time::timeout(CHECK_WAIT, self.checks.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            // The dummy hash is made on first use: with argon2, here too, not on a request thread.
            match &hash {
                Some(hash) => verify_password(hash, &password),
                None => verify_password(dummy_hash(), &password),
            }
        })
        .await
        .map_err(|_| Busy)
    }
}

/// Starts a session for `user`; returns the `Set-Cookie` value.
pub async fn start_session(gateway: &Gateway, user: &AdminUser) -> Result<String, StoreError> {
    let token = ids::random_hex(32);
    let csrf = ids::random_hex(16);
    gateway.store().insert_admin_session(&ids::sha256_hex(token.as_bytes()), &user.id, &csrf, gateway.now()).await?;
    Ok(cookie(gateway, &token, None))
}

/// A `Set-Cookie` value for the session cookie (`max_age` 0 deletes it).
pub fn cookie(gateway: &Gateway, value: &str, max_age: Option<i64>) -> String {
    set_cookie(gateway, COOKIE, value, "/admin", max_age)
}

/// A `Set-Cookie` value for one of the dashboard's cookies: HttpOnly, SameSite=Strict, and
/// Secure when the gateway is served over https.
pub(crate) fn set_cookie(gateway: &Gateway, name: &str, value: &str, path: &str, max_age: Option<i64>) -> String {
    let secure = if gateway.public_url().starts_with("https://") { "; Secure" } else { "" };
    let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}{age}")
}

/// The value of the cookie `name` the request carries, if any.
pub(crate) fn cookie_value<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

fn session_token(parts: &Parts) -> Option<String> {
    cookie_value(&parts.headers, COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

/// A signed-in staff member: the extractor every admin page and action uses. Without a valid
/// session, pages redirect to the login and actions are refused.
#[derive(Debug, Clone)]
pub struct Staff {
    /// The session.
    pub session: AdminSession,
    /// Its token's hash.
    pub token_hash: String,
}

impl Staff {
    /// The user's name.
    pub fn name(&self) -> &str {
        &self.session.user.name
    }

    /// Whether they may act (not only look).
    pub fn is_admin(&self) -> bool {
        self.session.user.role == Role::Admin
    }

    /// Refuses a state-changing request without the session's CSRF token or from a viewer.
    pub fn may_act(&self, csrf: &str) -> Result<(), Refusal> {
        if !constant_time_eq(csrf.as_bytes(), self.session.csrf.as_bytes()) {
            return Err(Refusal::Csrf);
        }
        if !self.is_admin() {
            return Err(Refusal::ReadOnly);
        }
        Ok(())
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The form's CSRF token is missing or wrong.
    Csrf,
    /// A viewer tried to change something.
    ReadOnly,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let message = match self {
            Self::Csrf => {
                "This form has expired or did not come from this dashboard. Go back, reload the page and try again."
            }
            Self::ReadOnly => "Your account can view but not change anything.",
        };
        (StatusCode::FORBIDDEN, message).into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S: Send + Sync> FromRequestParts<S> for Staff
where
    Gateway: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let gateway = Gateway::from_ref(state);
        let to_login = || {
            if parts.method == axum::http::Method::GET {
                Redirect::to("/admin/login").into_response()
            } else {
                (StatusCode::UNAUTHORIZED, "Your session has ended; sign in again.").into_response()
            }
        };
        let Some(token) = session_token(parts) else { return Err(to_login()) };
        let token_hash = ids::sha256_hex(token.as_bytes());
        let session = match gateway.store().admin_session(&token_hash).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(crate::api::ApiError::from(e).into_response()),
        };
        let now = gateway.now();
        if now - session.last_seen_at > IDLE_TIMEOUT_MS || now - session.created_at > ABSOLUTE_TIMEOUT_MS {
            let _ = gateway.store().delete_admin_session(&token_hash).await;
            return Err(to_login());
        }
        // Activity is written at most once a minute.
        if now - session.last_seen_at > 60_000 {
            let _ = gateway.store().touch_admin_session(&token_hash, now).await;
        }
        Ok(Self { session, token_hash })
    }
}
