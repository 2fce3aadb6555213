//! When the database cannot commit, callbacks are answered 503 and not acknowledged; once it
//! recovers, the sender's retry is accepted and applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::spawn_app_with;
use daraja_sim::{Answer, Faults, SimConfig};

#[tokio::test]
async fn a_locked_database_gets_503_and_the_retry_after_recovery_is_applied() {
    if common::on_postgres() {
        common::skipped(format_args!("skipped on PostgreSQL: this outage is SQLite's file lock"));
        return;
    }
    let faults = Faults { retries: 20, retry_backoff: Duration::from_millis(200), ..Faults::default() };
    let app = spawn_app_with(SimConfig { faults, ..SimConfig::interactive() }, |_| {}).await;
    let created = app.create("0712345678", 45).await;
    let id = created["id"].as_str().unwrap();
    let checkout = created["checkout_request_id"].as_str().unwrap();

    // Another process takes the database's write lock and keeps it.
    let db = app.db_path();
    let (locked, lock_taken) = std::sync::mpsc::channel();
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(7));
        conn.execute_batch("COMMIT").unwrap();
    });
    lock_taken.recv().unwrap();
    assert!(app.sim.sim().resolve(checkout, Answer::Approve));

    let first = &app.callback_attempts(checkout, 1).await[0];
    assert_eq!(first.status, Some(503), "not acknowledged while the database is locked");
    assert_eq!(app.payment(id).await["status"], "pending");

    locker.join().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !app.sim.sim().callback_attempts_for(checkout).iter().any(|a| a.status == Some(200)) {
        assert!(tokio::time::Instant::now() < deadline, "no acknowledged retry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = app.payment(id).await;
    assert_eq!(p["status"], "paid");
    let kinds = app.timeline(id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "callback_applied").count(), 1);
}
