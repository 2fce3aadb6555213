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

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::exec;
use crate::store::{Detail, StoreError};

mod checkpoints;
mod migrate;

pub(super) use checkpoints::*;
pub(super) use migrate::*;

pub(super) const MAX_BATCH: usize = 512;
/// Reader connections at most, each with SQLite's default page cache (2 MB): reads beyond
/// wait their turn. Twice the machine's cores and then some: lookups are short.
pub(super) const READERS: usize = 8;
/// The WAL's size beyond which it is started over. Started over, the file is reused from its
/// start; it is truncated only beyond four times this (after a long read held it up), since
/// truncating and growing it again each time costs a commit about 15 ms.
pub(super) const WAL_LIMIT_BYTES: u64 = 64 << 20;

/// The time between two checkpoints. Each copies and flushes what the WAL gained meanwhile:
/// a quarter of a second of heavy load costs the writer's commits less, while it is copied,
/// than a whole second's (measured: p99 9 ms against 16 ms at 24,000 callbacks/s).
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// A write waiting for the writer thread.
pub(super) trait Work: Send {
    /// Runs the write in the writer's transaction; false when it failed and its writes must be
    /// undone.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether the writer may undo it and run it again, so it needs no savepoint of its own
    /// unless a neighbour fails (see `run_batch`).
    fn repeatable(&self) -> bool;
    /// Answers the caller once the batch is committed and flushed, or has failed.
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

pub(super) type Job = Box<dyn Work>;

/// A write and where its answer goes.
pub(super) struct Write<F, R> {
    pub(super) f: F,
    pub(super) repeatable: bool,
    pub(super) result: Option<Result<R, StoreError>>,
    pub(super) reply: oneshot::Sender<Result<R, StoreError>>,
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
        let _ = reply.send(
            committed.and_then(|()| result.unwrap_or_else(|| Err(StoreError::unavailable("the write never ran")))),
        );
    }
}
/// Makes what was written to the WAL file durable: [`std::fs::File::sync_data`], but for tests.
pub(super) type Flush = fn(&std::fs::File) -> std::io::Result<()>;

/// The oldest SQLite this store runs on. Versions 3.7.0 to 3.51.2 can lose committed data when
/// a checkpoint starts just after another one completed while a third connection's commit
/// starts the WAL over (SQLite's "WAL-reset bug", fixed in 3.51.3): exactly how this store
/// works, with checkpoints on their own thread and the writer starting the WAL over.
pub(super) const OLDEST_SQLITE: i32 = 3_051_003;

