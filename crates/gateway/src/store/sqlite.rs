//! SQLite backend: WAL, one writer thread with group commit, a thread that makes each commit
//! durable, and a small pool of reader connections.
//!
//! Group commit: write jobs queue on a channel; the writer takes every job waiting (up to
//! `MAX_BATCH`), runs them inside one transaction, and commits once. A job that fails has its
//! own writes undone without touching the others' (a savepoint per job, or for callback
//! settlements, which may run twice, one rollback and a second pass: see `run_batch`); a failed
//! commit fails every job of the batch.
//!
//! Durability: the writer commits without waiting for the disk (`synchronous=NORMAL`) and hands
//! the batch's answers to the syncer thread, which flushes the WAL file (`fdatasync`) and only
//! then answers each job; one flush covers every batch committed meanwhile. So no caller is
//! ever told "stored" for something that is not on disk (as with `synchronous=FULL`), while the
//! writer runs the next batch during the flush instead of waiting for it. Checkpoints flush the
//! WAL before copying it and the database file after, as always. A failed flush, of the WAL or
//! of the database file, is final (see [`Lost`]): the store takes no more writes, runs no more
//! checkpoints, reports itself down, and never checkpoints on close, so that after a restart
//! SQLite's recovery decides what is on disk. Readers on other connections may see a commit
//! for the few milliseconds before its flush ends: a power cut then can undo what they saw (never what was
//! acknowledged; an idempotent replay, which confirms a payment, waits for a flush first); a
//! crashed process cannot, as the data is then in the operating system's hands.
//!
//! Checkpoints (copying the WAL back into the database file) run on their own thread, four
//! times a second, and flush the database file after each pass. Under steady load a
//! checkpoint never finds the WAL still, so the WAL would grow for as long as the load lasts;
//! past `WAL_LIMIT_BYTES` the writer finishes the checkpoint itself between two batches (a
//! few milliseconds: only the pages it copies itself are left to flush), and the WAL starts
//! over.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::{mpsc, oneshot};

use super::sql::{Arg, Cell, Rows, Statement, to_sqlite};
use super::tx::{Tx, at_once};
use super::{
    CallbackStored, IncomingCallback, Inserted, Kept, NewCheckoutSession, NewPayment, PAYMENT_COLUMN_COUNT,
    PAYMENT_COLUMNS, PushResult, SessionInserted, StoreError, WebhookJob, callback_decision, current, kept,
    unserialisable, writes,
};
use crate::payment::{FailureReason, Payment, PaymentId, SettledBy, Status};
use crate::settlement::plan::{self, Outbox, Plan};
use crate::settlement::{self, Change, Decision};

const MAX_BATCH: usize = 512;
/// Reader connections at most, each with SQLite's default page cache (2 MB): reads beyond
/// wait their turn. Twice the machine's cores and then some: lookups are short.
const READERS: usize = 8;
/// The WAL's size beyond which it is started over. Started over, the file is reused from its
/// start; it is truncated only beyond four times this (after a long read held it up), since
/// truncating and growing it again each time costs a commit about 15 ms.
const WAL_LIMIT_BYTES: u64 = 64 << 20;

/// The time between two checkpoints. Each copies and flushes what the WAL gained meanwhile:
/// a quarter of a second of heavy load costs the writer's commits less, while it is copied,
/// than a whole second's (measured: p99 9 ms against 16 ms at 24,000 callbacks/s).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// A write waiting for the writer thread.
trait Work: Send {
    /// Runs the write in the writer's transaction; false when it failed and its writes must be
    /// undone.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether the writer may undo it and run it again, so it needs no savepoint of its own
    /// unless a neighbour fails (see `run_batch`).
    fn repeatable(&self) -> bool;
    /// Answers the caller once the batch is committed and flushed, or has failed.
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

type Job = Box<dyn Work>;

/// A write and where its answer goes.
struct Write<F, R> {
    f: F,
    repeatable: bool,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> Work for Write<F, R>
where
    F: FnMut(&Connection) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.f)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn repeatable(&self) -> bool {
        self.repeatable
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        let Self { result, reply, .. } = *self;
        let _ = reply.send(committed.and_then(|()| result.unwrap_or_else(|| Err(unavailable("the write never ran")))));
    }
}
/// Makes what was written to the WAL file durable: [`std::fs::File::sync_data`], but for tests.
type Flush = fn(&std::fs::File) -> std::io::Result<()>;

/// The oldest SQLite this store runs on. Versions 3.7.0 to 3.51.2 can lose committed data when
/// a checkpoint starts just after another one completed while a third connection's commit
/// starts the WAL over (SQLite's "WAL-reset bug", fixed in 3.51.3): exactly how this store
/// works, with checkpoints on their own thread and the writer starting the WAL over.
const OLDEST_SQLITE: i32 = 3_051_003;

/// Refuses a linked SQLite older than [`OLDEST_SQLITE`].
fn check_sqlite_version(linked: i32) -> Result<(), StoreError> {
    if linked >= OLDEST_SQLITE {
        return Ok(());
    }
    let (major, minor, patch) = (linked / 1_000_000, linked / 1000 % 1000, linked % 1000);
    Err(unavailable(format!(
        "SQLite {major}.{minor}.{patch} is linked, which can lose committed data when the WAL starts over \
         (fixed in 3.51.3); build Lipa with rusqlite's bundled SQLite (the default)"
    )))
}

/// Why the store stopped taking writes for good, once it has: a flush of the WAL or of the
/// database file failed. Linux reports a failed write-back once per open file and may then
/// mark the pages clean, so a later flush can succeed with data missing from the disk; the
/// only safe course is to stop writing and copying and let SQLite's recovery, after a
/// restart, decide what the disk holds. Threads that saw a failure set it; the writer and the
/// checkpoint thread stop at it; the connections then close without checkpointing.
#[derive(Default)]
struct Lost {
    why: OnceLock<String>,
    heard: tokio::sync::Notify,
}

impl Lost {
    fn get(&self) -> Option<&String> {
        self.why.get()
    }

    /// Records the first failure (later ones are consequences) and wakes every waiter.
    fn set(&self, why: String) -> String {
        let first = self.why.get_or_init(|| {
            tracing::error!(error = %why, "durability lost: no more writes until a restart");
            why
        });
        self.heard.notify_waiters();
        first.clone()
    }

    /// Completes once a failure is recorded, with its reason.
    async fn wait(&self) -> String {
        loop {
            // Registered before the check, so a `set` in between is not missed.
            let heard = self.heard.notified();
            if let Some(why) = self.get() {
                return why.clone();
            }
            heard.await;
        }
    }
}

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: Arc<str>,
    /// Why the store stopped taking writes, once it has.
    lost: Arc<Lost>,
    /// Turns to read, one per reader connection (see [`READERS`]).
    reading: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn sql_error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict(e.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Opens a connection. It never checkpoints on close (see [`Lost`]): only the writer's may,
/// and only while nothing was lost.
fn connect(path: &str) -> Result<Connection, StoreError> {
    let conn = if path == ":memory:" { Connection::open_in_memory() } else { Connection::open(path) }
        .map_err(|e| unavailable(format!("cannot open SQLite database {path:?}: {e}")))?;
    close_without_checkpoint(&conn, true)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql_error)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch(
        "PRAGMA page_size=2048; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    )
    .map_err(sql_error)?;
    Ok(conn)
}

/// Whether closing `conn` may checkpoint the WAL into the database file (and remove the WAL),
/// as SQLite does when the last connection to a database closes.
fn close_without_checkpoint(conn: &Connection, refuse: bool) -> Result<(), StoreError> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, refuse)
        .map(|_| ())
        .map_err(sql_error)
}

