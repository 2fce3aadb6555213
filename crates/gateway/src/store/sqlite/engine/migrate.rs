//! Migrations: each schema version applied once, in order, in its own transaction.

use super::*;

/// Every schema version's SQL and what it brought, in order.
pub(in crate::store::sqlite) fn migrations() -> [(&'static str, &'static str); 10] {
    crate::store::migrations(
        include_str!("../../schema_sqlite.sql"),
        include_str!("../../schema_v2_sqlite.sql"),
        include_str!("../../schema_v6_sqlite.sql"),
    )
}

pub(in crate::store::sqlite) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql_error)?;
    let version = usize::try_from(version).unwrap_or(0);
    for (done, (sql, what)) in migrations().into_iter().enumerate().skip(version) {
        let version = done + 1;
        if let Err(e) = migrate_to(conn, version, sql) {
            let _ = conn.execute_batch("ROLLBACK; PRAGMA writable_schema = RESET");
            return Err(e);
        }
        tracing::info!("database schema at version {version} ({what})");
    }
    Ok(())
}

/// Applies one schema version in its own transaction; on an error the caller rolls it back.
pub(in crate::store::sqlite) fn migrate_to(conn: &Connection, version: usize, sql: &str) -> Result<(), StoreError> {
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql}")).map_err(sql_error)?;
    // A version that rewrites table definitions in place (`writable_schema`) increments the
    // schema version itself, as SQLite does not, so that every connection reads the new
    // definitions; this one too, before any later version.
    let in_place = sql.contains("writable_schema");
    if in_place {
        let schema: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0)).map_err(sql_error)?;
        conn.execute_batch(&format!("PRAGMA schema_version = {}", schema + 1)).map_err(sql_error)?;
    }
    if version == 6 {
        rewritten_in_place(conn)?;
    }
    conn.execute_batch(&format!("PRAGMA user_version = {version}; COMMIT;")).map_err(sql_error)?;
    if in_place {
        conn.execute_batch("PRAGMA writable_schema = RESET").map_err(sql_error)?;
    }
    Ok(())
}

/// Checks, before version 6 commits, that it rewrote every definition it meant to: a stored
/// text other than the one the earlier versions wrote would leave it unchanged.
pub(in crate::store::sqlite) fn rewritten_in_place(conn: &Connection) -> Result<(), StoreError> {
    let left: Option<String> = conn
        .query_row(
            "SELECT group_concat(name, ', ') FROM sqlite_schema
             WHERE type = 'table' AND name IN ('payments', 'webhook_events', 'emails', 'callbacks', 'events')
               AND (sql LIKE '%status IN (%' OR sql LIKE '%AUTOINCREMENT%')",
            [],
            |r| r.get(0),
        )
        .map_err(sql_error)?;
    match left {
        None => Ok(()),
        Some(tables) => Err(StoreError::Corrupt(
            format!(
                "schema version 6 could not rewrite the definition of {tables}: it is not the one Lipa created; \
             compare it with crates/gateway/src/store/schema_sqlite.sql"
            )
            .into(),
        )),
    }
}