/// Refuses a linked SQLite older than [`OLDEST_SQLITE`].
pub(super) fn check_sqlite_version(linked: i32) -> Result<(), StoreError> {
    if linked >= OLDEST_SQLITE {
        return Ok(());
    }
    let (major, minor, patch) = (linked / 1_000_000, linked / 1000 % 1000, linked % 1000);
    Err(StoreError::unavailable(format!(
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
pub(super) struct Lost {
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

pub(super) fn sql_error(e: rusqlite::Error) -> StoreError {
    let kind: fn(Detail) -> StoreError = match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict
        }
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt,
        _ => StoreError::Unavailable,
    };
    kind(Detail::caused_by(e.to_string(), e))
}

/// Opens a connection. It never checkpoints on close (see [`Lost`]): only the writer's may,
/// and only while nothing was lost.
pub(super) fn connect(path: &str) -> Result<Connection, StoreError> {
    let conn = if path == ":memory:" { Connection::open_in_memory() } else { Connection::open(path) }
        .map_err(|e| StoreError::unavailable(format!("cannot open SQLite database {path:?}: {e}")))?;
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
pub(super) fn close_without_checkpoint(conn: &Connection, refuse: bool) -> Result<(), StoreError> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, refuse)
        .map(|_| ())
        .map_err(sql_error)
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
pub(super) fn run_syncer(wal: &Path, flush: Flush, batches: &std::sync::mpsc::Receiver<Vec<Job>>, lost: &Lost) {
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
            job.answer(flushed.clone().map_err(|why| StoreError::Unavailable(why.into())));
        }
    }
}

/// Runs write batches until the store is dropped; once anything is lost, answers each job with
/// the reason instead of running it, and closes its connection without a checkpoint.
pub(super) fn run_writer(
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
                job.answer(Err(StoreError::unavailable(why)));
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
            job.answer(committed.clone().map_err(|why| StoreError::Unavailable(why.into())));
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
pub(super) fn run_batch(conn: &Connection, batch: &mut [Job]) -> rusqlite::Result<()> {
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
pub(super) fn in_savepoint(conn: &Connection, job: &mut Job) -> rusqlite::Result<()> {
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
    pub(super) async fn open_with(
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
                    .map_err(|e| StoreError::unavailable(format!("cannot create {}: {e}", dir.display())))?;
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
        .map_err(StoreError::unavailable)??;
        let lost = Arc::new(Lost::default());
        let syncer = match wal {
            Some(wal) => {
                let (syncer, batches) = std::sync::mpsc::channel();
                let lost = lost.clone();
                std::thread::Builder::new()
                    .name("lipa-sqlite-sync".into())
                    .spawn(move || run_syncer(&wal, flush, &batches, &lost))
                    .map_err(StoreError::unavailable)?;
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
            .map_err(StoreError::unavailable)?;
        if let Some(checkpointer) = checkpointer {
            let (alive, lost) = (writer.downgrade(), lost.clone());
            std::thread::Builder::new()
                .name("lipa-sqlite-checkpoint".into())
                .spawn(move || {
                    run_checkpoints(checkpointer, wal_limit, checkpoint_every, flush, &finish_wanted, &alive, &lost)
                })
                .map_err(StoreError::unavailable)?;
        }
        let reading = Arc::new(tokio::sync::Semaphore::new(READERS));
        Ok(Self { writer, readers: Arc::new(Mutex::new(readers)), path: path.into(), lost, reading })
    }

    /// Runs `f` inside the writer's transaction; answers once the commit is on disk.
    pub(super) async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let mut f = Some(f);
        let once = move |conn: &Connection| {
            f.take().map_or_else(|| Err(StoreError::unavailable("a write ran twice")), |f| f(conn))
        };
        self.submit(once, false).await
    }

    /// [`Self::write`] for a write the writer may undo and run again (see `run_batch`): it
    /// must have no effect outside the database, and may not count on running only once.
    pub(super) async fn write_repeatable<R: Send + 'static>(
        &self,
        f: impl FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit(f, true).await
    }

    pub(super) async fn submit<R: Send + 'static>(
        &self,
        f: impl FnMut(&Connection) -> Result<R, StoreError> + Send + 'static,
        repeatable: bool,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.kept()?;
        let job: Job = Box::new(Write { f, repeatable, result: None, reply });
        self.writer.send(job).map_err(|_| StoreError::unavailable("the database writer has stopped"))?;
        answer.await.map_err(|_| StoreError::unavailable("the database writer stopped before committing"))?
    }

    /// Runs `f` on a reader connection on the blocking pool.
    pub(super) async fn read<R: Send + 'static>(
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
        let turn = self.reading.clone().acquire_owned().await.map_err(StoreError::unavailable)?;
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
        .map_err(StoreError::unavailable)?
    }

    /// Fails once a flush has failed (see [`Lost`]): no write is taken until a restart.
    pub(super) fn kept(&self) -> Result<(), StoreError> {
        self.lost.get().map_or(Ok(()), |why| Err(StoreError::unavailable(why)))
    }

    /// Completes once a flush has failed, with the reason; the process should then stop
    /// without closing the store (see [`Lost`]).
    pub(crate) async fn durability_lost(&self) -> String {
        self.lost.wait().await
    }
}