/// Every schema version's SQL and what it brought, in order.
fn migrations() -> [(&'static str, &'static str); 7] {
    super::migrations(
        include_str!("schema_sqlite.sql"),
        include_str!("schema_v2_sqlite.sql"),
        include_str!("schema_v6_sqlite.sql"),
    )
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
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
fn migrate_to(conn: &Connection, version: usize, sql: &str) -> Result<(), StoreError> {
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
fn rewritten_in_place(conn: &Connection) -> Result<(), StoreError> {
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
        Some(tables) => Err(StoreError::Corrupt(format!(
            "schema version 6 could not rewrite the definition of {tables}: it is not the one Lipa created; \
             compare it with crates/gateway/src/store/schema_sqlite.sql"
        ))),
    }
}

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
fn run_checkpoints(
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
fn is_io_error(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::SystemIoFailure)
}

/// A passive checkpoint (it never waits): the WAL's length in frames when it started, and how
/// many of them are now in the database file.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))
}

/// Copies what is left of the WAL into the database file, between two batches: nothing is
/// written meanwhile, so the checkpoint reaches the WAL's end and the next transaction starts
/// the WAL over (unless a reader still uses it; then the next round tries again). Never waits
/// for readers. An I/O error is final, as on the checkpoint thread.
fn finish_checkpoint(conn: &Connection, lost: &Lost) {
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

/// Answers committed batches once the WAL holding them is on disk: waits for a batch, takes
/// every other one waiting too, flushes once, answers them all. Stops when the writer does.
///
/// It keeps one descriptor of the WAL file, opened before anything could fail: Linux reports
/// a write-back error to each descriptor open when it happened, where a descriptor opened
/// afterwards may never hear of it. A failed flush is final ([`Lost`]): the failed pages may
/// be marked clean and the next flush succeed, while recovery after a power cut would stop at
/// the first missing frame and drop every later commit. So every later batch fails too, the
/// store refuses writes and reports itself down, and a restart lets SQLite's recovery decide
/// what is on disk.
fn run_syncer(wal: &Path, flush: Flush, batches: &std::sync::mpsc::Receiver<Vec<Job>>, lost: &Lost) {
    let mut file = std::fs::File::open(wal).ok();
    while let Ok(first) = batches.recv() {
        let mut waiting = vec![first];
        waiting.extend(batches.try_iter());
        let flushed = match lost.get() {
            Some(why) => Err(why.clone()),
            None => {
                let result = match &file {
                    Some(f) => flush(f),
                    None => std::fs::File::open(wal).and_then(|f| flush(file.insert(f))),
                };
                result.map_err(|e| {
                    lost.set(format!(
                        "cannot flush the write-ahead log {}: {e}; restart the gateway to recover",
                        wal.display()
                    ))
                })
            }
        };
        for job in waiting.into_iter().flatten() {
            job.answer(flushed.clone().map_err(StoreError::Unavailable));
        }
    }
}

/// Runs write batches until the store is dropped; once anything is lost, answers each job with
/// the reason instead of running it, and closes its connection without a checkpoint.
fn run_writer(
    conn: Connection,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    finish_checkpoint_wanted: &AtomicBool,
    syncer: Option<std::sync::mpsc::Sender<Vec<Job>>>,
    lost: &Lost,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Some(why) = lost.get() {
            for job in batch.drain(..) {
                job.answer(Err(unavailable(why)));
            }
            continue;
        }
        let batch_started = std::time::Instant::now();
        let ran = run_batch(&conn, &mut batch);
        let jobs_took = batch_started.elapsed();
        let committed = ran.and_then(|()| conn.execute_batch("COMMIT"));
        tracing::trace!(jobs = batch.len(), ?jobs_took, commit_took = ?(batch_started.elapsed() - jobs_took), "write batch");
        if let Err(e) = &committed {
            tracing::error!(error = %e, "a write batch failed; none of it is committed");
            let _ = conn.execute_batch("ROLLBACK");
        }
        let mut committed = committed.map_err(|e| sql_error(e).to_string());
        let mut done = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        // Committed: the syncer answers once the WAL is on disk (an in-memory database has
        // neither WAL nor disk).
        if let (Ok(()), Some(syncer)) = (&committed, &syncer) {
            match syncer.send(done) {
                Ok(()) => done = Vec::new(),
                Err(std::sync::mpsc::SendError(back)) => {
                    committed = Err("the WAL syncer has stopped".into());
                    done = back;
                }
            }
        }
        for job in done {
            job.answer(committed.clone().map_err(StoreError::Unavailable));
        }
        if finish_checkpoint_wanted.swap(false, Ordering::AcqRel) {
            finish_checkpoint(&conn, lost);
        }
    }
    if lost.get().is_some() {
        let _ = close_without_checkpoint(&conn, true);
    }
}

/// Runs a batch of jobs in one transaction, left open for the caller to commit. A failed job's
/// writes are undone and the others' kept. Each job that cannot run again gets a savepoint of
/// its own. Repeatable jobs run first, together and without savepoints, as a savepoint copies
/// every page a job changes (a tenth of a callback's cost); if one of them fails, the
/// transaction is rolled back and each runs again in its own savepoint. Reordering is safe:
/// every job of a batch was waiting for its answer while the others were sent, so none of
/// them depends on another. An error means the transaction cannot be committed; every job of
/// the batch then fails.
fn run_batch(conn: &Connection, batch: &mut [Job]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Stable: each kind keeps its arrival order.
    batch.sort_by_key(|job| !job.repeatable());
    let repeatable = batch.iter().take_while(|job| job.repeatable()).count();
    let (together, alone) = batch.split_at_mut(repeatable);
    if !together.iter_mut().all(|job| job.run(conn)) {
        conn.execute_batch("ROLLBACK; BEGIN IMMEDIATE")?;
        for job in together.iter_mut() {
            in_savepoint(conn, job)?;
        }
    }
    for job in alone {
        in_savepoint(conn, job)?;
    }
    Ok(())
}

/// Runs a job inside a savepoint, undoing its writes if it fails. A savepoint that cannot be
/// opened or closed leaves the job's writes entangled with the others': an error.
fn in_savepoint(conn: &Connection, job: &mut Job) -> rusqlite::Result<()> {
    exec(conn, "SAVEPOINT job", [])?;
    if !job.run(conn) {
        exec(conn, "ROLLBACK TO job", [])?;
    }
    exec(conn, "RELEASE job", [])?;
    Ok(())
}

