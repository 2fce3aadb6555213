//! `spawn_app()`: a gateway on 127.0.0.1:0 with its own SQLite file, its own simulator, an API
//! key and a clock the test moves. Workers are driven step by step, never by sleeping.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod smtp;
pub mod webdriver;

use daraja::Clock;
use daraja_sim::{SimConfig, SimHandle};
use lipa_gateway::config::{DarajaConnection, Settings};
use lipa_gateway::service::Gateway;
use lipa_gateway::startup::Application;
use serde_json::{Value, json};
use time::OffsetDateTime;

#[derive(Debug)]
pub struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    pub fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

pub struct TestApp {
    pub base: String,
    pub gateway: Gateway,
    pub sim: SimHandle,
    pub key: String,
    pub http: reqwest::Client,
    pub clock: Arc<TestClock>,
    dir: PathBuf,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Says a test is skipped, in a plain `cargo test` too: straight to stderr, as the test
/// harness captures `eprintln!`.
pub fn skipped(why: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{why}");
}

/// The PostgreSQL server to test against, if any (`LIPA_TEST_POSTGRES_URL`).
pub fn postgres_url() -> Option<String> {
    std::env::var("LIPA_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

/// Whether the black-box suites run on PostgreSQL (`LIPA_TEST_DATABASE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("LIPA_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// A fresh, empty PostgreSQL database on the test server; returns its URL.
pub fn fresh_postgres_database() -> String {
    let admin = postgres_url().expect("LIPA_TEST_DATABASE=postgres needs LIPA_TEST_POSTGRES_URL");
    let name = format!("lipa_t_{}", lipa_gateway::ids::random_hex(6));
    let admin_for_thread = admin.clone();
    let name_for_thread = name.clone();
    // A runtime of its own, so this works from sync and async callers alike.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&admin_for_thread, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client.batch_execute(&format!("CREATE DATABASE {name_for_thread}")).await.unwrap();
        });
    })
    .join()
    .unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base).to_owned();
    format!("{base}/{name}")
}

pub fn settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::load(None, &|_| None).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.database_url =
        if on_postgres() { fresh_postgres_database() } else { format!("sqlite:{}", dir.join("lipa.db").display()) };
    // The tests' webhook receivers listen on loopback.
    settings.webhooks.allow_private = true;
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(SimConfig::default(), |_| {}).await
}

pub async fn spawn_app_with(sim_config: SimConfig, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_through(sim_config, tweak, None).await
}

/// A gateway whose STK pushes get their answer from the simulator only after `push_delay`
/// (a proxy holds them), as a slow Daraja does.
pub async fn spawn_app_with_slow_pushes(sim_config: SimConfig, push_delay: Duration) -> TestApp {
    spawn_app_through(sim_config, |_| {}, Some(Proxy { push_delay, ..Proxy::default() })).await
}

/// A gateway whose STK Query answers from the simulator pass through `rewrite` on the way, as
/// a faulty Daraja or a mix-up on the network would change them.
pub async fn spawn_app_with_query_answers(sim_config: SimConfig, rewrite: fn(&mut Value)) -> TestApp {
    spawn_app_through(sim_config, |_| {}, Some(Proxy { rewrite_query: Some(rewrite), ..Proxy::default() })).await
}

/// What a proxy between the gateway and the simulator does to Daraja's answers.
#[derive(Default, Clone, Copy)]
struct Proxy {
    /// Holds each STK push's answer this long.
    push_delay: Duration,
    /// Changes each STK Query's JSON answer.
    rewrite_query: Option<fn(&mut Value)>,
}

