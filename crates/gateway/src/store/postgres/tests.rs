use super::*;

/// The test server (`LIPA_TEST_POSTGRES_URL`), or `None` after saying the test is skipped
/// (a failure when `LIPA_REQUIRE_ALL=1`).
fn server(test: &str) -> Option<String> {
    let url = std::env::var("LIPA_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        assert!(
            std::env::var("LIPA_REQUIRE_ALL").as_deref() != Ok("1"),
            "{test}: LIPA_REQUIRE_ALL=1 but LIPA_TEST_POSTGRES_URL is not set"
        );
        // Straight to stderr: the test harness captures eprintln!, and a skip must show.
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("{test}: skipped (set LIPA_TEST_POSTGRES_URL to run it against PostgreSQL)\n"),
        );
    }
    url
}

/// A database whose default is `synchronous_commit = off`: COMMIT would return before the
/// WAL is flushed, and a server crash would lose acknowledged callbacks. Every connection
/// of the store's pool commits synchronously all the same.
#[tokio::test]
async fn every_connection_commits_synchronously_whatever_the_database_default() {
    let Some(admin) = server("every_connection_commits_synchronously_whatever_the_database_default") else {
        return;
    };
    let name = format!("lipa_t_{}", crate::ids::random_hex(6));
    let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    client.batch_execute(&format!("ALTER DATABASE {name} SET synchronous_commit = off")).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base));

    let (plain, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let default: String = plain.query_one("SHOW synchronous_commit", &[]).await.unwrap().get(0);
    assert_eq!(default, "off", "the database's default applies to a connection of its own");

    let store = PostgresStore::open(&url).await.unwrap();
    // Several connections held at once, so each is a different one of the pool's.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(store.client().await.unwrap());
    }
    for client in &held {
        let setting: String = client.query_one("SHOW synchronous_commit", &[]).await.unwrap().get(0);
        assert_eq!(setting, "on");
    }
    drop(held);
    store.ping().await.unwrap();
    drop((store, plain));
    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Where the `SET` cannot hold (a pooler in transaction mode hands later statements to
/// other server connections), the store says so instead of acknowledging undurable commits.
#[tokio::test]
async fn a_connection_that_commits_asynchronously_is_refused() {
    let Some(admin) = server("a_connection_that_commits_asynchronously_is_refused") else {
        return;
    };
    let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.unwrap();
    tokio::spawn(conn);
    commits_durably(&client).await.unwrap();
    client.batch_execute("SET synchronous_commit = off").await.unwrap();
    let refused = commits_durably(&client).await.unwrap_err().to_string();
    assert!(refused.contains("synchronous_commit = off") && refused.contains("session mode"), "{refused}");
}