impl SqliteStore {
    /// Opens the database file (created if missing), migrates it, and starts the writer.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        Self::open_with(path, WAL_LIMIT_BYTES, CHECKPOINT_EVERY, std::fs::File::sync_data).await
    }

    /// [`Self::open`] with a WAL limit, a time between checkpoints and a way to flush a file
    /// (the WAL after commits, the database file after checkpoints) of one's own.
    async fn open_with(
        path: &str,
        wal_limit: u64,
        checkpoint_every: Duration,
        flush: Flush,
    ) -> Result<Self, StoreError> {
        check_sqlite_version(rusqlite::version_number())?;
        let path_owned = path.to_owned();
        let (conn, readers, checkpointer, wal) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            if path_owned != ":memory:"
                && let Some(dir) = Path::new(&path_owned).parent().filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
            }
            let conn = connect(&path_owned)?;
            // The writer's connection is the one that may checkpoint on close (see `run_writer`).
            close_without_checkpoint(&conn, false)?;
            // The writer keeps the hot index pages cached (8 MB); readers use SQLite's default.
            // A larger cache measured no faster: a commit that split a B-tree page scans the
            // whole cache once (SQLite renumbers pages through a placeholder beyond the file).
            conn.execute_batch(&format!("PRAGMA cache_size=-8000; PRAGMA journal_size_limit={}", 4 * wal_limit))
                .map_err(sql_error)?;
            migrate(&conn)?;
            // Checkpoints run on their own thread (see `run_checkpoints`); without a connection
            // for it, SQLite's automatic checkpoints stay on.
            let checkpointer = match path_owned.as_str() {
                ":memory:" => None,
                _ => match connect(&path_owned) {
                    Ok(c) => {
                        conn.execute_batch("PRAGMA wal_autocheckpoint = 0").map_err(sql_error)?;
                        Some(c)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no checkpoint connection; automatic checkpoints stay on");
                        None
                    }
                },
            };
            // An in-memory database is private to its connection, so readers share the writer's
            // view only for files; `:memory:` is for quick experiments, tests use files.
            let readers = if path_owned == ":memory:" { Vec::new() } else { vec![connect(&path_owned)?] };
            // SQLite names the WAL after the database file's full path.
            let wal = conn.path().filter(|p| !p.is_empty()).map(|p| std::path::PathBuf::from(format!("{p}-wal")));
            Ok((conn, readers, checkpointer, wal))
        })
        .await
        .map_err(unavailable)??;
        let lost = Arc::new(Lost::default());
        let syncer = match wal {
            Some(wal) => {
                let (syncer, batches) = std::sync::mpsc::channel();
                let lost = lost.clone();
                std::thread::Builder::new()
                    .name("lipa-sqlite-sync".into())
                    .spawn(move || run_syncer(&wal, flush, &batches, &lost))
                    .map_err(unavailable)?;
                Some(syncer)
            }
            None => None,
        };
        let (writer, jobs) = mpsc::unbounded_channel();
        let finish_wanted = Arc::new(AtomicBool::new(false));
        let (wanted, writer_lost) = (finish_wanted.clone(), lost.clone());
        std::thread::Builder::new()
            .name("lipa-sqlite-writer".into())
            .spawn(move || run_writer(conn, jobs, &wanted, syncer, &writer_lost))
            .map_err(unavailable)?;
        if let Some(checkpointer) = checkpointer {
            let (alive, lost) = (writer.downgrade(), lost.clone());
            std::thread::Builder::new()
                .name("lipa-sqlite-checkpoint".into())
                .spawn(move || {
                    run_checkpoints(checkpointer, wal_limit, checkpoint_every, flush, &finish_wanted, &alive, &lost)
                })
                .map_err(unavailable)?;
        }
        let reading = Arc::new(tokio::sync::Semaphore::new(READERS));
        Ok(Self { writer, readers: Arc::new(Mutex::new(readers)), path: path.into(), lost, reading })
    }

    /// Runs `f` inside the writer's transaction; answers once the commit is on disk.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let mut f = Some(f);
        let once = move |conn: &Connection| f.take().map_or_else(|| Err(unavailable("a write ran twice")), |f| f(conn));
        self.submit(once, false).await
    }

    /// [`Self::write`] for a write the writer may undo and run again (see `run_batch`): it
    /// must have no effect outside the database, and may not count on running only once.
    async fn write_repeatable<R: Send + 'static>(
        &self,
        f: impl FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit(f, true).await
    }

    async fn submit<R: Send + 'static>(
        &self,
        f: impl FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
        repeatable: bool,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.kept()?;
        let job: Job = Box::new(Write { f, repeatable, result: None, reply });
        self.writer.send(job).map_err(|_| unavailable("the database writer has stopped"))?;
        answer.await.map_err(|_| unavailable("the database writer stopped before committing"))?
    }

    /// Runs `f` on a reader connection on the blocking pool.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        if &*self.path == ":memory:" {
            return self.write(f).await;
        }
        let readers = self.readers.clone();
        let path = self.path.clone();
        // At most READERS connections read at once (each keeps its own page cache): a flood
        // of reads waits for one instead of opening connections without end.
        let turn = self.reading.clone().acquire_owned().await.map_err(unavailable)?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let pooled = readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
            let conn = match pooled {
                Some(c) => c,
                None => connect(&path)?,
            };
            let result = f(&conn);
            readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
            result
        })
        .await
        .map_err(unavailable)?
    }

    /// Fails once a flush has failed (see [`Lost`]): no write is taken until a restart.
    fn kept(&self) -> Result<(), StoreError> {
        self.lost.get().map_or(Ok(()), |why| Err(unavailable(why)))
    }

    /// Completes once a flush has failed, with the reason; the process should then stop
    /// without closing the store (see [`Lost`]).
    pub(super) async fn durability_lost(&self) -> String {
        self.lost.wait().await
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.kept()?;
        self.read(|c| row(c, "SELECT 1", [], |_| Ok(())).map_err(sql_error)).await
    }

    // ---- API keys ----

    // ---- payments ----

    pub(super) async fn insert_payment(&self, new: NewPayment) -> Result<Inserted, StoreError> {
        self.write(move |c| at_once(writes::insert_payment(&mut SqliteTx(c), &new))).await
    }

    pub(super) async fn record_push(&self, id: PaymentId, result: PushResult, now: i64) -> Result<Payment, StoreError> {
        self.write(move |c| at_once(writes::record_push(&mut SqliteTx(c), &id, &result, now))).await
    }

    // ---- callbacks and queries ----

    pub(super) async fn settle_from_callback(&self, incoming: IncomingCallback) -> Result<CallbackStored, StoreError> {
        self.write_repeatable(move |c| {
            // The whole payment: its webhook is written from it, as the settlement leaves it.
            static BY_TOKEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                format!("SELECT {PAYMENT_COLUMNS}, rowid FROM payments WHERE callback_token_hash = ?1")
            });
            let found = row(c, &BY_TOKEN, [&incoming.token_hash], payment_and_rowid).optional().map_err(sql_error)?;
            let decision = callback_decision(&incoming.parsed, found.as_ref().map(|(p, _)| current(p)));
            let payment_id = found.as_ref().map(|(p, _)| p.id.clone());
            // A malformed body with a known token still belongs to that payment: flagged for
            // review, with its reason on the payment's timeline.
            let (outcome, note, status) = match found {
                Some((payment, rowid)) => {
                    let before = payment.status;
                    let plan = apply(c, rowid, payment, Plan::of("callback", decision, before), incoming.received_at)?;
                    (plan.outcome, plan.note, Some(plan.after))
                }
                None => (decision.outcome, decision.note, None),
            };
            let stored = match kept(&incoming, payment_id.as_ref(), outcome, note) {
                Kept::Row(r) => exec(
                    c,
                    INSERT_CALLBACK,
                    params![
                        r.received_at,
                        r.payment_id,
                        r.token_hash,
                        r.source,
                        r.checkout_request_id,
                        r.outcome,
                        r.note,
                        r.body
                    ],
                ),
                Kept::Counted(t) => exec(c, COUNT_UNMATCHED, params![t.minute, t.bytes, t.at]).map(|_| 0),
            };
            let stored = stored.map_err(sql_error)? > 0;
            Ok(CallbackStored { outcome, stored, payment_id, status })
        })
        .await
    }

    pub(super) async fn settle_from_query(
        &self,
        id: PaymentId,
        result: daraja::QueryResult,
        now: i64,
    ) -> Result<Decision, StoreError> {
        self.write(move |c| at_once(writes::settle_from_query(&mut SqliteTx(c), &id, &result, now))).await
    }

    pub(super) async fn expire_overdue(
        &self,
        created_before: i64,
        failing_before: i64,
        now: i64,
    ) -> Result<Vec<PaymentId>, StoreError> {
        self.write(move |c| at_once(writes::expire_overdue(&mut SqliteTx(c), created_before, failing_before, now)))
            .await
    }

    // ---- plain SQL (see `sql.rs`) ----

    pub(super) async fn query(&self, sql: Cow<'static, str>, args: Vec<Arg>) -> Result<Rows, StoreError> {
        self.read(move |c| rows_of(c, &sql, &args)).await
    }

    pub(super) async fn execute_returning(&self, sql: &'static str, args: Vec<Arg>) -> Result<Rows, StoreError> {
        self.write(move |c| rows_of(c, sql, &args)).await
    }

    /// Completes once everything committed so far is flushed (an empty write).
    pub(super) async fn wait_until_durable(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(())).await
    }

    pub(super) async fn execute_all(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        self.write(move |c| {
            statements
                .iter()
                .map(|(sql, args)| {
                    exec(c, &to_sqlite(sql), rusqlite::params_from_iter(args)).map(|n| n as u64).map_err(sql_error)
                })
                .collect()
        })
        .await
    }

    // ---- checkout sessions ----

    pub(super) async fn insert_checkout_session(&self, new: NewCheckoutSession) -> Result<SessionInserted, StoreError> {
        self.write(move |c| at_once(writes::insert_checkout_session(&mut SqliteTx(c), new))).await
    }

    // ---- emails ----

    // ---- webhooks ----

    pub(super) async fn claim_due_webhooks(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
        per_endpoint: u32,
        busy: Vec<String>,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        let busy = serde_json::Value::from(busy).to_string();
        self.write(move |c| {
            // The due events of endpoints that are not busy, in due order (a few times the
            // limit of them), then at most `per_endpoint` of each.
            let mut stmt = c
                .prepare_cached(
                    "UPDATE webhook_events SET lease_until = ?2
                     WHERE id IN (
                        SELECT id FROM (
                            SELECT id, next_attempt_at,
                                   ROW_NUMBER() OVER (PARTITION BY endpoint ORDER BY next_attempt_at, id) AS nth
                            FROM (SELECT id, next_attempt_at, COALESCE(url, '') AS endpoint FROM webhook_events
                                  WHERE status = 'pending' AND next_attempt_at <= ?1
                                    AND (lease_until IS NULL OR lease_until <= ?1)
                                    AND NOT EXISTS (SELECT 1 FROM json_each(?5)
                                                    WHERE COALESCE(url, '') = value OR url LIKE value || '/%'
                                                       OR url LIKE value || '?%' OR url LIKE value || '#%')
                                  ORDER BY next_attempt_at LIMIT ?3 * 4))
                        WHERE nth <= ?4 ORDER BY next_attempt_at, id LIMIT ?3)
                     RETURNING id, payment_id, api_key_id, type, url, payload, attempts, created_at",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map(params![now, lease_until, limit, per_endpoint, busy], |r| {
                    Ok(WebhookJob {
                        id: r.get(0)?,
                        payment_id: r.get(1)?,
                        api_key_id: r.get(2)?,
                        event_type: r.get(3)?,
                        url: r.get(4)?,
                        payload: r.get(5)?,
                        attempts: r.get(6)?,
                        created_at: r.get(7)?,
                    })
                })
                .map_err(sql_error)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
        })
        .await
    }
}

