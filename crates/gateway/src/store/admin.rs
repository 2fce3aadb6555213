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

fn audit_statement(actor: &str, action: &str, target: &str, detail: &str, now: i64) -> super::sql::Statement {
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

    /// Clears a payment's review flag (and marks its flagged callbacks resolved), with the
    /// note on its timeline and in the audit log, in one transaction. False if it was not
    /// flagged.
    pub async fn resolve_payment_review(
        &self,
        id: &PaymentId,
        actor: &str,
        note: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let detail = serde_json::json!({"by": actor, "note": note}).to_string();
        let counts = self
            .execute_all(vec![
                (
                    "UPDATE payments SET needs_review = $2, updated_at = $3 WHERE id = $1 AND needs_review",
                    vec![id.as_str().into(), Arg::Bool(false), now.into()],
                ),
                (
                    "UPDATE callbacks SET resolved_at = $2 WHERE payment_id = $1 AND resolved_at IS NULL",
                    vec![id.as_str().into(), now.into()],
                ),
                (
                    "INSERT INTO events (payment_id, at, kind, detail) VALUES ($1, $2, 'review_resolved', $3)",
                    vec![id.as_str().into(), now.into(), detail.into()],
                ),
                audit_statement(actor, "resolve_review", id.as_str(), note, now),
            ])
            .await?;
        Ok(counts.first().is_some_and(|n| *n > 0))
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

    /// Marks a callback on the review list (no payment took it, or it was malformed) reviewed.
    /// False if already resolved.
    pub async fn resolve_callback(
        &self,
        callback_id: i64,
        actor: &str,
        note: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let counts = self
            .execute_all(vec![
                (
                    "UPDATE callbacks SET resolved_at = $2
                     WHERE id = $1 AND resolved_at IS NULL AND (payment_id IS NULL OR outcome = 'malformed')",
                    vec![callback_id.into(), now.into()],
                ),
                audit_statement(actor, "resolve_callback", &format!("callback {callback_id}"), note, now),
            ])
            .await?;
        Ok(counts.first().is_some_and(|n| *n > 0))
    }

    /// A stored callback's token hash and body, for replaying it.
    pub async fn callback_body(&self, id: i64) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let rows = self.query("SELECT token_hash, body FROM callbacks WHERE id = $1", vec![id.into()]).await?;
        Ok(first(&rows).map(|r| {
            (r.first().map(Cell::text).unwrap_or_default(), r.get(1).map(Cell::text).unwrap_or_default().into_bytes())
        }))
    }

    /// The callbacks on the review list not yet resolved, newest first, from before the
    /// callback `before` (for the next page): those no payment took (orphans, and malformed
    /// bodies with an unknown token), and malformed bodies that named a payment.
    pub async fn unresolved_callbacks(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredCallback>, StoreError> {
        let rows = self
            .query(
                "SELECT id, received_at, payment_id, outcome, note, source, body FROM callbacks
                 WHERE resolved_at IS NULL AND (payment_id IS NULL OR outcome = 'malformed') AND id < $1
                 ORDER BY id DESC LIMIT $2",
                vec![before.unwrap_or(i64::MAX).into(), limit.into()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredCallback {
                id: r.first().map_or(0, Cell::int),
                received_at: r.get(1).map_or(0, Cell::int),
                payment_id: r.get(2).and_then(Cell::opt_text),
                outcome: r.get(3).map(Cell::text).unwrap_or_default(),
                note: r.get(4).map(Cell::text).unwrap_or_default(),
                source: r.get(5).and_then(Cell::opt_text),
                body: r.get(6).map(Cell::text).unwrap_or_default(),
            })
            .collect())
    }

    /// Callbacks no payment took that were counted instead of stored (beyond the storage
    /// budget) since `since` (ms): how many, their bytes, and when the last one came.
    pub async fn unmatched_counted_since(&self, since: i64) -> Result<UnmatchedCounted, StoreError> {
        let rows = self
            .query(
                // SUM of BIGINT is NUMERIC on PostgreSQL.
                "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT), CAST(COALESCE(SUM(bytes), 0) AS BIGINT), MAX(last_at)
                 FROM unmatched_callback_counts WHERE minute >= $1",
                vec![since.into()],
            )
            .await?;
        let r = first(&rows);
        Ok(UnmatchedCounted {
            count: r.and_then(|r| r.first()).map_or(0, Cell::int),
            bytes: r.and_then(|r| r.get(1)).map_or(0, Cell::int),
            last_at: r.and_then(|r| r.get(2)).and_then(Cell::opt_int),
        })
    }

    /// Payments created in the hours `[from, to)` (ms, whole hours) grouped by hour, status and
    /// result code, from the rollup table.
    pub async fn rollup(&self, from: i64, to: i64) -> Result<Vec<Rollup>, StoreError> {
        let rows = self
            .query(
                "SELECT hour, status, result_code, count, amount FROM payment_hours WHERE hour >= $1 AND hour < $2",
                vec![from.div_euclid(HOUR).into(), to.div_euclid(HOUR).saturating_add(1).into()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Rollup {
                hour: r.first().map_or(0, Cell::int),
                status: r.get(1).map(Cell::text).unwrap_or_default(),
                result_code: r.get(2).map(Cell::text).filter(|c| !c.is_empty()),
                count: r.get(3).map_or(0, Cell::int),
                amount: r.get(4).map_or(0, Cell::int),
            })
            .collect())
    }

    /// Seconds from creation to a callback's or query's settlement (capped at 600) of the
    /// payments created in the hours `[from, to)`, as (seconds, count) pairs, from the rollups.
    pub async fn settle_times(&self, from: i64, to: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = self
            .query(
                "SELECT secs, count FROM settle_hours WHERE hour >= $1 AND hour < $2",
                vec![from.div_euclid(HOUR).into(), to.div_euclid(HOUR).saturating_add(1).into()],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.first().map_or(0, Cell::int), r.get(1).map_or(0, Cell::int))).collect())
    }

    /// Recomputes the rollups of one hour (ms since the epoch / 3 600 000) from `payments`.
    pub async fn recompute_hour(&self, hour: i64) -> Result<(), StoreError> {
        let (from, to) = (hour * HOUR, (hour + 1) * HOUR);
        self.execute_all(vec![
            ("DELETE FROM payment_hours WHERE hour = $1", vec![hour.into()]),
            (
                "INSERT INTO payment_hours (hour, status, result_code, count, amount)
                 SELECT CAST($1 AS BIGINT), status, COALESCE(result_code, ''), COUNT(*), CAST(SUM(amount) AS BIGINT)
                 FROM payments WHERE created_at >= $2 AND created_at < $3 GROUP BY status, COALESCE(result_code, '')",
                vec![hour.into(), from.into(), to.into()],
            ),
            ("DELETE FROM settle_hours WHERE hour = $1", vec![hour.into()]),
            (
                "INSERT INTO settle_hours (hour, secs, count)
                 SELECT CAST($1 AS BIGINT),
                        CASE WHEN settled_at - created_at > 600000 THEN 600 ELSE (settled_at - created_at) / 1000 END,
                        COUNT(*)
                 FROM payments WHERE created_at >= $2 AND created_at < $3 AND settled_by IN ('callback', 'query')
                 GROUP BY CASE WHEN settled_at - created_at > 600000 THEN 600 ELSE (settled_at - created_at) / 1000 END",
                vec![hour.into(), from.into(), to.into()],
            ),
        ])
        .await
        .map(drop)
    }

    /// How many payments are flagged for review, and how many webhook events are dead.
    pub async fn attention_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let rows = self
            .query(
                "SELECT (SELECT COUNT(*) FROM payments WHERE needs_review),
                        (SELECT COUNT(*) FROM callbacks
                         WHERE resolved_at IS NULL AND (payment_id IS NULL OR outcome = 'malformed')),
                        (SELECT COUNT(*) FROM webhook_events WHERE status = 'dead')",
                vec![],
            )
            .await?;
        let r = first(&rows);
        let at = |i: usize| r.and_then(|r| r.get(i)).map_or(0, Cell::int);
        Ok((at(0), at(1), at(2)))
    }

    /// Recent webhook events across all payments (optionally one status), newest first:
    /// (event id, payment id, type, status, attempts, created ms, delivered ms).
    pub async fn recent_webhook_events(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, String, String, String, i64, i64, Option<i64>)>, StoreError> {
        let rows = match status {
            Some(s) => {
                self.query(
                    "SELECT id, payment_id, type, status, attempts, created_at, delivered_at FROM webhook_events
                     WHERE status = $1 ORDER BY created_at DESC, id LIMIT $2",
                    vec![s.into(), limit.into()],
                )
                .await?
            }
            None => {
                self.query(
                    "SELECT id, payment_id, type, status, attempts, created_at, delivered_at FROM webhook_events
                     ORDER BY created_at DESC, id LIMIT $1",
                    vec![limit.into()],
                )
                .await?
            }
        };
        Ok(rows
            .iter()
            .map(|r| {
                let t = |i: usize| r.get(i).map(Cell::text).unwrap_or_default();
                (
                    t(0),
                    t(1),
                    t(2),
                    t(3),
                    r.get(4).map_or(0, Cell::int),
                    r.get(5).map_or(0, Cell::int),
                    r.get(6).and_then(Cell::opt_int),
                )
            })
            .collect())
    }
}
