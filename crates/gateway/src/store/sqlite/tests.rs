//! The SQLite engine's own tests: migrations, group commit, durability and checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

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
        c.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'callbacks_outcome'", [], |r| r.get(0)).unwrap()
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
        let ops = stmt
            .query_map(rusqlite::params_from_iter(vec![rusqlite::types::Value::Null; n]), |r| r.get::<_, String>(1));
        ops.unwrap().filter(|op| op.as_deref() == Ok("OpenEphemeral")).count()
    };
    assert_eq!(temporary_tables(&other, INSERT_WEBHOOK_EVENT), 1, "version 5 builds one");
    migrate(&conn).unwrap();
    // The other connection's next statement sees the schema version changed and reads
    // the definitions again.
    assert_eq!(callback(&other), 3, "ids go on from the last one");
    for c in [&conn, &other] {
        for sql in
            SETTLE.iter().map(String::as_str).chain([INSERT_CALLBACK, INSERT_EVENT, INSERT_WEBHOOK_EVENT, INSERT_EMAIL])
        {
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
    let answered: Vec<_> = answers.into_iter().map(|mut a| a.try_recv().unwrap().map_err(|e| e.to_string())).collect();
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

    let store = SqliteStore::open_with(&path, WAL_LIMIT_BYTES, Duration::from_secs(60), failing_once).await.unwrap();
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
        store.write(|c| exec(c, "INSERT INTO t (x) VALUES (randomblob(500))", []).map_err(sql_error)).await.unwrap();
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
        store.write(|c| exec(c, "INSERT INTO t (x) VALUES (randomblob(1500))", []).map_err(sql_error)).await.unwrap();
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
    let store =
        SqliteStore::open_with(&path, WAL_LIMIT_BYTES, Duration::from_millis(10), failing_wal_on_demand).await.unwrap();
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
    assert!(std::fs::read(&path).unwrap() == db_file, "a checkpoint copied into the database file after the failure");
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
                        .write(|c| exec(c, "INSERT INTO filler (body) VALUES (zeroblob(2000))", []).map_err(sql_error))
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

/// A store error says what went wrong and keeps the database's own error behind it.
#[tokio::test]
async fn a_store_error_keeps_the_database_error_behind_it() {
    use std::error::Error as _;
    let store = crate::store::Store::open("sqlite::memory:").await.unwrap();
    let key = |id: &str| crate::store::ApiKey {
        id: id.into(),
        name: "same".into(),
        prefix: "lipa_sk_0000".into(),
        created_at: 1,
        revoked_at: None,
        display_name: None,
    };
    store.insert_api_key(key("key_1"), "hash".into()).await.unwrap();
    let err = store.insert_api_key(key("key_2"), "hash".into()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let cause = err.source().and_then(|detail| detail.source()).expect("the database's error is kept");
    assert!(cause.downcast_ref::<rusqlite::Error>().is_some(), "{cause:?}");
    assert!(err.to_string().contains("UNIQUE"), "{err}");
}