/// Runs a statement from the connection's statement cache.
fn exec(c: &Connection, sql: &str, args: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(args)
}

/// Reads one row with a statement from the connection's statement cache.
fn row<T>(
    c: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(args, f)
}

/// Executes a settlement plan on the payment in row `rowid`; returns the plan as carried out
/// (a receipt that already paid another payment turns it into a conflict's).
fn apply(c: &Connection, rowid: i64, payment: Payment, plan: Plan, now: i64) -> Result<Plan, StoreError> {
    let mut plan = plan;
    if let Some(change) = &plan.change {
        match write_change(c, rowid, change, plan.review, now) {
            Ok(()) => {}
            // A unique index refused it (the receipt or CheckoutRequestID belongs to another
            // payment): one M-Pesa transaction cannot settle two payments.
            Err(StoreError::Conflict(_)) => {
                let receipt = change.receipt.clone().unwrap_or_default();
                let other: Option<String> =
                    row(c, "SELECT id FROM payments WHERE receipt = ?1", [&receipt], |r| r.get(0))
                        .optional()
                        .map_err(sql_error)?;
                plan = plan.replanned(settlement::already_used(&receipt, other.as_deref()));
            }
            Err(e) => return Err(e),
        }
    }
    if plan.flags_only() {
        exec(c, "UPDATE payments SET needs_review = 1, updated_at = ?2 WHERE rowid = ?1", params![rowid, now])
            .map_err(sql_error)?;
    }
    let payment = plan.applied_to(payment, now);
    debug_assert_eq!(Some(&payment), load(c, &payment.id).ok().as_ref(), "the settled payment as written");
    record(c, &payment, &plan, now)?;
    Ok(plan)
}

/// Writes a plan's timeline event and announcement, for `payment` as the plan left it.
fn record(c: &Connection, payment: &Payment, plan: &Plan, now: i64) -> Result<(), StoreError> {
    let event = &plan.event;
    exec(c, INSERT_EVENT, params![payment.id.as_str(), now, event.kind, event.detail.to_string()])
        .map_err(sql_error)?;
    let Some(event_type) = plan.announce else { return Ok(()) };
    let Outbox { webhook: w, email } = plan::outbox(payment, event_type, now).map_err(unserialisable)?;
    exec(
        c,
        INSERT_WEBHOOK_EVENT,
        params![w.id, w.payment_id.as_str(), w.api_key_id, w.event_type, w.url, w.payload, w.at],
    )
    .map_err(sql_error)?;
    if let Some(e) = email {
        exec(c, INSERT_EMAIL, params![e.id, e.payment_id.as_str(), e.recipient, e.at]).map_err(sql_error)?;
    }
    Ok(())
}