async fn spawn_app_through(sim_config: SimConfig, tweak: impl FnOnce(&mut Settings), proxy: Option<Proxy>) -> TestApp {
    let dir = std::env::temp_dir().join(format!("lipa-test-{}", lipa_gateway::ids::random_hex(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let mut settings = settings(&dir);
    tweak(&mut settings);
    let sim = daraja_sim::spawn(sim_config).await.unwrap();
    let daraja_url = match proxy {
        Some(proxy) => proxying(sim.base_url().to_owned(), proxy).await,
        None => sim.base_url().to_owned(),
    };
    let connection = DarajaConnection::custom(
        &daraja_url,
        sim.consumer_key(),
        sim.consumer_secret(),
        sim.shortcode(),
        sim.passkey(),
    )
    .unwrap();
    let connection = match sim.sim().config().initiators.first() {
        Some(who) => {
            connection.with_initiator_from(&who.name, &who.password, daraja_sim::CERTIFICATE_PEM.as_bytes()).unwrap()
        }
        None => connection,
    };
    let clock = Arc::new(TestClock(Mutex::new(OffsetDateTime::now_utc())));
    let app = Application::build(settings, connection, clock.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let gateway = app.gateway().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (_, key) = lipa_gateway::keys::create(gateway.store(), "test shop", gateway.now()).await.unwrap();
    TestApp { base, gateway, sim, key, http: reqwest::Client::new(), clock, dir }
}

/// An HTTP proxy to `target` that does what `proxy` says to Daraja's answers; returns its URL.
async fn proxying(target: String, proxy: Proxy) -> String {
    use axum::body::Body;
    use axum::http::Request;
    let http = reqwest::Client::new();
    let forward = move |request: Request<Body>| {
        let (http, target) = (http.clone(), target.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let mut out = http.request(parts.method.clone(), format!("{target}{}", parts.uri));
            for (name, value) in &parts.headers {
                if name != "host" {
                    out = out.header(name, value);
                }
            }
            let answer = out.body(body).send().await.unwrap();
            if parts.uri.path().contains("stkpush/") {
                tokio::time::sleep(proxy.push_delay).await;
            }
            let status = answer.status();
            let mut headers = answer.headers().clone();
            let mut bytes = answer.bytes().await.unwrap().to_vec();
            if let Some(rewrite) = proxy.rewrite_query.filter(|_| parts.uri.path().contains("stkpushquery"))
                && let Ok(mut json) = serde_json::from_slice::<Value>(&bytes)
            {
                rewrite(&mut json);
                bytes = serde_json::to_vec(&json).unwrap();
                headers.remove("content-length");
            }
            let mut response = axum::response::Response::new(Body::from(bytes));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(forward)).await });
    url
}

pub fn payment_body(phone: &str, amount: u64) -> Value {
    json!({"amount": amount, "phone": phone, "account_reference": "TICKET-42", "description": "Movie ticket"})
}

impl TestApp {
    pub async fn post_payment(&self, body: &Value, idempotency_key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(format!("{}/v1/payments", self.base)).bearer_auth(&self.key).json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn create(&self, phone: &str, amount: u64) -> Value {
        let (status, body) = self.post_payment(&payment_body(phone, amount), None).await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn payment(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/payments/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// A page of the admin dashboard, fetched as a signed-in admin (created on first use).
    pub async fn admin_page(&self, path: &str) -> String {
        use lipa_gateway::store::admin::Role;
        let store = self.gateway.store();
        if store.admin_user("tester").await.unwrap().is_none() {
            let now = self.gateway.now();
            lipa_gateway::admin::auth::create_user(store, "tester", "a long test password", Role::Admin, now)
                .await
                .unwrap();
        }
        let user = store.admin_user("tester").await.unwrap().unwrap();
        let cookie = lipa_gateway::admin::auth::start_session(&self.gateway, &user).await.unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let page = self.http.get(format!("{}{path}", self.base)).header("Cookie", cookie).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200, "{path}");
        page.text().await.unwrap()
    }

    pub async fn timeline(&self, id: &str) -> Vec<String> {
        let (_, body) = self.get(&format!("/v1/payments/{id}/timeline")).await;
        body["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
    }

    /// Waits (at most 5 s) until the payment leaves `pending`.
    pub async fn settled(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let p = self.payment(id).await;
            if p["status"] != "pending" {
                return p;
            }
            assert!(tokio::time::Instant::now() < deadline, "payment {id} still pending: {p}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (at most 10 s: a locked database answers after its 5 s busy timeout) until the
    /// simulator has recorded `n` delivery attempts for a payment.
    pub async fn callback_attempts(&self, checkout_request_id: &str, n: usize) -> Vec<daraja_sim::CallbackAttempt> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let attempts = self.sim.sim().callback_attempts_for(checkout_request_id);
            if attempts.len() >= n {
                return attempts;
            }
            assert!(tokio::time::Instant::now() < deadline, "only {} attempts", attempts.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("lipa.db")
    }

    pub async fn reconcile(&self) -> lipa_gateway::reconciliation::Step {
        lipa_gateway::reconciliation::step(&self.gateway, 100).await.unwrap()
    }
}

/// Runs the futures concurrently on the current task and collects their outputs in order.
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = futures.into_iter().map(|f| Box::pin(f)).collect();
    // Poll them concurrently on this task.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    for r in results {
        out.extend(r);
    }
    out
}

/// A payment row for store-level tests: amount 45 from `phone`, callback token `token`.
pub fn new_payment(phone: &str, token: &str) -> lipa_gateway::store::NewPayment {
    lipa_gateway::store::NewPayment {
        id: lipa_gateway::payment::PaymentId::generate(),
        api_key_id: "key_test".into(),
        idempotency_key: None,
        request_hash: "h".into(),
        amount: daraja::Amount::new(45).unwrap(),
        phone: daraja::Msisdn::parse(phone).unwrap(),
        account_reference: "REF".into(),
        description: "d".into(),
        metadata: serde_json::json!({"order": 7}),
        webhook_url: None,
        customer_email: None,
        callback_token_hash: lipa_gateway::ids::sha256_hex(token.as_bytes()),
        now: 1_000,
        live_prompt_since: 0,
        per_phone_since: 0,
        per_phone_limit: 100,
        checkout: None,
    }
}
