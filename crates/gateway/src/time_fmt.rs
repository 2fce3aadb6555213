//! Times are stored as UTC milliseconds since the Unix epoch (one representation on SQLite and
//! PostgreSQL) and shown as RFC 3339.

use serde::Serializer;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the epoch as RFC 3339 text (UTC).
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// An instant as milliseconds since the epoch.
pub fn to_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn millis<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

pub(crate) fn opt_millis<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&rfc3339(*ms)),
        None => s.serialize_none(),
    }
}
