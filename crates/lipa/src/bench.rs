//! `lipa bench`: reproducible load measurements on loopback (figures go in BENCHMARKS.md).
//!
//! `lipa bench ingest` seeds payments straight into a fresh SQLite store, starts the gateway,
//! and POSTs one success callback per payment from `--connections` concurrent clients,
//! reporting throughput, latency percentiles and peak memory; then does the same against an
//! endpoint that parses and acknowledges without storing (the ceiling).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lipa_gateway::config::{DarajaConnection, Settings};
use lipa_gateway::ids;
use lipa_gateway::payment::PaymentId;
use lipa_gateway::startup::Application;
use lipa_gateway::store::{Inserted, NewPayment, PushResult, Store};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `lipa bench …`
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// `GET /v1/payments/{id}` latency on a database seeded by `scripts/seed-sqlite.py`.
    Lookups {
        /// The seeded database.
        #[arg(long)]
        database_url: String,
        /// How many payments the seed script stored.
        #[arg(long)]
        payments: usize,
        /// Lookups made (random payments).
        #[arg(long, default_value_t = 20_000)]
        lookups: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// The admin overview's latency and the CSV export's time and memory, on a database seeded
    /// by `scripts/seed-sqlite.py` (with `recent` so the payments fall in the overview's week).
    Admin {
        /// The seeded database.
        #[arg(long)]
        database_url: String,
        /// Overview page loads measured.
        #[arg(long, default_value_t = 30)]
        requests: usize,
    },
    /// Payment creation through the API against the in-process simulator (zero delay).
    Payments {
        /// Payments created (each to its own phone).
        #[arg(long, default_value_t = 10_000)]
        payments: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// What outsiders with no key and no session can cost a running gateway: floods of the
    /// sign-in form, of callbacks no payment takes and of bad API keys beside a legitimate
    /// client (see `crate::hostile`).
    Hostile(crate::hostile::HostileArgs),
    /// Callback ingest: durable settlement of one callback per payment.
    Ingest {
        /// Payments stored before the run (the run settles the last `--callbacks` of them).
        #[arg(long, default_value_t = 20_000)]
        payments: usize,
        /// Callbacks sent.
        #[arg(long, default_value_t = 20_000)]
        callbacks: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Only seed and serve on this port until Ctrl-C, for an outside load generator
        /// (`scripts/bench-ingest.sh` drives it with wrk).
        #[arg(long)]
        serve: Option<u16>,
        /// Use this (empty) database instead of a fresh SQLite file, e.g. postgres://…
        #[arg(long)]
        database_url: Option<String>,
        /// Keep the SQLite database in this directory (and leave it there afterwards).
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Paybill confirmation ingest: durable settlement of one C2B confirmation per payment,
    /// each paying its payment by its account number.
    Confirmations {
        /// Payments stored before the run, each paid by one confirmation.
        #[arg(long, default_value_t = 20_000)]
        payments: usize,
        /// Concurrent connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Use this (empty) database instead of a fresh SQLite file, e.g. postgres://…
        #[arg(long)]
        database_url: Option<String>,
    },
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Lookups { database_url, payments, lookups, connections } => {
            status_lookups(&database_url, payments, lookups, connections).await
        }
        BenchCommand::Payments { payments, connections } => create_payments(payments, connections).await,
        BenchCommand::Admin { database_url, requests } => admin(&database_url, requests).await,
        BenchCommand::Hostile(args) => crate::hostile::run(args).await,
        BenchCommand::Confirmations { payments, connections, database_url } => {
            confirmations(payments, connections, database_url).await
        }
        BenchCommand::Ingest { payments, callbacks, connections, serve, database_url, data_dir } => {
            let target = Target { serve, database_url, data_dir };
            ingest(payments, callbacks.min(payments), connections, target).await
        }
    }
}

pub(crate) fn token(i: usize) -> String {
    format!("{i:032x}")
}

pub(crate) fn body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":"m-{i}","CheckoutRequestID":"ws_CO_bench{i}","ResultCode":0,"ResultDesc":"The service request is processed successfully.","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":10.00}},{{"Name":"MpesaReceiptNumber","Value":"UB{i:08}"}},{{"Name":"Balance"}},{{"Name":"TransactionDate","Value":20261122101010}},{{"Name":"PhoneNumber","Value":2547{i:08}}}]}}}}}}}}"#
    )
    .into_bytes()
}