/// The UPDATE that settles a payment, naming only the columns the change brings (bit 1: the
/// receipt, 2: the transaction date, 4: the CheckoutRequestID). SQLite rewrites the index
/// entries of every column named in SET, even to the same value, so naming an unchanged
/// receipt or CheckoutRequestID would cost its unique index a delete, an insert and a
/// uniqueness check. The eight statements, one per combination, are written once.
static SETTLE: std::sync::LazyLock<[String; 8]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|brings| {
        let column = |bit: usize, set: &'static str| if brings & bit != 0 { set } else { "" };
        format!(
            "UPDATE payments SET status = ?2, failure_reason = ?3, result_code = ?4, result_desc = ?5,{}{}{}
                settled_by = ?9, settled_at = COALESCE(settled_at, ?10), needs_review = MAX(needs_review, ?11),
                updated_at = ?10, next_check_at = NULL, lease_until = NULL
             WHERE rowid = ?1",
            column(1, " receipt = ?6,"),
            column(2, " transaction_date = ?7,"),
            column(4, " checkout_request_id = COALESCE(checkout_request_id, ?8),"),
        )
    })
});

/// The writes of a settlement besides the payment's own UPDATE ([`SETTLE`]).
const INSERT_CALLBACK: &str =
    "INSERT INTO callbacks (received_at, payment_id, token_hash, source, checkout_request_id, outcome, note, body)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
/// Counts a callback no payment took beyond the storage budget, under its minute.
const COUNT_UNMATCHED: &str =
    "INSERT INTO unmatched_callback_counts (minute, count, bytes, last_at) VALUES (?1, 1, ?2, ?3)
     ON CONFLICT (minute) DO UPDATE SET count = count + 1, bytes = bytes + excluded.bytes,
        last_at = MAX(last_at, excluded.last_at)";
const INSERT_EVENT: &str = "INSERT INTO events (payment_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)";
const INSERT_WEBHOOK_EVENT: &str =
    "INSERT INTO webhook_events (id, payment_id, api_key_id, type, url, payload, status, created_at, next_attempt_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)";
const INSERT_EMAIL: &str = "INSERT INTO emails (id, payment_id, recipient, status, created_at, next_attempt_at)
     VALUES (?1, ?2, ?3, 'pending', ?4, ?4)";

/// Writes a change to the payment in row `rowid`.
fn write_change(c: &Connection, rowid: i64, ch: &Change, review: bool, now: i64) -> Result<(), StoreError> {
    let brings = usize::from(ch.receipt.is_some())
        | usize::from(ch.transaction_date.is_some()) << 1
        | usize::from(ch.checkout_request_id.is_some()) << 2;
    let changed = exec(
        c,
        &SETTLE[brings],
        params![
            rowid,
            ch.status.as_str(),
            ch.failure_reason.map(FailureReason::as_str),
            ch.result_code,
            ch.result_desc,
            ch.receipt,
            ch.transaction_date,
            ch.checkout_request_id,
            ch.settled_by.as_str(),
            now,
            i64::from(review),
        ],
    )
    .map_err(sql_error)?;
    match changed {
        1 => Ok(()),
        n => Err(StoreError::Corrupt(format!("settling payment row {rowid} changed {n} rows instead of one"))),
    }
}

fn load(c: &Connection, id: &PaymentId) -> Result<Payment, StoreError> {
    row(c, &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?1"), [id.as_str()], payment_from_row)
        .map_err(sql_error)
}

/// A payment read as `SELECT {PAYMENT_COLUMNS}, rowid`, with its rowid: settlement reaches
/// the row again by it.
fn payment_and_rowid(r: &Row<'_>) -> rusqlite::Result<(Payment, i64)> {
    Ok((payment_from_row(r)?, r.get(PAYMENT_COLUMN_COUNT)?))
}

/// The rows of a statement written for both backends (see [`super::sql`]).
fn rows_of(c: &Connection, sql: &str, args: &[Arg]) -> Result<Rows, StoreError> {
    let mut stmt = c.prepare_cached(&to_sqlite(sql)).map_err(sql_error)?;
    let n = stmt.column_count();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            (0..n).map(|i| r.get_ref(i).map(sqlite_cell)).collect::<Result<Vec<_>, _>>()
        })
        .map_err(sql_error)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql_error)
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Arg::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Arg::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Arg::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
            Arg::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Arg::NullInt | Arg::NullText => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// A transaction for the writes written once for both backends ([`super::writes`]): the
/// writer's connection, inside its batch.
struct SqliteTx<'c>(&'c Connection);

