//! Group commit on PostgreSQL, for any kind of message: one collector takes whatever jobs are
//! waiting (up to a batch's size) and settles them together in one transaction, answering
//! each only after the commit; a few batches run at once, and while they do new jobs queue, so
//! batches grow with load instead of round trips. Jobs with the same key (copies of one
//! callback, confirmations for one payment) go into successive rounds, each committed before
//! the next, so each sees the effect of the one before. When the set-based path cannot be sure
//! (a receipt already used, a unique violation, a deadlock) it rolls back and each job is
//! settled alone.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::PostgresStore;
use crate::store::StoreError;

/// Why a batch did not commit.
pub(super) enum Failed {
    /// Before the commit: nothing was written; each job can be settled alone.
    BeforeCommit(StoreError),
    /// At the commit: its fate is unknown, so nothing is acknowledged (a retry is recognised
    /// as a duplicate if the commit did land).
    AtCommit(StoreError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Self::BeforeCommit(e)
    }
}

/// A message settled in batches.
pub(super) trait Batched: Sized + Send + 'static {
    /// What settling one answers.
    type Out: Send + 'static;
    /// What the log calls these.
    const WHAT: &'static str;
    /// Jobs with equal keys are settled in successive rounds.
    fn key(&self) -> String;
    /// Settles the jobs of a round in one transaction (distinct keys), answers in order.
    fn together(store: &PostgresStore, jobs: &[Self]) -> impl Future<Output = Result<Vec<Self::Out>, Failed>> + Send;
    /// Settles one job in its own transaction.
    fn alone(store: &PostgresStore, job: Self) -> impl Future<Output = Result<Self::Out, StoreError>> + Send;
}

type Reply<J> = oneshot::Sender<Result<<J as Batched>::Out, StoreError>>;

/// The queue a collector takes jobs from.
pub(super) struct Queue<J: Batched>(mpsc::UnboundedSender<(J, Reply<J>)>);

impl<J: Batched> Clone for Queue<J> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<J: Batched> Queue<J> {
    /// Settles `job` with the others waiting; answers after the commit.
    pub(super) async fn settle(&self, job: J) -> Result<J::Out, StoreError> {
        let stopped = || StoreError::Unavailable(format!("the {} writer has stopped", J::WHAT).into());
        let (reply, answer) = oneshot::channel();
        self.0.send((job, reply)).map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// Starts a collector of batches of at most `max_batch`, `in_flight` at once; it ends when
/// every clone of the returned queue is dropped.
pub(super) fn start<J: Batched>(store: PostgresStore, max_batch: usize, in_flight: usize) -> Queue<J> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(J, Reply<J>)>();
    let slots = Arc::new(Semaphore::new(in_flight));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let store = store.clone();
            tokio::spawn(async move {
                settle_batch(&store, batch).await;
                drop(slot);
            });
        }
    });
    Queue(tx)
}

async fn settle_batch<J: Batched>(store: &PostgresStore, batch: Vec<(J, Reply<J>)>) {
    let mut waiting = batch;
    while !waiting.is_empty() {
        let mut keys = HashSet::new();
        let (together, later): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|(job, _)| keys.insert(job.key()));
        settle_round(store, together).await;
        waiting = later;
    }
}

async fn settle_round<J: Batched>(store: &PostgresStore, round: Vec<(J, Reply<J>)>) {
    let (jobs, replies): (Vec<_>, Vec<_>) = round.into_iter().unzip();
    match J::together(store, &jobs).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(Failed::BeforeCommit(e)) => {
            tracing::warn!(error = %e, jobs = jobs.len(), what = J::WHAT, "batch rolled back; settling one at a time");
            for (job, reply) in jobs.into_iter().zip(replies) {
                let _ = reply.send(J::alone(store, job).await);
            }
        }
        Err(Failed::AtCommit(e)) => {
            for reply in replies {
                let _ = reply.send(Err(StoreError::unavailable(&e)));
            }
        }
    }
}