async fn seed(store: &Store, n: usize) -> Result<()> {
    let started = Instant::now();
    let mut pending = Vec::new();
    for i in 0..n {
        let store = store.clone();
        pending.push(tokio::spawn(async move {
            let new = NewPayment {
                id: PaymentId::generate(),
                api_key_id: "key_bench".into(),
                idempotency_key: None,
                request_hash: String::new(),
                amount: daraja::Amount::new(10)?,
                // A phone each, as real traffic has: PostgreSQL serialises inserts per phone.
                phone: daraja::Msisdn::parse(&format!("2547{i:08}"))?,
                account_reference: "BENCH".into(),
                description: "bench".into(),
                metadata: serde_json::json!({}),
                webhook_url: None,
                customer_email: None,
                callback_token_hash: ids::sha256_hex(token(i).as_bytes()),
                now: 0,
                live_prompt_since: i64::MAX,
                per_phone_since: i64::MAX,
                per_phone_limit: u32::MAX,
                checkout: None,
            };
            let Inserted::Created(p) = store.insert_payment(new).await? else {
                return Err("seed insert refused".into());
            };
            let accepted = PushResult::Accepted {
                merchant_request_id: daraja::MerchantRequestId::parse(&format!("m-{i}"))?,
                checkout_request_id: daraja::CheckoutRequestId::parse(&format!("ws_CO_bench{i}"))?,
                first_check_at: i64::MAX,
            };
            store.record_push(&p.id, accepted, 0).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
        if pending.len() >= 2_000 {
            for task in pending.drain(..) {
                task.await?.map_err(|e| e.to_string())?;
            }
        }
    }
    for task in pending {
        task.await?.map_err(|e| e.to_string())?;
    }
    println!("seeded {n} payments in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

struct Report {
    sent: usize,
    acknowledged: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn load(
    url_of: Arc<dyn Fn(usize) -> String + Send + Sync>,
    body_of: Arc<dyn Fn(usize) -> Vec<u8> + Send + Sync>,
    first: usize,
    count: usize,
    connections: usize,
) -> Report {
    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build().unwrap_or_default();
    let next = Arc::new(AtomicUsize::new(first));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let end = first + count;
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (http, next, acknowledged, url_of, body_of) =
                (http.clone(), next.clone(), acknowledged.clone(), url_of.clone(), body_of.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return latencies;
                    }
                    let t = Instant::now();
                    let ok = match http
                        .post(url_of(i))
                        .header("content-type", "application/json")
                        .body(body_of(i))
                        .send()
                        .await
                    {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    latencies.push(t.elapsed());
                    if ok {
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(count);
    for w in workers {
        latencies.extend(w.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Report { sent: count, acknowledged: acknowledged.load(Ordering::Relaxed), elapsed, latencies }
}

fn print(label: &str, unit: &str, r: &Report) {
    let pct = |p: f64| {
        let i = ((r.latencies.len() as f64 * p) as usize).min(r.latencies.len().saturating_sub(1));
        r.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{label:<28} {:>8.0} {unit}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} sent, {} acknowledged, {:.2} s)",
        r.acknowledged as f64 / r.elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        r.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        r.sent,
        r.acknowledged,
        r.elapsed.as_secs_f64()
    );
}

fn status_field(name: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(name)).map(|l| l[name.len() + 1..].trim().to_owned()))
        .unwrap_or_else(|| "unknown".into())
}

fn peak_rss() -> String {
    format!("peak {} (seeding included), now {}", status_field("VmHWM"), status_field("VmRSS"))
}

/// Where the bench runs.
struct Target {
    serve: Option<u16>,
    database_url: Option<String>,
    data_dir: Option<std::path::PathBuf>,
}

async fn ingest(payments: usize, callbacks: usize, connections: usize, target: Target) -> Result<()> {
    let Target { serve, database_url, data_dir } = target;
    let keep = data_dir.is_some();
    let dir = data_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("lipa-bench-{}", ids::random_hex(6))));
    std::fs::create_dir_all(&dir)?;
    let mut settings = Settings::load(None, &|_| None)?;
    settings.listen = format!("127.0.0.1:{}", serve.unwrap_or(0)).parse()?;
    settings.database_url = database_url.unwrap_or_else(|| format!("sqlite:{}", dir.join("lipa.db").display()));
    let backend = if settings.database_url.starts_with("sqlite:") {
        "SQLite (group commit, answered once the WAL is flushed)"
    } else {
        "PostgreSQL"
    };
    let store = Store::open(&settings.database_url).await?;
    seed(&store, payments).await?;
    drop(store);

    let connection = DarajaConnection::custom("http://127.0.0.1:9", "k", "s", 174379, "p")?;
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock)).await?;
    let base = format!("http://{}", app.addr());
    let gateway = app.gateway().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    if serve.is_some() {
        println!("serving {base} with {payments} payments; Ctrl-C to stop");
        crate::shutdown_signal().await;
        let settled = settled_count(&gateway).await?;
        println!("settled {settled} payments (paid by callback)");
        println!("RSS of the gateway process: {}", peak_rss());
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Ok(());
    }

    // The ceiling: the same parse and acknowledgement, no storage.
    let ceiling = axum::Router::new().route(
        "/callbacks/stk/{token}",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let _ = daraja::callback::parse(&body);
            daraja::callback::ACKNOWLEDGEMENT
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ceiling_base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, ceiling).await });

    println!("callback ingest on {backend}, {connections} connections, {payments} payments stored");
    let first = payments - callbacks;
    let stored = load(
        Arc::new(move |i| format!("{base}/callbacks/stk/{}", token(i))),
        Arc::new(body),
        first,
        callbacks,
        connections,
    )
    .await;
    print("gateway (durable ack)", "callbacks", &stored);
    let no_store = load(
        Arc::new(move |i| format!("{ceiling_base}/callbacks/stk/{}", token(i))),
        Arc::new(body),
        first,
        callbacks,
        connections,
    )
    .await;
    print("ceiling (parse + ack only)", "callbacks", &no_store);
    println!("peak RSS of the whole process (gateway + load generator): {}", peak_rss());

    let settled = settled_count(&gateway).await?;
    println!("check: {settled} payments paid, {} callbacks acknowledged", stored.acknowledged);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Paybill confirmations through the HTTP path, each paying one seeded payment by its account
/// number: stored once per TransID, settled, acknowledged after the commit.
async fn confirmations(payments: usize, connections: usize, database_url: Option<String>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("lipa-bench-{}", ids::random_hex(6)));
    std::fs::create_dir_all(&dir)?;
    let mut settings = Settings::load(None, &|_| None)?;
    settings.listen = "127.0.0.1:0".parse()?;
    settings.database_url = database_url.unwrap_or_else(|| format!("sqlite:{}", dir.join("lipa.db").display()));
    let store = Store::open(&settings.database_url).await?;
    seed(&store, payments).await?;
    // Seeded with time 0: made now, so they can be paid by hand.
    let now = lipa_gateway::time_fmt::to_millis(time::OffsetDateTime::now_utc());
    store.execute_all(vec![("UPDATE payments SET created_at = $1", vec![now.into()])]).await?;
    // Seeded payment i has the phone 2547{i:08}: its account number, by index.
    let mut accounts = vec![String::new(); payments];
    for row in store.query("SELECT phone, paybill_account FROM payments", vec![]).await? {
        let i = row[0].text().parse::<usize>().unwrap_or(0).saturating_sub(254_700_000_000);
        if let Some(slot) = accounts.get_mut(i) {
            *slot = row[1].text();
        }
    }
    drop(store);
    let connection = DarajaConnection::custom("http://127.0.0.1:9", "k", "s", 174379, "p")?;
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock)).await?;
    let gateway = app.gateway().clone();
    let (url, _) = gateway.c2b_urls().ok_or("no C2B path")?;
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let accounts = Arc::new(accounts);
    let body_of = move |i: usize| {
        format!(
            r#"{{"TransactionType":"Pay Bill","TransID":"UC{i:08}","TransTime":"20261122101010","TransAmount":"10.00","BusinessShortCode":"174379","BillRefNumber":"{}","InvoiceNumber":"","OrgAccountBalance":"","ThirdPartyTransID":"","MSISDN":"2547{i:08}","FirstName":"A","MiddleName":"","LastName":"B"}}"#,
            accounts[i]
        )
        .into_bytes()
    };
    println!("confirmation ingest, {connections} connections, {payments} payments stored");
    let report = load(Arc::new(move |_| url.clone()), Arc::new(body_of), 0, payments, connections).await;
    print("gateway (durable ack)", "confirmations", &report);
    let settled = settled_count(&gateway).await?;
    println!("check: {settled} payments paid, {} confirmations acknowledged", report.acknowledged);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Counts paid payments by paging through them.
