//! Checkpoints: copying the WAL back into the database file on their own thread, and
//! flushing the database file after each pass that copied anything.

use super::*;

/// Copies the WAL back into the database file `every` so often from its own connection, so the
/// checkpoint's fsyncs never stall the writer's commits. When the WAL has passed `limit` all
/// the same (the writer never paused long enough for a checkpoint to reach its end), copies
/// again, each pass what the last one left behind, until little is left; then sets `finish`,
/// for the writer. Stops when the store is dropped.
///
/// Each pass that copied something is flushed to disk here. SQLite flushes the database file
/// only when a checkpoint reaches the WAL's end, which under steady load is the writer's
/// finishing step: it then waited for everything copied since the last restart (40-50 ms of
/// random writes, every second, while no callback was acknowledged). Flushed here, the writer
/// waits only for the few pages it copies itself.
///
/// A failed flush of the database file is final (see [`Lost`]): SQLite has already recorded
/// the pass's frames as copied, and a later pass that reaches the WAL's end lets the next
/// commit start the WAL over them. So is an I/O error from a checkpoint (SQLite's own flush of
/// the WAL before copying it, for one). No pass runs once anything is lost: it could copy
/// frames from beyond a gap that a failed WAL flush left on disk.
pub(in crate::store::sqlite) fn run_checkpoints(
    conn: Connection,
    limit: u64,
    every: Duration,
    flush: Flush,
    finish: &AtomicBool,
    alive: &mpsc::WeakUnboundedSender<Job>,
    lost: &Lost,
) {
    /// What the writer may be left to copy: a few hundredths of a second of heavy load.
    const SHORT_TAIL_FRAMES: i64 = 1024;
    let path = conn.path().unwrap_or_default().to_owned();
    let db = std::fs::File::open(&path).ok();
    let mut flushed = 0;
    /// How a pass went.
    enum Pass {
        /// Done; the WAL's length in frames when it started (its file may be longer: it is
        /// reused).
        Copied(i64),
        /// Busy, say: the next pass tries again.
        Skipped,
        /// Something is lost: nothing may be copied any more.
        Stopped,
    }
    let mut pass = || {
        if lost.get().is_some() {
            return Pass::Stopped;
        }
        let (frames, copied) = match checkpoint(&conn) {
            Ok(done) => done,
            Err(e) if is_io_error(&e) => {
                lost.set(format!("a checkpoint of {path} failed: {e}; restart the gateway to recover"));
                return Pass::Stopped;
            }
            Err(e) => {
                tracing::debug!(error = %e, "checkpoint skipped");
                return Pass::Skipped;
            }
        };
        if copied != flushed
            && let Some(db) = &db
        {
            // Lost while this pass copied: what it copied may come from beyond a gap.
            if lost.get().is_some() {
                return Pass::Stopped;
            }
            if let Err(e) = flush(db) {
                lost.set(format!(
                    "cannot flush the database file {path} after a checkpoint: {e}; restart the gateway to recover"
                ));
                return Pass::Stopped;
            }
            flushed = copied;
        }
        Pass::Copied(frames)
    };
    let frame_bytes = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).map_or(4096, |size| size + 24);
    while alive.upgrade().is_some() {
        std::thread::sleep(every);
        let mut frames = match pass() {
            Pass::Copied(frames) => frames,
            Pass::Skipped => continue,
            Pass::Stopped => break,
        };
        if u64::try_from(frames.saturating_mul(frame_bytes)).unwrap_or(0) <= limit || finish.load(Ordering::Acquire) {
            continue;
        }
        for _ in 0..8 {
            match pass() {
                Pass::Copied(now) if now - frames > SHORT_TAIL_FRAMES => frames = now,
                _ => break,
            }
        }
        finish.store(true, Ordering::Release);
    }
    if let Some(why) = lost.get() {
        tracing::error!(error = %why, "checkpoints stopped");
    }
}

/// Whether SQLite failed to read, write or flush a file (as opposed to finding it busy).
pub(in crate::store::sqlite) fn is_io_error(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::SystemIoFailure)
}

/// A passive checkpoint (it never waits): the WAL's length in frames when it started, and how
/// many of them are now in the database file.
pub(in crate::store::sqlite) fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))
}

/// Copies what is left of the WAL into the database file, between two batches: nothing is
/// written meanwhile, so the checkpoint reaches the WAL's end and the next transaction starts
/// the WAL over (unless a reader still uses it; then the next round tries again). Never waits
/// for readers. An I/O error is final, as on the checkpoint thread.
pub(in crate::store::sqlite) fn finish_checkpoint(conn: &Connection, lost: &Lost) {
    if lost.get().is_some() {
        return;
    }
    let started = std::time::Instant::now();
    match checkpoint(conn) {
        Ok((frames, copied)) => {
            tracing::debug!(frames, copied, took = ?started.elapsed(), "WAL checkpointed by the writer");
        }
        Err(e) if is_io_error(&e) => {
            lost.set(format!("the writer's checkpoint failed: {e}; restart the gateway to recover"));
        }
        Err(e) => tracing::debug!(error = %e, "writer's checkpoint skipped"),
    }
}
