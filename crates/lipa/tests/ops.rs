//! The operator CLI against real servers: `push` in simulator mode, `payments`, `export`,
//! `callbacks list|replay` and `reconcile` on a gateway's database with its simulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};
use std::sync::Arc;

use daraja_sim::SimConfig;
use lipa_gateway::config::{DarajaConnection, Settings};
use lipa_gateway::startup::Application;

fn lipa(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lipa"))
        .args(args)
        .envs(envs.iter().copied())
        .env("LIPA_CONFIG", "/nonexistent/lipa.toml")
        .env("LIPA_LOG", "error")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn push_in_simulator_mode_reports_paid_or_exits_3() {
    let paid = lipa(&["push", "--phone", "0712 345 678", "--amount", "1", "--json", "--wait", "20"], &[]);
    assert!(paid.status.success(), "{}", text(&paid));
    let answer: serde_json::Value = serde_json::from_slice(&paid.stdout).unwrap();
    assert_eq!(answer["paid"], true, "{answer}");

    let cancelled = lipa(&["push", "--phone", "0700001032", "--amount", "1", "--wait", "20"], &[]);
    assert_eq!(cancelled.status.code(), Some(3), "{}", text(&cancelled));
    assert!(text(&cancelled).contains("1032"));

    let bad = lipa(&["push", "--phone", "12345", "--amount", "1"], &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("--phone"), "{}", text(&bad));
}

/// `lipa config check` names the database it checks without its password, whether in the user
/// info or the query.
#[test]
fn config_check_shows_the_database_without_its_password() {
    let out = lipa(
        &["config", "check"],
        &[("DATABASE_URL", "postgres://lipa:db-pw-2718@127.0.0.1:9/lipa?password=qs-pw-3141")],
    );
    let said = text(&out);
    assert!(said.contains("127.0.0.1:9"), "{said}");
    assert!(!said.contains("db-pw-2718") && !said.contains("qs-pw-3141"), "{said}");
}

/// `serve` and `work` refuse a database that keeps nothing across a restart, before binding
/// anything: every callback they acknowledged would be gone at the next start.
#[test]
fn serve_and_work_refuse_an_in_memory_database() {
    for role in [&["serve", "--listen", "127.0.0.1:0", "--sim-port", "0"][..], &["work"][..]] {
        let out = lipa(role, &[("DATABASE_URL", "sqlite::memory:"), ("MPESA_BASE_URL", "http://127.0.0.1:9")]);
        assert_eq!(out.status.code(), Some(1), "{role:?}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains("DATABASE_URL") && said.contains("in-memory"), "{role:?}: {said}");
        assert!(!said.contains("listening"), "{role:?} started: {said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_export_callbacks_and_reconcile_work_on_a_gateway_database() {
    let dir = std::env::temp_dir().join(format!("lipa-ops-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite:{}", dir.join("lipa.db").display());
    let sim = daraja_sim::spawn(SimConfig::default()).await.unwrap();
    let connection = DarajaConnection::custom(
        sim.base_url(),
        sim.consumer_key(),
        sim.consumer_secret(),
        sim.shortcode(),
        sim.passkey(),
    )
    .unwrap();
    let mut settings = Settings::load(None, &|_| None).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.database_url = db.clone();
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock)).await.unwrap();
    let base = format!("http://{}", app.addr());
    let gateway = app.gateway().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (_, key) = lipa_gateway::keys::create(gateway.store(), "ops", gateway.now()).await.unwrap();
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    // 254700090001 approves but never calls back: only a query can tell.
    for phone in ["0712345678", "0700001032", "0700090001"] {
        let body = serde_json::json!({"amount": 45, "phone": phone, "account_reference": "OPS", "description": "ops"});
        let p = json(http.post(format!("{base}/v1/payments")).bearer_auth(&key).json(&body)).await;
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    // The first two settle by their callbacks.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for (id, status) in [(&ids[0], "paid"), (&ids[1], "failed")] {
        loop {
            let p = json(http.get(format!("{base}/v1/payments/{id}")).bearer_auth(&key)).await;
            if p["status"] == status {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{id} is not {status}: {p}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // A callback for no payment: an orphan.
    http.post(format!("{base}/callbacks/stk/{}", "f".repeat(32))).body("{\"Body\":{}}").send().await.unwrap();

    // The CLI runs as a child process; this test's runtime has a second thread to serve it.
    let env = [("DATABASE_URL", db.as_str())];
    let out = lipa(&["payments", "list", "--json"], &env);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3, "{}", text(&out));
    let err = lipa(&["payments", "list", "--status", "nonsense"], &env);
    assert!(!err.status.success() && text(&err).contains("use pending, paid"), "{}", text(&err));
    let show = lipa(&["payments", "show", &ids[0]], &env);
    assert!(text(&show).contains("callback_applied"), "{}", text(&show));
    let csv = lipa(&["export", "--status", "paid"], &env);
    assert_eq!(String::from_utf8_lossy(&csv.stdout).lines().count(), 2, "header and the one paid: {}", text(&csv));
    let orphans = lipa(&["callbacks", "list", "--malformed", "--json"], &env);
    let orphan: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&orphans.stdout).lines().next().unwrap()).unwrap();
    let callback_id = orphan["id"].as_i64().unwrap().to_string();
    let replay = lipa(&["callbacks", "replay", &callback_id], &env);

    let (shortcode, base_url) = (sim.shortcode().to_string(), sim.base_url().to_owned());
    let sim_env = [
        ("DATABASE_URL", db.as_str()),
        ("MPESA_ENVIRONMENT", "simulator"),
        ("MPESA_BASE_URL", base_url.as_str()),
        ("MPESA_CONSUMER_KEY", sim.consumer_key()),
        ("MPESA_CONSUMER_SECRET", sim.consumer_secret()),
        ("MPESA_SHORTCODE", shortcode.as_str()),
        ("MPESA_PASSKEY", sim.passkey()),
    ];
    let reconcile = lipa(&["reconcile", "--since", "1h", "--json"], &sim_env);
    assert!(text(&replay).contains("malformed"), "{}", text(&replay));
    assert!(reconcile.status.success(), "{}", text(&reconcile));
    let summary: serde_json::Value = serde_json::from_slice(&reconcile.stdout).unwrap();
    assert_eq!(summary["queried"], 1, "{summary}");
    assert_eq!(summary["outcomes"]["paid"], 1, "{summary}");
    let settled = gateway
        .store()
        .payment(&lipa_gateway::payment::PaymentId::parse(&ids[2]).unwrap(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.status, lipa_gateway::payment::Status::Paid);
    let _ = std::fs::remove_dir_all(dir);
}

async fn json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// `lipa c2b register` sends this installation's secret C2B URLs once; in production it
/// refuses a second registration without --force, and explains Daraja's refusal with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2b_register_sends_the_urls_once_in_production() {
    let dir = std::env::temp_dir().join(format!("lipa-c2b-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite:{}", dir.join("lipa.db").display());
    let mut config = SimConfig { register_once: true, ..SimConfig::default() };
    config.merchants[0].shortcode = 600_123;
    config.merchants[0].passkey = "a-live-passkey-the-sandbox-does-not-have".into();
    let sim = daraja_sim::spawn(config).await.unwrap();
    let shortcode = sim.shortcode().to_string();
    let envs = [
        ("DATABASE_URL", db.as_str()),
        ("CALLBACK_BASE_URL", "https://pay.shop.example"),
        ("MPESA_ENVIRONMENT", "production"),
        ("MPESA_BASE_URL", sim.base_url()),
        ("MPESA_CONSUMER_KEY", sim.consumer_key()),
        ("MPESA_CONSUMER_SECRET", sim.consumer_secret()),
        ("MPESA_SHORTCODE", shortcode.as_str()),
        ("MPESA_PASSKEY", sim.passkey()),
    ];
    let run = |args: &'static [&'static str]| {
        let envs = envs.map(|(k, v)| (k, v.to_owned()));
        tokio::task::spawn_blocking(move || {
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            lipa(args, &envs)
        })
    };
    let first = run(&["c2b", "register"]).await.unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert!(!text(&first).contains("/callbacks/c2b/"), "the secret path is not printed: {}", text(&first));
    let registered = sim.sim().c2b_registrations();
    assert_eq!(registered.len(), 1);
    assert!(registered[0].confirmation_url.starts_with("https://pay.shop.example/callbacks/c2b/"), "{registered:?}");
    assert!(registered[0].validation_url.ends_with("/validation"));

    let again = run(&["c2b", "register"]).await.unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("--force"), "{}", text(&again));
    let forced = run(&["c2b", "register", "--force"]).await.unwrap();
    assert_eq!(forced.status.code(), Some(1));
    assert!(text(&forced).contains("already registered") && text(&forced).contains("support"), "{}", text(&forced));

    let listed = run(&["c2b", "list", "--status", "unmatched"]).await.unwrap();
    assert!(listed.status.success() && text(&listed).contains("No payments by hand"), "{}", text(&listed));
}

/// `lipa receipts check` asks M-PESA about a receipt; the answer reaches the running gateway
/// (here `lipa serve` against a simulator in this test) and the command prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_check_prints_what_m_pesa_says_about_a_receipt() {
    let dir = std::env::temp_dir().join(format!("lipa-receipts-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite:{}", dir.join("lipa.db").display());
    let sim = daraja_sim::spawn(SimConfig::default()).await.unwrap();
    let paid = sim
        .sim()
        .c2b_pay(daraja_sim::ManualPayment {
            shortcode: sim.shortcode(),
            account: "ANYTHING".into(),
            amount: 65,
            phone: "0712345678".into(),
            pin: None,
            faults: None,
        })
        .await
        .unwrap();
    let (shortcode, base_url) = (sim.shortcode().to_string(), sim.base_url().to_owned());
    let mut env = vec![
        ("DATABASE_URL", db.clone()),
        ("MPESA_ENVIRONMENT", "simulator".to_owned()),
        ("MPESA_BASE_URL", base_url),
        ("MPESA_CONSUMER_KEY", sim.consumer_key().to_owned()),
        ("MPESA_CONSUMER_SECRET", sim.consumer_secret().to_owned()),
        ("MPESA_SHORTCODE", shortcode),
        ("MPESA_PASSKEY", sim.passkey().to_owned()),
    ];
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut serve, base) = common::start(&["serve", "--listen", "127.0.0.1:0"], &borrowed, "Lipa gateway listening");
    env.push(("CALLBACK_BASE_URL", base));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let found = lipa(&["receipts", "check", &paid.trans_id, "--wait", "20"], &env);
    assert!(found.status.success(), "{}", text(&found));
    assert!(text(&found).contains("M-PESA knows it") && text(&found).contains("65"), "{}", text(&found));
    let unknown = lipa(&["receipts", "check", "SXX0000000", "--wait", "20", "--json"], &env);
    let check: serde_json::Value = serde_json::from_slice(&unknown.stdout).unwrap();
    assert_eq!(check["status"], "not_found", "{check}");
    let bad = lipa(&["receipts", "check", "not-a-receipt"], &env);
    assert!(!bad.status.success() && text(&bad).contains("not an M-PESA receipt"), "{}", text(&bad));
    serve.kill().unwrap();
    serve.wait().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Logs carry colour codes only for a terminal: piped or written to a file they are plain text.
#[test]
fn logs_have_no_colour_codes_when_not_on_a_terminal() {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("lipa-ansi-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lipa"))
        .args(["serve", "--listen", "127.0.0.1:0", "--sim-port", "0"])
        .env("LIPA_LOG", "info")
        .env("LIPA_CONFIG", "/nonexistent/lipa.toml")
        .env("DATABASE_URL", format!("sqlite:{}", dir.join("lipa.db").display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let ready = line.starts_with("Lipa gateway listening");
        lines.push(line);
        if ready {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    assert!(lines.iter().any(|l| l.contains("SIMULATOR MODE")), "the log lines were read: {lines:#?}");
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_ends_open_event_streams_instead_of_waiting_for_them() {
    let dir = std::env::temp_dir().join(format!("lipa-stop-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite:{}", dir.join("lipa.db").display());
    let env = [("DATABASE_URL", database.as_str())];
    let created = lipa(&["keys", "create", "--name", "shop"], &env);
    assert!(created.status.success(), "{}", text(&created));
    let key = text(&created)
        .lines()
        .find_map(|l| l.trim().strip_prefix("API key"))
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let (mut serve, base) =
        common::start(&["serve", "--listen", "127.0.0.1:0", "--sim-port", "0"], &env, "Lipa gateway listening");

    // Approved, but its callback comes only after 120 s: the payment stays pending meanwhile.
    let http = reqwest::Client::new();
    let body =
        serde_json::json!({"amount": 10, "phone": "0700090002", "account_reference": "STOP", "description": "stop"});
    let payment = json(http.post(format!("{base}/v1/payments")).bearer_auth(&key).json(&body)).await;
    let id = payment["id"].as_str().unwrap();
    let mut events = http.get(format!("{base}/v1/payments/{id}/events")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let first = events.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("pending"), "{first:?}");

    let signalled = Command::new("kill").args(["-INT", &serve.id().to_string()]).status().unwrap();
    assert!(signalled.success());
    // The stream ends properly (its last chunk arrives) rather than being cut when the
    // process gives up waiting for it.
    loop {
        match events.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("the event stream was cut instead of ended: {e}"),
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "lipa serve did not stop");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_keys_display_name_is_set_listed_and_refused_when_unfit() {
    let dir = std::env::temp_dir().join(format!("lipa-names-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite:{}", dir.join("lipa.db").display());
    let env = [("DATABASE_URL", database.as_str())];
    let created = lipa(&["keys", "create", "--name", "shop", "--display-name", "Lipa Cinema"], &env);
    assert!(created.status.success(), "{}", text(&created));
    let listed = lipa(&["keys", "list"], &env);
    assert!(text(&listed).contains("shown as \"Lipa Cinema\""), "{}", text(&listed));
    let renamed = lipa(&["keys", "set-display-name", "shop", "Sinema Yetu"], &env);
    assert!(renamed.status.success(), "{}", text(&renamed));
    assert!(text(&lipa(&["keys", "list"], &env)).contains("shown as \"Sinema Yetu\""));

    let too_long = "x".repeat(61);
    let refused = lipa(&["keys", "create", "--name", "other", "--display-name", &too_long], &env);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("--display-name: a display name has 1 to 60 characters"), "{}", text(&refused));
    let unknown = lipa(&["keys", "set-display-name", "nobody", "X"], &env);
    assert!(!unknown.status.success());
    assert!(text(&unknown).contains("no live API key with id or name \"nobody\""), "{}", text(&unknown));
    let _ = std::fs::remove_dir_all(dir);
}