async fn settled_count(gateway: &lipa_gateway::service::Gateway) -> Result<usize> {
    let mut total = 0;
    let mut after = None;
    loop {
        let page = gateway
            .store()
            .payments(lipa_gateway::store::PaymentFilter {
                status: Some(lipa_gateway::payment::Status::Paid),
                after: after.clone(),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        total += page.len();
        match page.last() {
            Some(p) if page.len() == 1000 => after = Some((p.created_at, p.id.as_str().to_owned())),
            _ => return Ok(total),
        }
    }
}

async fn create_payments(payments: usize, connections: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("lipa-bench-{}", ids::random_hex(6)));
    std::fs::create_dir_all(&dir)?;
    let mut settings = Settings::load(None, &|_| None)?;
    settings.listen = "127.0.0.1:0".parse()?;
    settings.database_url = format!("sqlite:{}", dir.join("lipa.db").display());
    settings.payments.pushes_per_second = 0;
    let sim = daraja_sim::spawn(daraja_sim::SimConfig::default()).await?;
    let connection = DarajaConnection::custom(
        sim.base_url(),
        sim.consumer_key(),
        sim.consumer_secret(),
        sim.shortcode(),
        sim.passkey(),
    )?;
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock)).await?;
    let base = format!("http://{}", app.addr());
    let gateway = app.gateway().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (_, key) = lipa_gateway::keys::create(gateway.store(), "bench", 0).await?;

    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (http, next, created, base, key) =
                (http.clone(), next.clone(), created.clone(), base.clone(), key.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= payments {
                        return latencies;
                    }
                    let body = format!(
                        r#"{{"amount":10,"phone":"2547{:08}","account_reference":"BENCH","description":"bench"}}"#,
                        10_000_000 + i
                    );
                    let t = Instant::now();
                    let ok = match http
                        .post(format!("{base}/v1/payments"))
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(r) => r.status().as_u16() == 201 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    latencies.push(t.elapsed());
                    if ok {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(payments);
    for w in workers {
        latencies.extend(w.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let report = Report { sent: payments, acknowledged: created.load(Ordering::Relaxed), elapsed, latencies };
    println!(
        "payment creation (validate, store pending, STK push to the simulator, record), {connections} connections"
    );
    print("created (201)", "payments", &report);
    let pushes = sim.sim().requests().iter().filter(|r| r.endpoint == "stk_push").count();
    println!("Daraja push requests seen by the simulator: {pushes} for {} payments", report.acknowledged);
    println!("RSS of the whole process (gateway, simulator, load generator): {}", peak_rss());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn status_lookups(database_url: &str, payments: usize, lookups: usize, connections: usize) -> Result<()> {
    let mut settings = Settings::load(None, &|_| None)?;
    settings.listen = "127.0.0.1:0".parse()?;
    settings.database_url = database_url.to_owned();
    let connection = DarajaConnection::custom("http://127.0.0.1:9", "k", "s", 174379, "p")?;
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock)).await?;
    let base = format!("http://{}", app.addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let key = format!("lipa_sk_{}", "b".repeat(32));
    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    let done = Arc::new(AtomicUsize::new(0));
    let found = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|w| {
            let (http, done, found, base, key) = (http.clone(), done.clone(), found.clone(), base.clone(), key.clone());
            tokio::spawn(async move {
                let mut rng = 0x9e37_79b9_7f4a_7c15_u64 ^ (w as u64 + 1);
                let mut latencies = Vec::new();
                while done.fetch_add(1, Ordering::Relaxed) < lookups {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let i = (rng % payments.max(1) as u64) as usize;
                    let t = Instant::now();
                    let ok = match http.get(format!("{base}/v1/payments/pay_{i:024x}")).bearer_auth(&key).send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    latencies.push(t.elapsed());
                    if ok {
                        found.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(lookups);
    for w in workers {
        latencies.extend(w.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let report = Report { sent: latencies.len(), acknowledged: found.load(Ordering::Relaxed), elapsed, latencies };
    println!("status lookups on {payments} stored payments, {connections} connections");
    print("GET /v1/payments/{id} (200)", "lookups", &report);
    println!("RSS of the whole process (gateway and load generator): {}", peak_rss());
    Ok(())
}

/// `lipa bench admin`: the overview page's latency (first load and then steady) and one full
/// CSV export, streamed, with the process's memory before and after.
async fn admin(database_url: &str, requests: usize) -> Result<()> {
    let mut settings = Settings::load(None, &|_| None)?;
    settings.listen = "127.0.0.1:0".parse()?;
    settings.database_url = database_url.to_owned();
    let connection = DarajaConnection::custom("http://127.0.0.1:9", "k", "s", 174379, "p")?;
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock)).await?;
    let base = format!("http://{}", app.addr());
    let gateway = app.gateway().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let store = gateway.store();
    if store.admin_user("bench").await?.is_none() {
        let role = lipa_gateway::store::admin::Role::Admin;
        lipa_gateway::admin::auth::create_user(store, "bench", "bench-password", role, gateway.now()).await?;
    }
    let user = store.admin_user("bench").await?.ok_or("no bench user")?;
    let token = ids::random_hex(32);
    store.insert_admin_session(&ids::sha256_hex(token.as_bytes()), &user.id, "csrf", gateway.now()).await?;
    let cookie = format!("{}={token}", lipa_gateway::admin::auth::COOKIE);
    let http = reqwest::Client::new();

    let t = Instant::now();
    lipa_gateway::admin::rollups::fill(&gateway).await?;
    println!("overview rollups of the last 8 days computed in {:.1?} (once, when the workers start)", t.elapsed());
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let page = http.get(format!("{base}/admin")).header("Cookie", &cookie).send().await?;
        let ok = page.status().is_success();
        let body = page.text().await?;
        if !ok || !body.contains("Overview") {
            return Err("the overview did not load".into());
        }
        latencies.push(t.elapsed());
    }
    let first = latencies.first().copied().unwrap_or_default();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!("overview page, {requests} loads: first {first:.1?}, p50 {:.1?}, p99 {:.1?}", at(0.5), at(0.99));

    let before = status_field("VmRSS");
    let t = Instant::now();
    let mut csv = http.get(format!("{base}/admin/payments.csv")).header("Cookie", &cookie).send().await?;
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = csv.chunk().await? {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    println!(
        "CSV export: {} payments, {:.1} MB in {:.1?}; RSS before {before}, after {}, peak {}",
        lines.saturating_sub(1),
        bytes as f64 / 1e6,
        t.elapsed(),
        status_field("VmRSS"),
        status_field("VmHWM"),
    );
    Ok(())
}
