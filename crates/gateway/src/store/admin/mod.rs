//! The admin dashboard's storage: users, sessions, the audit log, review resolution and the
//! figures behind the overview. Written once over [`Store::query`] and
//! [`Store::execute_all`], so SQLite and PostgreSQL run the same statements.

use super::sql::{Arg, Cell, Rows};
use super::{Store, StoreError, StoredCallback};
use crate::payment::PaymentId;

/// What an admin user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read only.
    Viewer,
}

impl Role {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    /// From the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// An admin user (the hash is an argon2 PHC string).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminUser {
    /// Id.
    pub id: String,
    /// Login name.
    pub name: String,
    /// Argon2 hash.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Created, ms.
    pub created_at: i64,
}

impl std::fmt::Debug for AdminUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUser").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

/// A signed-in session.
#[derive(Debug, Clone)]
pub struct AdminSession {
    /// Who.
    pub user: AdminUser,
    /// The session's CSRF token.
    pub csrf: String,
    /// Signed in, ms.
    pub created_at: i64,
    /// Last request, ms.
    pub last_seen_at: i64,
}

/// One audit log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When, ms.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What (`login`, `resolve_review`, …).
    pub action: String,
    /// On what.
    pub target: String,
    /// Details.
    pub detail: String,
}

/// Payments of one hour with one status and result code: the overview's raw material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    /// Hour (ms since the epoch / 3 600 000).
    pub hour: i64,
    /// Status.
    pub status: String,
    /// Result code, if settled with one.
    pub result_code: Option<String>,
    /// Payments.
    pub count: i64,
    /// Their amounts, KES.
    pub amount: i64,
}

fn user_from(row: &[Cell]) -> Option<AdminUser> {
    Some(AdminUser {
        id: row.first()?.text(),
        name: row.get(1)?.text(),
        password_hash: row.get(2)?.text(),
        role: Role::parse(&row.get(3)?.text())?,
        created_at: row.get(4)?.int(),
    })
}

pub(in crate::store) fn audit_statement(
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
    now: i64,
) -> super::sql::Statement {
    // What a visitor typed (a login name) is kept, minus what PostgreSQL cannot store.
    let clean = |s: &str| s.replace('\0', "\u{FFFD}");
    let (actor, target, detail) = (clean(actor), clean(target), clean(detail));
    let (actor, target, detail) = (actor.as_str(), target.as_str(), detail.as_str());
    (
        "INSERT INTO audit_log (id, at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            format!("aud_{}", crate::ids::random_hex(12)).into(),
            now.into(),
            actor.into(),
            action.into(),
            target.into(),
            detail.into(),
        ],
    )
}

const HOUR: i64 = 3_600_000;

/// Callbacks no payment took that were counted, not stored (see [`Store::unmatched_counted_since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnmatchedCounted {
    /// How many.
    pub count: i64,
    /// Their bodies' bytes.
    pub bytes: i64,
    /// When the last one came (ms).
    pub last_at: Option<i64>,
}

fn first(rows: &Rows) -> Option<&Vec<Cell>> {
    rows.first()
}

mod figures;
mod review;

impl Store {
    /// How many admin users exist.
    pub async fn admin_user_count(&self) -> Result<i64, StoreError> {
        let rows = self.query("SELECT COUNT(*) FROM admin_users", vec![]).await?;
        Ok(first(&rows).and_then(|r| r.first()).map_or(0, Cell::int))
    }

