//! The operator's tools: `lipa push` (a go-live check), `lipa query`, `lipa payments`,
//! `lipa callbacks`, `lipa reconcile`, `lipa export`. Human output by default, `--json` for
//! scripts. Exit codes: 0 done (for `push`: paid), 1 an error (its message says what to fix),
//! 2 bad usage, 3 `push` ended without payment.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use daraja::{QueryOutcome, StkPush};
use lipa_gateway::config::{DarajaConnection, MpesaEnvironment, Settings};
use lipa_gateway::payment::{Payment, PaymentId, Status};
use lipa_gateway::store::{IncomingCallback, PaymentFilter, Store};

use crate::gateway::{Common, now_ms};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `push` ended without a payment: the exit code says so.
#[derive(Debug)]
pub struct NotPaid(pub String);

impl std::fmt::Display for NotPaid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotPaid {}

/// A Daraja connection for the tools: the configured one, or (for `push` with no credentials
/// in simulator mode) a simulator in this process that approves at once.
pub(crate) async fn connection(settings: &Settings, allow_local_sim: bool) -> Result<DarajaConnection> {
    let m = &settings.mpesa;
    if m.environment == MpesaEnvironment::Simulator && m.consumer_key.is_none() {
        if !allow_local_sim {
            return Err("no Daraja to ask: in simulator mode set MPESA_BASE_URL and the simulator's credentials \
                        (MPESA_CONSUMER_KEY, MPESA_CONSUMER_SECRET, MPESA_SHORTCODE, MPESA_PASSKEY)"
                .into());
        }
        eprintln!("Simulator mode: pushing to a simulator in this process (no real money moves).");
        let (connection, _) = crate::gateway::start_simulator(daraja_sim::SimConfig::default(), 0).await?;
        return Ok(connection);
    }
    Ok(settings.daraja_connection()?)
}

