//! Writes of several statements with decisions between them, written once for both
//! databases: each is an `async fn` over [`Tx`], one transaction of either backend.
//!
//! PostgreSQL runs them as they are, awaiting each statement. SQLite runs them inside its
//! writer thread, where a statement never waits: [`at_once`] polls the whole write once and
//! it completes in that one poll. Statements use `$1` placeholders and SQL both databases
//! accept; `/*for_update*/` and `/*skip_locked*/` are row locks only PostgreSQL takes (its
//! `FOR UPDATE` and `FOR UPDATE SKIP LOCKED`; SQLite's one writer needs none), and the few
//! other words PostgreSQL spells differently are in [`POSTGRES_WORDS`].

use std::future::Future;
use std::task::{Context, Poll, Waker};

use super::StoreError;
use super::sql::{Arg, Rows};

/// One transaction of either backend.
pub(super) trait Tx {
    /// The rows of one statement.
    async fn rows(&mut self, sql: &str, args: Vec<Arg>) -> Result<Rows, StoreError>;

    /// Runs one statement; returns the rows it changed.
    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError>;

    /// Holds off every other writer for `key` until this transaction ends, across processes
    /// (PostgreSQL: an advisory lock; SQLite's one writer is alone already).
    async fn lock(&mut self, key: &str) -> Result<(), StoreError>;
}

/// What PostgreSQL runs in place of these words of shared statements: the row-lock markers,
/// and SQLite's table function over a JSON array (the busy endpoints of a webhook claim).
pub(super) const POSTGRES_WORDS: [(&str, &str); 3] = [
    ("/*for_update*/", "FOR UPDATE"),
    ("/*skip_locked*/", "FOR UPDATE SKIP LOCKED"),
    ("json_each($5) AS busy", "json_array_elements_text(CAST(CAST($5 AS TEXT) AS json)) AS busy(value)"),
];

/// Runs a write over a SQLite transaction, whose statements never wait, to its end.
pub(super) fn at_once<T>(write: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let mut write = std::pin::pin!(write);
    match write.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(done) => done,
        Poll::Pending => {
            Err(StoreError::Unavailable("a SQLite write waited for something besides the database".into()))
        }
    }
}
