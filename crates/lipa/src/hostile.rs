//! `lipa bench hostile`: what outsiders with no key and no session can cost the gateway.
//!
//! Starts a gateway in a process of its own (`lipa bench ingest --serve`, with seeded
//! payments), then for `--seconds` floods, all at once on loopback:
//! - the sign-in form with distinct long user names (some over the form's size limit);
//! - the callback endpoint with 64 KiB bodies to made-up tokens (callbacks no payment takes);
//! - `POST /v1/payments` with made-up API keys;
//!
//! while a legitimate client settles the seeded payments' callbacks and a probe asks
//! `/healthz` every 20 ms. Prints the gateway's resident memory growth, the database file's
//! growth and the WAL's size (a buffer reused from its start after each checkpoint, bounded by
//! the store's WAL limit), `/healthz`'s p99 and the legitimate callbacks sent, acknowledged
//! and settled. With `--check`, exits non-zero unless memory and the database file each grew
//! by at most 50 MiB and every legitimate callback was acknowledged and settled.

use std::io::BufRead as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Options of `lipa bench hostile`.
#[derive(Debug, clap::Args)]
pub struct HostileArgs {
    /// How long the floods last.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Connections per flood.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Payments seeded for the legitimate client.
    #[arg(long, default_value_t = 50_000)]
    payments: usize,
    /// Port of the gateway under test.
    #[arg(long, default_value_t = 18096)]
    port: u16,
    /// Fail unless growth stays within the targets and every legitimate callback settled.
    #[arg(long)]
    check: bool,
    /// Only these floods (`sign-in`, `callbacks`, `bad-keys`), to see what each costs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

const MIB: f64 = 1024.0 * 1024.0;
/// Growth allowed in resident memory and in the database under the floods.
const GROWTH_TARGET_MIB: f64 = 50.0;

pub async fn run(args: HostileArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("lipa-hostile-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir)?;
    let result = flood(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn flood(args: &HostileArgs, dir: &std::path::Path) -> Result<()> {
    let mut gateway = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "ingest", "--payments", &args.payments.to_string(), "--serve", &args.port.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .env("LIPA_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let pid = gateway.id();
    let mut lines = std::io::BufReader::new(gateway.stdout.take().ok_or("no stdout")?).lines();
    loop {
        match lines.next() {
            Some(line) if line.as_ref().is_ok_and(|l| l.starts_with("serving")) => break,
            Some(_) => {}
            None => return Err("the gateway under test exited before serving".into()),
        }
    }
    let base = format!("http://127.0.0.1:{}", args.port);
    let (rss_before, db_before) = (rss(pid), size(&dir.join("lipa.db")));
    println!(
        "gateway pid {pid}: RSS {:.1} MiB, database {:.1} MiB before the floods ({} s, {} connections each)",
        rss_before / MIB,
        db_before / MIB,
        args.seconds,
        args.connections
    );

    // Idle connections are dropped well before the gateway closes them (10 s), so no request
    // is sent into a connection the gateway is closing.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(daraja::IDLE_CONNECTION_KEPT)
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (cookie, form_token) = sign_in_form(&http, &base).await?;
    let mut floods = Vec::new();
    let wanted = |kind: &str| args.only.is_empty() || args.only.iter().any(|o| o == kind);
    for c in 0..args.connections {
        floods.push((
            "sign-in",
            spawn_flood(stop.clone(), wanted("sign-in"), {
                let (http, base, cookie, form_token) = (http.clone(), base.clone(), cookie.clone(), form_token.clone());
                move |i| {
                    // Distinct names, every fourth past the form's 4 KiB.
                    let name = format!("{c}-{i}-{}", "n".repeat(if i % 4 == 0 { 60_000 } else { 3_000 }));
                    http.post(format!("{base}/admin/login")).header("cookie", cookie.clone()).form(&[
                        ("name", name.as_str()),
                        ("password", "guess"),
                        ("form_token", form_token.as_str()),
                    ])
                }
            }),
        ));
        floods.push((
            "callbacks",
            spawn_flood(stop.clone(), wanted("callbacks"), {
                let (http, base) = (http.clone(), base.clone());
                let junk = format!("{{\"Body\":{{\"pad\":\"{}\"}}}}", "x".repeat(64 * 1024 - 20));
                move |i| {
                    let token = format!("{:032x}", u128::MAX - (c as u128) * 1_000_000_000 - i as u128);
                    http.post(format!("{base}/callbacks/stk/{token}")).body(junk.clone())
                }
            }),
        ));
        floods.push(("bad keys", spawn_flood(stop.clone(), wanted("bad-keys"), {
            let (http, base) = (http.clone(), base.clone());
            move |i| {
                http.post(format!("{base}/v1/payments"))
                    .bearer_auth(format!("lipa_sk_{c:04}{i:028}"))
                    .json(&serde_json::json!({"amount": 10, "phone": "0712345678", "account_reference": "X", "description": "x"}))
            }
        })));
    }
    let legitimate = tokio::spawn(legitimate(http.clone(), base.clone(), args.payments, stop.clone()));
    let probe = tokio::spawn(probe(http.clone(), base.clone(), stop.clone()));

    let started = Instant::now();
    let mut peak_rss = rss_before;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_rss = peak_rss.max(rss(pid));
    }
    stop.store(true, Ordering::Relaxed);
    let mut by_status = std::collections::BTreeMap::new();
    for (kind, f) in floods {
        for (status, n) in f.await? {
            *by_status.entry((kind, status)).or_insert(0) += n;
        }
    }
    let (sent, acknowledged) = legitimate.await?;
    let mut healthz = probe.await?;
    let (rss_after, db_after, wal) =
        (rss(pid).max(peak_rss), size(&dir.join("lipa.db")), size(&dir.join("lipa.db-wal")));

    let _ = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status();
    // Everything it prints to the end (a closed pipe would stop it mid-report).
    let said: Vec<String> = lines.map_while(std::result::Result::ok).collect();
    let settled = said
        .iter()
        .find_map(|l| l.strip_prefix("settled ").and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok()))
        .unwrap_or(0);
    let _ = gateway.wait();

    healthz.sort_unstable();
    let p99 = healthz.get(healthz.len() * 99 / 100).copied().unwrap_or_default();
    let max = healthz.last().copied().unwrap_or_default();
    let rss_growth = (rss_after - rss_before) / MIB;
    let db_growth = (db_after - db_before) / MIB;
    println!("hostile requests answered, by flood and status (0: no answer in 10 s):");
    for ((kind, status), n) in &by_status {
        println!("  {kind:<10} {status:>3}  {n}");
    }
    println!("RSS +{rss_growth:.1} MiB (peak {:.1} MiB; target +{GROWTH_TARGET_MIB} MiB at most)", rss_after / MIB);
    println!(
        "database file +{db_growth:.1} MiB (target +{GROWTH_TARGET_MIB} MiB at most); WAL {:.1} MiB (reused, bounded)",
        wal / MIB
    );
    println!(
        "/healthz: {} probes, p99 {:.1} ms, max {:.1} ms (target p99 < 100 ms)",
        healthz.len(),
        p99.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
    println!("legitimate callbacks: {sent} sent, {acknowledged} acknowledged, {settled} settled");
    if args.check {
        let mut missed = Vec::new();
        if rss_growth > GROWTH_TARGET_MIB {
            missed.push(format!("RSS grew {rss_growth:.1} MiB"));
        }
        if db_growth > GROWTH_TARGET_MIB {
            missed.push(format!("the database file grew {db_growth:.1} MiB"));
        }
        if acknowledged != sent || settled != sent || sent == 0 {
            missed.push(format!("{sent} legitimate callbacks sent, {acknowledged} acknowledged, {settled} settled"));
        }
        if !missed.is_empty() {
            return Err(format!("hostile load: {}", missed.join("; ")).into());
        }
        println!("check: passed");
    }
    Ok(())
}

/// The sign-in form's cookie and token, as any visitor gets them.
async fn sign_in_form(http: &reqwest::Client, base: &str) -> Result<(String, String)> {
    let page = http.get(format!("{base}/admin/login")).send().await?;
    let cookie = page
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("no sign-in cookie")?
        .to_owned();
    let html = page.text().await?;
    let token = html
        .split("name=\"form_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or("no sign-in form token")?
        .to_owned();
    Ok((cookie, token))
}

/// Sends the requests `request` makes, one after another, until `stop`; counts the answers
/// by status (0: no answer).
fn spawn_flood(
    stop: Arc<AtomicBool>,
    on: bool,
    request: impl Fn(usize) -> reqwest::RequestBuilder + Send + 'static,
) -> tokio::task::JoinHandle<Vec<(u16, usize)>> {
    tokio::spawn(async move {
        let mut counts: std::collections::HashMap<u16, usize> = std::collections::HashMap::new();
        let mut i = 0;
        while on && !stop.load(Ordering::Relaxed) {
            let status = match request(i).timeout(Duration::from_secs(10)).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            *counts.entry(status).or_default() += 1;
            i += 1;
        }
        counts.into_iter().collect()
    })
}

/// The seeded payments' success callbacks, four senders each sending one about every 20 ms
/// (about 200 a second, a busy shop), until `stop`: (sent, acknowledged).
async fn legitimate(http: reqwest::Client, base: String, payments: usize, stop: Arc<AtomicBool>) -> (usize, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (http, base, next, acknowledged, sent, stop) =
                (http.clone(), base.clone(), next.clone(), acknowledged.clone(), sent.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= payments {
                        return;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    // A real sender retries what was not acknowledged; so does this one.
                    for _ in 0..5 {
                        let answer = http
                            .post(format!("{base}/callbacks/stk/{}", crate::bench::token(i)))
                            .header("content-type", "application/json")
                            .body(crate::bench::body(i))
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        if answer.is_ok_and(|r| r.status().is_success()) {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    for c in clients {
        let _ = c.await;
    }
    (sent.load(Ordering::Relaxed), acknowledged.load(Ordering::Relaxed))
}

/// `/healthz` every 20 ms until `stop`: each answer's time (10 s for one that failed).
async fn probe(http: reqwest::Client, base: String, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut times = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let ok = http
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        times.push(if ok { t.elapsed() } else { Duration::from_secs(10) });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    times
}

/// A process's resident memory, bytes.
fn rss(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib * 1024.0)
}

/// A file's size, bytes (0 if it is not there).
fn size(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64)
}