fn client(settings: &Settings, connection: DarajaConnection) -> Result<(daraja::Client, daraja::Merchant)> {
    let client = daraja::Client::builder(connection.environment, connection.credentials)
        .request_timeout(settings.mpesa.request_timeout)
        .build()?;
    Ok((client, connection.merchant))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Options of `lipa push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The phone to prompt, in any common form.
    #[arg(long)]
    phone: String,
    /// Whole shillings.
    #[arg(long)]
    amount: u64,
    /// AccountReference shown in the prompt (up to 12 characters).
    #[arg(long, default_value = "LIPA-CHECK")]
    reference: String,
    /// Seconds to wait for the customer's answer.
    #[arg(long, default_value_t = 120)]
    wait: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

/// `lipa push`: one real STK push with the configured credentials; waits for the answer by
/// STK Query and prints it.
pub async fn push(args: PushArgs) -> Result<()> {
    let settings = args.common.settings()?;
    let phone = daraja::Msisdn::parse(&args.phone).map_err(|e| format!("--phone: {}", e.reason))?;
    let amount = daraja::Amount::with_max(args.amount, settings.payments.max_amount)
        .map_err(|e| format!("--amount: {}", e.reason))?;
    let reference =
        daraja::AccountReference::parse(&args.reference).map_err(|e| format!("--reference: {}", e.reason))?;
    let base = settings.public_url.clone().unwrap_or_else(|| "https://example.com".into());
    let callback_url =
        daraja::CallbackUrl::parse(&format!("{base}/callbacks/stk/{}", lipa_gateway::ids::random_hex(16)))
            .map_err(|e| format!("CALLBACK_BASE_URL: {}", e.reason))?;
    let (client, merchant) = client(&settings, connection(&settings, true).await?)?;
    let push = StkPush {
        phone,
        amount,
        account_reference: reference,
        description: daraja::TransactionDesc::parse("Go-live check").map_err(|e| e.reason)?,
        callback_url,
    };
    let accepted = client.stk_push(&merchant, &push).await?;
    if !args.json {
        println!("Daraja accepted the push: CheckoutRequestID {}", accepted.checkout_request_id);
        println!("Waiting up to {} s for the answer on the phone…", args.wait);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.wait);
    let progress = !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        if progress {
            eprint!("\r{} s of {} s…", started.elapsed().as_secs(), args.wait);
            let _ = std::io::stderr().flush();
        }
        let answer = client.stk_query(&merchant, &accepted.checkout_request_id).await;
        if progress && !matches!(answer, Ok(QueryOutcome::Pending)) {
            eprintln!();
        }
        match answer {
            Ok(QueryOutcome::Completed(result)) => {
                let paid = result.result_code.is_success();
                if args.json {
                    print_json(&serde_json::json!({
                        "checkout_request_id": accepted.checkout_request_id.to_string(),
                        "result_code": result.result_code.as_str(),
                        "result_desc": result.result_desc,
                        "paid": paid,
                    }))?;
                } else {
                    println!("Result {}: {}", result.result_code.as_str(), result.result_desc);
                    println!("{}", result.result_code.customer_message_en());
                }
                return if paid {
                    Ok(())
                } else {
                    Err(Box::new(NotPaid(format!("not paid ({})", result.result_code.as_str()))))
                };
            }
            Ok(QueryOutcome::Pending) if Instant::now() < deadline => {}
            Ok(QueryOutcome::Pending) => {
                if progress {
                    eprintln!();
                }
                return Err(Box::new(NotPaid("no answer in time; the prompt may still be open".into())));
            }
            Err(e) if e.is_retryable() && Instant::now() < deadline => eprintln!("query failed ({e}); trying again"),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Options of `lipa query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The CheckoutRequestID (ws_CO_…).
    checkout_request_id: String,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

/// `lipa query`: one STK Query.
pub async fn query(args: QueryArgs) -> Result<()> {
    let settings = args.common.settings()?;
    let id = daraja::CheckoutRequestId::parse(&args.checkout_request_id).map_err(|e| e.reason)?;
    let (client, merchant) = client(&settings, connection(&settings, false).await?)?;
    let answer = client.stk_query(&merchant, &id).await?;
    let (code, desc) = match &answer {
        QueryOutcome::Pending => (None, "still being processed".to_owned()),
        QueryOutcome::Completed(r) => (Some(r.result_code.as_str().to_owned()), r.result_desc.clone()),
    };
    if args.json {
        print_json(
            &serde_json::json!({"checkout_request_id": args.checkout_request_id, "result_code": code, "result_desc": desc}),
        )
    } else {
        println!("{}: {desc}", code.as_deref().unwrap_or("pending"));
        Ok(())
    }
}

/// Filters shared by `payments list` and `export`.
#[derive(Debug, clap::Args)]
pub struct Filters {
    /// pending, paid, failed or expired.
    #[arg(long)]
    status: Option<String>,
    /// The phone, in any common form.
    #[arg(long)]
    phone: Option<String>,
    /// AccountReference.
    #[arg(long)]
    reference: Option<String>,
    /// M-Pesa receipt number.
    #[arg(long)]
    receipt: Option<String>,
    /// Created on or after this day (YYYY-MM-DD, Nairobi time).
    #[arg(long)]
    from: Option<String>,
    /// Created on or before this day (YYYY-MM-DD, Nairobi time).
    #[arg(long)]
    to: Option<String>,
}

fn day(flag: &str, value: &str) -> Result<i64> {
    Ok(lipa_gateway::time_fmt::nairobi_day_start(value).ok_or_else(|| format!("--{flag} {value:?}: use YYYY-MM-DD"))?)
}

impl Filters {
    fn filter(&self, limit: u32) -> Result<PaymentFilter> {
        let status = match &self.status {
            Some(s) => {
                Some(Status::parse(s).ok_or_else(|| format!("--status {s:?}: use pending, paid, failed or expired"))?)
            }
            None => None,
        };
        let phone = match &self.phone {
            Some(p) => Some(daraja::Msisdn::parse(p).map_err(|e| format!("--phone: {}", e.reason))?),
            None => None,
        };
        Ok(PaymentFilter {
            status,
            phone,
            reference: self.reference.clone(),
            receipt: self.receipt.clone(),
            created_from: self.from.as_deref().map(|d| day("from", d)).transpose()?,
            created_to: self.to.as_deref().map(|d| day("to", d).map(|t| t + 86_400_000)).transpose()?,
            limit,
            ..PaymentFilter::default()
        })
    }
}

/// `lipa payments …`
#[derive(Debug, clap::Subcommand)]
pub enum PaymentsCommand {
    /// Payments, newest first.
    List {
        #[command(flatten)]
        filters: Filters,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// One payment with its timeline.
    Show {
        /// Its id (pay_…).
        id: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
}

fn row(p: &Payment) -> String {
    format!(
        "{}  {}  {:<8} {:>8}  {}  {:<12} {}",
        p.id,
        lipa_gateway::time_fmt::nairobi(p.created_at),
        p.status.as_str(),
        p.amount.shillings(),
        p.phone,
        p.account_reference,
        p.receipt.as_deref().unwrap_or("")
    )
}

pub async fn payments(command: PaymentsCommand) -> Result<()> {
    match command {
        PaymentsCommand::List { filters, limit, json, common } => {
            let store = Store::open(&common.settings()?.database_url).await?;
            let page = store.payments(filters.filter(limit.clamp(1, 1000))?).await?;
            for p in &page {
                if json {
                    println!("{}", serde_json::to_string(p)?);
                } else {
                    println!("{}", row(p));
                }
            }
            if !json {
                eprintln!("{} payment(s)", page.len());
            }
        }
        PaymentsCommand::Show { id, json, common } => {
            let store = Store::open(&common.settings()?.database_url).await?;
            let id = PaymentId::parse(&id).ok_or_else(|| format!("{id:?} is not a payment id (pay_…)"))?;
            let p = store.payment(&id, None).await?.ok_or_else(|| format!("no payment {id}"))?;
            let events = store.events(&id).await?;
            if json {
                return print_json(&serde_json::json!({"payment": p, "timeline": events}));
            }
            println!("{}", row(&p));
            for e in events {
                println!("  {}  {:<18} {}", lipa_gateway::time_fmt::nairobi(e.at), e.kind, e.detail);
            }
        }
    }
    Ok(())
}

/// `lipa callbacks …`
#[derive(Debug, clap::Subcommand)]
pub enum CallbacksCommand {
    /// Callbacks no payment took and nobody resolved yet.
    List {
        /// Only orphans (unknown token or CheckoutRequestID).
        #[arg(long)]
        orphans: bool,
        /// Only bodies that were not STK callbacks.
        #[arg(long)]
        malformed: bool,
        /// JSON lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Applies a stored callback again, by the usual rules: a callback already applied is
    /// recorded as a duplicate and changes nothing.
    Replay {
        /// The callback's number (from `lipa callbacks list` or the admin dashboard).
        id: i64,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn callbacks(command: CallbacksCommand) -> Result<()> {
    match command {
        CallbacksCommand::List { orphans, malformed, json, common } => {
            let store = Store::open(&common.settings()?.database_url).await?;
            let all = store.unresolved_callbacks(None, 1000).await?;
            let wanted = |outcome: &str| {
                (!orphans && !malformed) || (orphans && outcome == "orphan") || (malformed && outcome == "malformed")
            };
            for c in all.iter().filter(|c| wanted(&c.outcome)) {
                if json {
                    println!("{}", serde_json::to_string(c)?);
                } else {
                    let payment = c.payment_id.as_deref().map(|p| format!(" [{p}]")).unwrap_or_default();
                    println!(
                        "{:>8}  {}  {:<9} {}{payment}",
                        c.id,
                        lipa_gateway::time_fmt::nairobi(c.received_at),
                        c.outcome,
                        c.note
                    );
                }
            }
            let counted = store.unmatched_counted_since(now_ms() - 24 * 3_600_000).await?;
            if counted.count > 0 && !json {
                eprintln!(
                    "{} more callbacks no payment took were counted, not stored, in the last 24 hours \
                     (over the storage budget of {} a minute)",
                    counted.count,
                    lipa_gateway::budget::UNMATCHED_STORED_PER_MINUTE
                );
            }
        }
        CallbacksCommand::Replay { id, common } => {
            let store = Store::open(&common.settings()?.database_url).await?;
            let (token_hash, body) =
                store.callback_body(id).await?.ok_or_else(|| format!("no stored callback {id}"))?;
            let stored = store
                .settle_from_callback(IncomingCallback {
                    token_hash,
                    parsed: daraja::callback::parse(&body),
                    keep_if_unmatched: true,
                    body,
                    source: Some("replay".into()),
                    received_at: now_ms(),
                })
                .await?;
            let payment = stored.payment_id.map_or_else(|| "no payment".to_owned(), |p| p.to_string());
            println!("callback {id} replayed: {} ({payment})", stored.outcome.as_str());
        }
    }
    Ok(())
}

/// Options of `lipa reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// How far back: `90m`, `24h`, `7d`.
    #[arg(long, default_value = "24h")]
    since: String,
    /// The summary as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

fn window(text: &str) -> Result<i64> {
    let (number, unit) = text.trim().split_at(text.trim().len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| format!("--since {text:?}: use e.g. 90m, 24h or 7d"))?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("--since {text:?}: use e.g. 90m, 24h or 7d").into()),
    };
    Ok(n.saturating_mul(unit_ms))
}

/// `lipa reconcile`: queries Daraja about every payment still pending in the window, under the
/// query rate limit, settling what has an answer; a progress bar, then a summary.
pub async fn reconcile(args: ReconcileArgs) -> Result<()> {
    let settings = args.common.settings()?;
    let since = now_ms() - window(&args.since)?;
    let connection = connection(&settings, false).await?;
    let store = Store::open(&settings.database_url).await?;
    let public_url = settings.public_url.clone().unwrap_or_default();
    let gateway =
        lipa_gateway::service::Gateway::new(store, settings, connection, public_url, Arc::new(daraja::SystemClock))?;
    let mut pending = Vec::new();
    let mut after = None;
    loop {
        let filter = PaymentFilter {
            status: Some(Status::Pending),
            created_from: Some(since),
            after,
            limit: 1000,
            ..PaymentFilter::default()
        };
        let page = gateway.store().payments(filter).await?;
        after = page.last().map(|p| (p.created_at, p.id.as_str().to_owned()));
        let done = page.len() < 1000;
        pending.extend(page);
        if done {
            break;
        }
    }
    let total = pending.len();
    let mut summary = std::collections::BTreeMap::<&str, usize>::new();
    for (i, p) in pending.iter().enumerate() {
        let said = lipa_gateway::reconciliation::query_now(&gateway, p).await?;
        let now = gateway.store().payment(&p.id, None).await?.map_or("gone", |p| p.status.as_str());
        let key = if said.starts_with("The query failed") { "query failed" } else { now };
        *summary.entry(key).or_default() += 1;
        let filled = ((i + 1) * 30).checked_div(total).unwrap_or(30);
        eprint!("\r[{}{}] {}/{total}", "#".repeat(filled), " ".repeat(30 - filled), i + 1);
        let _ = std::io::stderr().flush();
    }
    if total > 0 {
        eprintln!();
    }
    if args.json {
        return print_json(&serde_json::json!({"queried": total, "outcomes": summary}));
    }
    println!("{total} pending payment(s) since {} queried", lipa_gateway::time_fmt::nairobi(since));
    for (outcome, n) in summary {
        println!("  {outcome:<14} {n}");
    }
    Ok(())
}

/// Options of `lipa export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    filters: Filters,
    #[command(flatten)]
    common: Common,
}

/// `lipa export > payments.csv`: the filtered payments as CSV on standard output, streamed.
pub async fn export(args: ExportArgs) -> Result<()> {
    use futures_util::StreamExt as _;
    let store = Store::open(&args.common.settings()?.database_url).await?;
    let mut chunks = std::pin::pin!(lipa_gateway::export::csv(store, args.filters.filter(1000)?));
    let mut out = std::io::stdout().lock();
    // A running count on the terminal (not in scripts): one line per payment after the header.
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut lines = 0usize;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        out.write_all(chunk.as_bytes())?;
        if progress {
            lines += chunk.bytes().filter(|b| *b == b'\n').count();
            eprint!("\r{} payment(s) exported", lines.saturating_sub(1));
        }
    }
    out.flush()?;
    if progress {
        eprintln!();
    }
    Ok(())
}