impl Tx for SqliteTx<'_> {
    async fn rows(&mut self, sql: &str, args: Vec<Arg>) -> Result<Rows, StoreError> {
        rows_of(self.0, sql, &args)
    }

    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        let changed = exec(self.0, &to_sqlite(sql), rusqlite::params_from_iter(&args)).map_err(sql_error)?;
        Ok(changed as u64)
    }

    async fn lock(&mut self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

fn sqlite_cell(v: rusqlite::types::ValueRef<'_>) -> Cell {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        // Only aggregates produce reals here (averages); whole numbers are what is shown.
        #[allow(clippy::cast_possible_truncation)]
        ValueRef::Real(f) => Cell::Int(f.round() as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

fn bad(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, what.to_owned().into())
}

fn payment_from_row(r: &Row<'_>) -> rusqlite::Result<Payment> {
    let status: String = r.get(1)?;
    let metadata: String = r.get(6)?;
    let reason: Option<String> = r.get(13)?;
    let settled_by: Option<String> = r.get(16)?;
    Ok(Payment {
        id: PaymentId::from_db(r.get(0)?),
        status: Status::parse(&status).ok_or_else(|| bad(1, "unknown status"))?,
        amount: r.get(2)?,
        phone: r.get(3)?,
        account_reference: r.get(4)?,
        description: r.get(5)?,
        metadata: serde_json::from_str(&metadata).map_err(|_| bad(6, "metadata is not JSON"))?,
        webhook_url: r.get(7)?,
        customer_email: r.get(8)?,
        merchant_request_id: r.get(9)?,
        checkout_request_id: r.get(10)?,
        receipt: r.get(11)?,
        transaction_date: r.get(12)?,
        failure_reason: reason
            .as_deref()
            .map(|s| FailureReason::parse(s).ok_or_else(|| bad(13, "unknown reason")))
            .transpose()?,
        result_code: r.get(14)?,
        result_desc: r.get(15)?,
        settled_by: settled_by
            .as_deref()
            .map(|s| SettledBy::parse(s).ok_or_else(|| bad(16, "unknown settled_by")))
            .transpose()?,
        needs_review: r.get::<_, i64>(17)? != 0,
        created_at: r.get(18)?,
        updated_at: r.get(19)?,
        settled_at: r.get(20)?,
        callback_token_hash: r.get(21)?,
        api_key_id: r.get(22)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database left at an earlier version gets only the versions after it.
    #[test]
    fn migrating_an_older_database_applies_only_the_newer_versions() {
        let conn = Connection::open_in_memory().unwrap();
        let versions = migrations();
        for (sql, _) in &versions[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 4").unwrap();
        let outcome_index = |c: &Connection| -> i64 {
            c.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'callbacks_outcome'", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(outcome_index(&conn), 1);
        migrate(&conn).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, i64::try_from(versions.len()).unwrap());
        assert_eq!(outcome_index(&conn), 0, "version 5 drops the index");
        migrate(&conn).unwrap();
    }

    /// Version 6 rewrites table definitions in place: the constraints refuse what they refused,
    /// ids go on from the last one, every connection reads the new definitions, and no
    /// statement of a settlement builds a temporary table (SQLite builds one per row for a
    /// CHECK's `IN` list of more than two values).
    #[test]
    fn version_6_keeps_the_constraints_and_builds_no_table_per_row() {
        let dir = std::env::temp_dir().join(format!("lipa-v6-{}", crate::ids::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lipa.db").display().to_string();
        let conn = connect(&path).unwrap();
        let versions = migrations();
        for (sql, _) in &versions[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 5").unwrap();
        let callback = |c: &Connection| {
            exec(
                c,
                INSERT_CALLBACK,
                params![1, None::<String>, "t", None::<String>, None::<String>, "orphan", "", b"{}".as_slice()],
            )
            .unwrap();
            c.last_insert_rowid()
        };
        assert_eq!((callback(&conn), callback(&conn)), (1, 2));
        // Another connection, open and holding a statement prepared under version 5.
        let other = connect(&path).unwrap();
        let temporary_tables = |c: &Connection, sql: &str| -> usize {
            let mut stmt = c.prepare(&format!("EXPLAIN {sql}")).unwrap();
            let n = stmt.parameter_count();
            let ops = stmt.query_map(rusqlite::params_from_iter(vec![rusqlite::types::Value::Null; n]), |r| {
                r.get::<_, String>(1)
            });
            ops.unwrap().filter(|op| op.as_deref() == Ok("OpenEphemeral")).count()
        };
        assert_eq!(temporary_tables(&other, INSERT_WEBHOOK_EVENT), 1, "version 5 builds one");
        migrate(&conn).unwrap();
        // The other connection's next statement sees the schema version changed and reads
        // the definitions again.
        assert_eq!(callback(&other), 3, "ids go on from the last one");
        for c in [&conn, &other] {
            for sql in SETTLE.iter().map(String::as_str).chain([
                INSERT_CALLBACK,
                INSERT_EVENT,
                INSERT_WEBHOOK_EVENT,
                INSERT_EMAIL,
            ]) {
                assert_eq!(temporary_tables(c, sql), 0, "{sql}");
            }
        }
        let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(integrity, "ok");
        let payment = |status: &str| {
            exec(
                &other,
                "INSERT INTO payments (id, api_key_id, request_hash, amount, phone, account_reference, description,
                    metadata, status, callback_token_hash, push_state, created_at, updated_at)
                 VALUES (?1, 'k', 'h', 10, '254700000000', 'r', 'd', '{}', ?2, ?1, 'accepted', 0, 0)",
                params![format!("pay_{status}"), status],
            )
        };
        for status in ["pending", "paid", "failed", "expired"] {
            payment(status).unwrap();
        }
        let refused = payment("settled").unwrap_err().to_string();
        assert!(refused.contains("CHECK constraint failed"), "{refused}");
        let webhook = |status: &str| {
            exec(
                &other,
                "INSERT INTO webhook_events (id, payment_id, api_key_id, type, payload, status, created_at)
                 VALUES (?1, 'p', 'k', 't', '{}', ?2, 0)",
                params![format!("evt_{status}"), status],
            )
        };
        for status in ["pending", "delivered", "dead", "no_endpoint"] {
            webhook(status).unwrap();
        }
        assert!(webhook("sent").unwrap_err().to_string().contains("CHECK constraint failed"));
        let email = |status: &str| {
            exec(
                &other,
                "INSERT INTO emails (id, payment_id, recipient, status, created_at) VALUES (?1, 'p', 'a@b.c', ?2, 0)",
                params![format!("eml_{status}"), status],
            )
        };
        for status in ["pending", "sent", "dead", "skipped"] {
            email(status).unwrap();
        }
        assert!(email("delivered").unwrap_err().to_string().contains("CHECK constraint failed"));
        drop((conn, other));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Version 6 refuses to be recorded when a definition is not the text it rewrites (a
    /// database whose schema someone changed): the version stays 5 and nothing is changed.
    #[test]
    fn version_6_is_not_recorded_over_a_definition_it_could_not_rewrite() {
        let conn = Connection::open_in_memory().unwrap();
        for (sql, _) in &migrations()[..5] {
            conn.execute_batch(sql).unwrap();
        }
        let altered = "PRAGMA writable_schema = ON;
            UPDATE sqlite_schema SET sql = replace(sql, 'IN (''pending'', ''paid''', 'IN (''pending'',''paid''')
            WHERE name = 'payments';
            PRAGMA writable_schema = RESET;
            PRAGMA user_version = 5;";
        conn.execute_batch(altered).unwrap();
        let definition = |c: &Connection, table: &str| -> String {
            c.query_row("SELECT sql FROM sqlite_schema WHERE name = ?1", [table], |r| r.get(0)).unwrap()
        };
        let before = definition(&conn, "payments");
        let refused = migrate(&conn).unwrap_err().to_string();
        assert!(refused.contains("could not rewrite the definition of payments"), "{refused}");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 5);
        assert_eq!(definition(&conn, "payments"), before);
        assert!(definition(&conn, "events").contains("AUTOINCREMENT"), "rolled back as a whole");
    }

    /// Repeatable writes share the transaction without savepoints; when one fails, the batch
    /// runs again with each in its own savepoint: the failed one's writes are undone, the
    /// others' kept, and each caller gets its own answer.
    #[test]
    fn a_failed_repeatable_write_is_undone_and_its_neighbours_kept() {
        use std::sync::atomic::AtomicUsize;
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)").unwrap();
        let runs: Arc<[AtomicUsize; 4]> = Arc::default();
        let mut answers = Vec::new();
        let mut job = |i: usize, values: &'static [i64], repeatable: bool| -> Job {
            let (reply, answer) = oneshot::channel();
            answers.push(answer);
            let runs = runs.clone();
            let f = move |c: &Connection| {
                runs[i].fetch_add(1, Ordering::SeqCst);
                for x in values {
                    exec(c, "INSERT INTO t (x) VALUES (?1)", [x]).map_err(sql_error)?;
                }
                Ok(i)
            };
            Box::new(Write { f, repeatable, result: None, reply })
        };
        // The second inserts 2, then 1 again (refused): its 2 must not stay.
        let mut batch = vec![job(0, &[1], true), job(1, &[2, 1], true), job(2, &[3], false), job(3, &[4], true)];
        run_batch(&conn, &mut batch).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        for job in batch {
            job.answer(Ok(()));
        }
        let stored: Vec<i64> = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(stored, [1, 3, 4]);
        let answered: Vec<_> =
            answers.into_iter().map(|mut a| a.try_recv().unwrap().map_err(|e| e.to_string())).collect();
        assert_eq!(answered[0], Ok(0));
        assert!(answered[1].as_ref().is_err_and(|e| e.contains("UNIQUE")), "{:?}", answered[1]);
        assert_eq!((answered[2].clone(), answered[3].clone()), (Ok(2), Ok(3)));
        let runs: Vec<usize> = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
        // The first pass stops at the failure, so the last repeatable one runs only in the second.
        assert_eq!(runs, [2, 2, 1, 1], "the repeatable ones ran again, the other once");

        // Without a failure each runs once.
        let ran = Arc::new(AtomicUsize::new(0));
        let mut batch: Vec<Job> = (10..13)
            .map(|x: i64| -> Job {
                let (reply, _answer) = oneshot::channel();
                let ran = ran.clone();
                let f = move |c: &Connection| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    exec(c, "INSERT INTO t (x) VALUES (?1)", [x]).map_err(sql_error)
                };
                Box::new(Write { f, repeatable: true, result: None, reply })
            })
            .collect();
        run_batch(&conn, &mut batch).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 3);
    }

    /// A write is answered only after its WAL is flushed to disk, and a flush that fails
    /// fails the write: the caller must not take it as stored (a callback sender retries).
    /// The failure is final, even if a later flush would succeed: the store refuses writes
    /// and reports itself down until a restart.
    #[tokio::test]
    async fn a_write_is_answered_once_its_wal_is_flushed() {
        use std::sync::atomic::AtomicUsize;
        static FLUSHES: AtomicUsize = AtomicUsize::new(0);
        static FAILURES: AtomicUsize = AtomicUsize::new(0);
        fn recording(wal: &std::fs::File) -> std::io::Result<()> {
            assert!(wal.metadata()?.len() > 0, "the WAL holds the commit");
            wal.sync_data()?;
            FLUSHES.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn failing_once(wal: &std::fs::File) -> std::io::Result<()> {
            if FAILURES.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(std::io::Error::other("the disk is gone"));
            }
            wal.sync_data()
        }
        let dir = std::env::temp_dir().join(format!("lipa-flush-{}", crate::ids::random_hex(6)));
        let path = dir.join("lipa.db").display().to_string();
        let create = |c: &Connection| c.execute_batch("CREATE TABLE t (x)").map_err(sql_error);
        let insert = |c: &Connection| exec(c, "INSERT INTO t (x) VALUES (1)", []).map_err(sql_error);

        let store = SqliteStore::open_with(&path, WAL_LIMIT_BYTES, Duration::from_secs(60), recording).await.unwrap();
        store.write(create).await.unwrap();
        store.write(insert).await.unwrap();
        assert_eq!(FLUSHES.load(Ordering::SeqCst), 2, "one flush per answered batch");
        drop(store);

        let store =
            SqliteStore::open_with(&path, WAL_LIMIT_BYTES, Duration::from_secs(60), failing_once).await.unwrap();
        store.ping().await.unwrap();
        for attempt in 0..2 {
            let err = store.write(insert).await.unwrap_err();
            assert!(
                matches!(&err, StoreError::Unavailable(m) if m.contains("cannot flush the write-ahead log") && m.contains("the disk is gone")),
                "attempt {attempt}: {err}"
            );
        }
        assert_eq!(FAILURES.load(Ordering::SeqCst), 1, "no write reaches the disk after a failed flush");
        assert!(store.ping().await.is_err(), "the store reports itself down");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The checkpoint thread flushes the database file after each pass that copied something
    /// (SQLite would leave that to the pass that reaches the WAL's end, under load the
    /// writer's), and not again while nothing new was copied.
    #[tokio::test]
    async fn each_checkpoint_that_copies_flushes_the_database_file() {
        static FLUSHED: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
        fn recording(file: &std::fs::File) -> std::io::Result<()> {
            use std::os::fd::AsRawFd as _;
            let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
            FLUSHED.lock().unwrap().push(path);
            file.sync_data()
        }
        let dir = std::env::temp_dir().join(format!("lipa-ckpt-{}", crate::ids::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.canonicalize().unwrap().join("lipa.db");
        let db_flushes = || FLUSHED.lock().unwrap().iter().filter(|p| **p == db).count();
        let store =
            SqliteStore::open_with(&db.display().to_string(), WAL_LIMIT_BYTES, Duration::from_millis(20), recording)
                .await
                .unwrap();
        store.write(|c| c.execute_batch("CREATE TABLE t (x)").map_err(sql_error)).await.unwrap();
        for _ in 0..20 {
            store
                .write(|c| exec(c, "INSERT INTO t (x) VALUES (randomblob(500))", []).map_err(sql_error))
                .await
                .unwrap();
        }
        let started = std::time::Instant::now();
        while db_flushes() == 0 {
            assert!(started.elapsed() < Duration::from_secs(10), "the database file was never flushed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let a pass that may have started before the last commit finish: wait until the count
        // holds for half a second (passes run every 20 ms), then count.
        let mut settled = db_flushes();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = db_flushes();
            if now == settled {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the database file is flushed again and again");
            settled = now;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(db_flushes(), settled, "passes that copied nothing flushed the database file again");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The linked SQLite has the fix for the WAL-reset bug (3.51.3), and an older one is refused.
    #[test]
    fn the_linked_sqlite_has_the_wal_reset_fix() {
        let linked = rusqlite::version_number();
        assert!(linked >= 3_051_003, "SQLite {} is linked; Lipa needs 3.51.3 or newer", rusqlite::version());
        assert!(check_sqlite_version(linked).is_ok());
        let refused = check_sqlite_version(3_050_002).unwrap_err().to_string();
        assert!(refused.contains("SQLite 3.50.2") && refused.contains("3.51.3"), "{refused}");
    }

    /// The path of the file behind a descriptor, to tell the WAL from the database file.
    fn path_of(file: &std::fs::File) -> std::path::PathBuf {
        use std::os::fd::AsRawFd as _;
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default()
    }

    fn is_wal(file: &std::fs::File) -> bool {
        path_of(file).to_string_lossy().ends_with("-wal")
    }

    async fn fill(store: &SqliteStore, rows: usize) {
        for _ in 0..rows {
            store
                .write(|c| exec(c, "INSERT INTO t (x) VALUES (randomblob(1500))", []).map_err(sql_error))
                .await
                .unwrap();
        }
    }

    async fn wait_until(what: &str, done: impl Fn() -> bool) {
        let started = std::time::Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(20), "{what} never happened");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A failed flush of the database file after a checkpoint is final, as a failed WAL flush
    /// is: SQLite has recorded the pass's frames as copied, and the WAL would start over them.
    /// The store refuses writes, reports itself down, runs no more checkpoints, tells whoever
    /// waits for it (the `lipa` process then stops), and its connections close without
    /// checkpointing: the WAL stays for SQLite's recovery to read at the next start.
    #[tokio::test]
    async fn a_failed_flush_of_the_database_file_is_final() {
        use std::sync::atomic::AtomicUsize;
        static DB_FLUSHES: AtomicUsize = AtomicUsize::new(0);
        static WAL_FLUSHES: AtomicUsize = AtomicUsize::new(0);
        // Flushes of the database file fail once armed, after the first rows are in: however
        // slowly they are written, a checkpoint between them cannot end the store early.
        static ARMED: AtomicBool = AtomicBool::new(false);
        fn failing_for_the_database(file: &std::fs::File) -> std::io::Result<()> {
            if is_wal(file) {
                WAL_FLUSHES.fetch_add(1, Ordering::SeqCst);
                return file.sync_data();
            }
            if !ARMED.load(Ordering::SeqCst) {
                return file.sync_data();
            }
            DB_FLUSHES.fetch_add(1, Ordering::SeqCst);
            Err(std::io::Error::other("write-back of the database file failed"))
        }
        let dir = std::env::temp_dir().join(format!("lipa-dbflush-{}", crate::ids::random_hex(6)));
        let path = dir.join("lipa.db").display().to_string();
        let store = SqliteStore::open_with(&path, WAL_LIMIT_BYTES, Duration::from_millis(10), failing_for_the_database)
            .await
            .unwrap();
        store.write(|c| c.execute_batch("CREATE TABLE t (x)").map_err(sql_error)).await.unwrap();
        let lost = tokio::spawn({
            let store = store.clone();
            async move { store.durability_lost().await }
        });
        fill(&store, 10).await;
        ARMED.store(true, Ordering::SeqCst);
        // One more, acknowledged once in the WAL; the checkpoint that copies it fails.
        fill(&store, 1).await;
        wait_until("a flush of the database file", || DB_FLUSHES.load(Ordering::SeqCst) > 0).await;

        let why = tokio::time::timeout(Duration::from_secs(10), lost).await.expect("the loss is announced").unwrap();
        assert!(why.contains("cannot flush the database file") && why.contains("write-back"), "{why}");
        let err = store.write(|c| exec(c, "INSERT INTO t (x) VALUES (1)", []).map_err(sql_error)).await.unwrap_err();
        assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("cannot flush the database file")), "{err}");
        assert!(store.ping().await.is_err(), "the store reports itself down");
        let (db, wal) = (DB_FLUSHES.load(Ordering::SeqCst), WAL_FLUSHES.load(Ordering::SeqCst));
        // 30 checkpoint intervals.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(DB_FLUSHES.load(Ordering::SeqCst), db, "a checkpoint ran after the failure");
        assert_eq!(WAL_FLUSHES.load(Ordering::SeqCst), wal, "a write reached the disk after the failure");

        drop(store);
        // Time for the writer and checkpoint threads to close their connections; a clean close
        // would checkpoint and remove the WAL.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let wal_len = std::fs::metadata(format!("{path}-wal")).map_or(0, |m| m.len());
        assert!(wal_len > 0, "the connections checkpointed and removed the WAL on close");
        let conn = Connection::open(&path).unwrap();
        let rows: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 11, "every acknowledged write is there after recovery");
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Once a WAL flush has failed, no checkpoint runs: its next pass could copy frames from
    /// beyond the gap the failed write-back left on disk into the database file and flush it,
    /// and after a power cut recovery would stop at the gap over a database of mixed pages.
    #[tokio::test]
    async fn checkpoints_stop_after_a_failed_wal_flush() {
        use std::sync::atomic::AtomicUsize;
        static FAIL_WAL: AtomicBool = AtomicBool::new(false);
        static DB_FLUSHES: AtomicUsize = AtomicUsize::new(0);
        static DB_FLUSHES_AFTER: AtomicUsize = AtomicUsize::new(0);
        fn failing_wal_on_demand(file: &std::fs::File) -> std::io::Result<()> {
            if is_wal(file) {
                if FAIL_WAL.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other("write-back of the WAL failed"));
                }
            } else if FAIL_WAL.load(Ordering::SeqCst) {
                DB_FLUSHES_AFTER.fetch_add(1, Ordering::SeqCst);
            } else {
                DB_FLUSHES.fetch_add(1, Ordering::SeqCst);
            }
            file.sync_data()
        }
        let dir = std::env::temp_dir().join(format!("lipa-walfail-{}", crate::ids::random_hex(6)));
        let path = dir.join("lipa.db").display().to_string();
        let store = SqliteStore::open_with(&path, WAL_LIMIT_BYTES, Duration::from_millis(10), failing_wal_on_demand)
            .await
            .unwrap();
        store.write(|c| c.execute_batch("CREATE TABLE t (x)").map_err(sql_error)).await.unwrap();
        fill(&store, 10).await;
        wait_until("a checkpoint", || DB_FLUSHES.load(Ordering::SeqCst) > 0).await;

        FAIL_WAL.store(true, Ordering::SeqCst);
        let err = store
            .write(|c| exec(c, "INSERT INTO t (x) VALUES (randomblob(20000))", []).map_err(sql_error))
            .await
            .unwrap_err();
        assert!(matches!(&err, StoreError::Unavailable(m) if m.contains("cannot flush the write-ahead log")), "{err}");
        let db_file = std::fs::read(&path).unwrap();
        // 30 checkpoint intervals: the unacknowledged commit is in the WAL for any pass to copy.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(DB_FLUSHES_AFTER.load(Ordering::SeqCst), 0, "the database file was flushed after the failure");
        assert!(
            std::fs::read(&path).unwrap() == db_file,
            "a checkpoint copied into the database file after the failure"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Writes that never pause leave a checkpoint no moment to reach the WAL's end; the WAL
    /// must still start over, so its file stays a fraction of what went through it instead of
    /// growing with the load.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_writes_that_never_pause() {
        let dir = std::env::temp_dir().join(format!("lipa-wal-{}", crate::ids::random_hex(6)));
        let path = dir.join("lipa.db").display().to_string();
        let limit = 256 << 10;
        let store =
            SqliteStore::open_with(&path, limit, Duration::from_millis(100), std::fs::File::sync_data).await.unwrap();
        store.write(|c| c.execute_batch("CREATE TABLE filler (body BLOB)").map_err(sql_error)).await.unwrap();
        // At least 3 s (many checkpoint passes) and at least 6 MB through the WAL, however
        // slow the disk.
        let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (store, written) = (store.clone(), written.clone());
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    while written.fetch_add(1, Ordering::Relaxed) < 3000 || started.elapsed() < Duration::from_secs(3) {
                        assert!(started.elapsed() < Duration::from_secs(120), "3,000 small writes took 2 minutes");
                        store
                            .write(|c| {
                                exec(c, "INSERT INTO filler (body) VALUES (zeroblob(2000))", []).map_err(sql_error)
                            })
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let wal = format!("{path}-wal");
        let mut largest = 0;
        while !writers.iter().all(tokio::task::JoinHandle::is_finished) {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rows: i64 =
            store.read(|c| row(c, "SELECT count(*) FROM filler", [], |r| r.get(0)).map_err(sql_error)).await.unwrap();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
        // Every row's 2,000 bytes went through the WAL at least once.
        let through = u64::try_from(rows).unwrap() * 2000;
        assert!(through > 8 * limit, "the test wrote too little to matter: {rows} rows");
        assert!(largest > limit, "the WAL ({wal}) never passed its limit: at most {largest} bytes");
        assert!(largest < through / 2, "the WAL grew to {largest} bytes of the {through} that went through it");
        eprintln!("WAL at most {largest} bytes; {through} bytes went through it");
    }
}