    /// Adds a user; false if the name is taken.
    pub async fn insert_admin_user(&self, user: &AdminUser) -> Result<bool, StoreError> {
        let taken = self.admin_user(&user.name).await?.is_some();
        if taken {
            return Ok(false);
        }
        let inserted = self
            .execute_all(vec![(
                "INSERT INTO admin_users (id, name, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)",
                vec![
                    user.id.clone().into(),
                    user.name.clone().into(),
                    user.password_hash.clone().into(),
                    user.role.as_str().into(),
                    user.created_at.into(),
                ],
            )])
            .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A user by login name.
    pub async fn admin_user(&self, name: &str) -> Result<Option<AdminUser>, StoreError> {
        if super::has_nul(name) {
            return Ok(None);
        }
        let rows = self
            .query(
                "SELECT id, name, password_hash, role, created_at FROM admin_users WHERE name = $1",
                vec![name.into()],
            )
            .await?;
        Ok(first(&rows).and_then(|r| user_from(r)))
    }

    /// Replaces a user's password hash; false if there is no such user. Their sessions end.
    pub async fn set_admin_password(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let Some(user) = self.admin_user(name).await? else { return Ok(false) };
        self.execute_all(vec![
            ("UPDATE admin_users SET password_hash = $2 WHERE id = $1", vec![user.id.clone().into(), hash.into()]),
            ("DELETE FROM admin_sessions WHERE user_id = $1", vec![user.id.into()]),
        ])
        .await?;
        Ok(true)
    }

    /// Starts a session.
    pub async fn insert_admin_session(
        &self,
        token_hash: &str,
        user_id: &str,
        csrf: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute_all(vec![(
            "INSERT INTO admin_sessions (token_hash, user_id, csrf, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $4)",
            vec![token_hash.into(), user_id.into(), csrf.into(), now.into()],
        )])
        .await
        .map(drop)
    }

    /// A session by its token's hash, with its user.
    pub async fn admin_session(&self, token_hash: &str) -> Result<Option<AdminSession>, StoreError> {
        let rows = self
            .query(
                "SELECT u.id, u.name, u.password_hash, u.role, u.created_at, s.csrf, s.created_at, s.last_seen_at
                 FROM admin_sessions s JOIN admin_users u ON u.id = s.user_id WHERE s.token_hash = $1",
                vec![token_hash.into()],
            )
            .await?;
        Ok(first(&rows).and_then(|r| {
            Some(AdminSession {
                user: user_from(r)?,
                csrf: r.get(5)?.text(),
                created_at: r.get(6)?.int(),
                last_seen_at: r.get(7)?.int(),
            })
        }))
    }

    /// Records activity on a session (for the idle timeout).
    pub async fn touch_admin_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        self.execute_all(vec![(
            "UPDATE admin_sessions SET last_seen_at = $2 WHERE token_hash = $1",
            vec![token_hash.into(), now.into()],
        )])
        .await
        .map(drop)
    }

    /// Ends a session.
    pub async fn delete_admin_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.execute_all(vec![("DELETE FROM admin_sessions WHERE token_hash = $1", vec![token_hash.into()])])
            .await
            .map(drop)
    }

    /// Writes an audit line.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute_all(vec![audit_statement(actor, action, target, detail, now)]).await.map(drop)
    }

    /// The newest audit lines; with a target, only those about it.
    pub async fn audit_log(&self, target: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = match target {
            Some(t) => {
                self.query(
                    "SELECT at, actor, action, target, detail FROM audit_log WHERE target = $1 ORDER BY at DESC, id LIMIT $2",
                    vec![t.into(), limit.into()],
                )
                .await?
            }
            None => {
                self.query(
                    "SELECT at, actor, action, target, detail FROM audit_log ORDER BY at DESC, id LIMIT $1",
                    vec![limit.into()],
                )
                .await?
            }
        };
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at: r.first().map_or(0, Cell::int),
                actor: r.get(1).map(Cell::text).unwrap_or_default(),
                action: r.get(2).map(Cell::text).unwrap_or_default(),
                target: r.get(3).map(Cell::text).unwrap_or_default(),
                detail: r.get(4).map(Cell::text).unwrap_or_default(),
            })
            .collect())
    }

    /// Reserves a sign-in attempt under `key` (a user name or a client address) in the window
    /// of `window` ms that its first attempt opened: true if fewer than `limit` were made in
    /// it. Attempts are reserved before the password is checked, so concurrent attempts cannot
    /// pass the limit together; windows that ended are deleted here, so the table holds only
    /// the current window's keys.
    pub async fn reserve_login_attempt(
        &self,
        key: &str,
        limit: i64,
        window: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let key = key.replace('\0', "\u{FFFD}");
        let ended = now - window;
        let counts = self
            .execute_all(vec![
                ("DELETE FROM login_attempts WHERE window_start <= $1", vec![ended.into()]),
                (
                    "INSERT INTO login_attempts (key, window_start, attempts) VALUES ($1, $2, 1)
                     ON CONFLICT (key) DO UPDATE SET attempts = login_attempts.attempts + 1
                     WHERE login_attempts.attempts < $3",
                    vec![key.into(), now.into(), limit.into()],
                ),
            ])
            .await?;
        Ok(counts.get(1).is_some_and(|n| *n > 0))
    }

    /// Forgets the sign-in attempts under `forget` and gives back one reserved under each of
    /// `give_back`, in one commit.
    pub async fn release_login_attempts(&self, forget: &[String], give_back: &[String]) -> Result<(), StoreError> {
        let forget = forget.iter().map(|key| ("DELETE FROM login_attempts WHERE key = $1", vec![key.as_str().into()]));
        let give_back = give_back.iter().map(|key| {
            (
                "UPDATE login_attempts SET attempts = attempts - 1 WHERE key = $1 AND attempts > 0",
                vec![key.as_str().into()],
            )
        });
        self.execute_all(forget.chain(give_back).collect()).await.map(|_| ())
    }
}
