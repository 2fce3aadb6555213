//! `lipa admin create-user`: the password from standard input, the rules it enforces, and a
//! user that can then sign in to the dashboard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};

fn create_user(database_url: &str, args: &[&str], password: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lipa"))
        .args(["admin", "create-user"])
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("LIPA_CONFIG", "/nonexistent/lipa.toml")
        .env("LIPA_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn users_are_created_from_stdin_with_their_role_and_the_rules_say_what_is_wrong() {
    let dir = std::env::temp_dir().join(format!("lipa-admin-cli-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("lipa.db").display());

    let (ok, out) = create_user(&url, &["ops", "--role", "viewer"], "a long enough password");
    assert!(ok, "{out}");
    assert!(out.contains("viewer"), "{out}");
    let (ok, out) = create_user(&url, &["ops"], "another long password");
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = create_user(&url, &["short"], "tiny");
    assert!(!ok && out.contains("at least 10 characters"), "{out}");
    let (ok, out) = create_user(&url, &["bad name!"], "a long enough password");
    assert!(!ok && out.contains("letters, digits"), "{out}");
    let (ok, out) = create_user(&url, &["x", "--role", "root"], "a long enough password");
    assert!(!ok && out.contains("admin or viewer"), "{out}");

    let store = lipa_gateway::store::Store::open(&url).await.unwrap();
    let user = store.admin_user("ops").await.unwrap().unwrap();
    assert_eq!(user.role, lipa_gateway::store::admin::Role::Viewer);
    assert!(lipa_gateway::admin::auth::verify_password(&user.password_hash, "a long enough password"));
    assert!(!format!("{user:?}").contains(&user.password_hash), "the hash stays out of Debug output");
    let _ = std::fs::remove_dir_all(dir);
}
