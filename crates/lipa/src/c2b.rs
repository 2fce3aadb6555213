//! `lipa c2b`: register this gateway's Paybill (C2B) URLs with Daraja, and list payments by hand.

use daraja::c2b::RegisterUrls;
use lipa_gateway::config::MpesaEnvironment;
use lipa_gateway::store::Store;

use crate::gateway::Common;
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `lipa c2b …`.
#[derive(Debug, clap::Subcommand)]
pub enum C2bCommand {
    /// Register the confirmation and validation URLs with Daraja for the configured shortcode.
    /// In production Safaricom keeps the first registration: this refuses to send another
    /// unless --force.
    Register(RegisterArgs),
    /// Register the shortcode for Pull Transactions (the sweep that recovers confirmations
    /// that never arrived).
    RegisterPull(PullArgs),
    /// List payments by hand, newest first.
    List(ListArgs),
    /// Pull the shortcode's recent transactions now and settle those whose confirmation never
    /// arrived (what the workers do every `[c2b] pull_interval_minutes`).
    Pull(PullNowArgs),
}

/// Options of `lipa c2b pull`.
#[derive(Debug, clap::Args)]
pub struct PullNowArgs {
    /// How far back to look (Daraja keeps about 48 hours).
    #[arg(long, default_value_t = 6)]
    lookback_hours: u64,
    #[command(flatten)]
    common: Common,
}

/// Options of `lipa c2b register`.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// Send the registration even though this installation registered before.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: Common,
}

/// Options of `lipa c2b register-pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The M-PESA number Safaricom tells about the registration.
    #[arg(long)]
    nominated_number: String,
    #[command(flatten)]
    common: Common,
}

/// Options of `lipa c2b list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// unmatched, applied, same_as_stk, assigned or refunded_outside.
    #[arg(long)]
    status: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    common: Common,
}

/// The installation value recording the last registration sent.
const REGISTERED_KEY: &str = "c2b_registered";

pub async fn run(command: C2bCommand) -> Result<()> {
    match command {
        C2bCommand::Register(args) => register(args).await,
        C2bCommand::RegisterPull(args) => register_pull(args).await,
        C2bCommand::List(args) => list(args).await,
        C2bCommand::Pull(args) => pull_now(args).await,
    }
}

/// The store, this installation's C2B URLs, the Daraja client and merchant.
async fn wiring(
    common: &Common,
) -> Result<(Store, String, String, daraja::Client, daraja::Merchant, MpesaEnvironment)> {
    let settings = common.settings()?;
    if settings.mpesa.environment == MpesaEnvironment::Simulator && settings.mpesa.consumer_key.is_none() {
        return Err("in simulator mode the gateway registers its C2B URLs itself when it starts; \
                    this command is for Safaricom's sandbox and production"
            .into());
    }
    let Some(base) = settings.public_url.clone() else {
        return Err(
            "set CALLBACK_BASE_URL to this gateway's public https address: Daraja calls the C2B URLs there".into()
        );
    };
    let store = Store::open(&settings.database_url).await?;
    let token = store.installation_value("c2b_path", &lipa_gateway::ids::random_hex(16)).await?;
    let base = format!("{base}/callbacks/c2b/{token}");
    let connection = settings.daraja_connection()?;
    let client = daraja::Client::builder(connection.environment, connection.credentials)
        .request_timeout(settings.mpesa.request_timeout)
        .build()?;
    Ok((
        store,
        format!("{base}/confirmation"),
        format!("{base}/validation"),
        client,
        connection.merchant,
        settings.mpesa.environment,
    ))
}

async fn register(args: RegisterArgs) -> Result<()> {
    let settings = args.common.settings()?;
    let (store, confirmation, validation, client, merchant, environment) = wiring(&args.common).await?;
    let before = store.query("SELECT value FROM installation WHERE key = $1", vec![REGISTERED_KEY.into()]).await?;
    if let Some(row) = before.first()
        && environment == MpesaEnvironment::Production
        && !args.force
    {
        return Err(format!(
            "this installation registered its C2B URLs already ({}). In production Safaricom keeps the first \
             registration and answers \"Urls are already registered\"; changing them takes Safaricom's support. \
             Run with --force to send it anyway.",
            row[0].text()
        )
        .into());
    }
    let request = RegisterUrls {
        short_code: merchant.business_short_code(),
        response_type: settings.c2b.response_type,
        confirmation_url: daraja::CallbackUrl::parse(&confirmation)?,
        validation_url: daraja::CallbackUrl::parse(&validation)?,
        version: settings.c2b.register_version,
    };
    match client.c2b_register_urls(&request).await {
        Ok(accepted) => {
            let when = lipa_gateway::time_fmt::nairobi(lipa_gateway::time_fmt::to_millis(time::OffsetDateTime::now_utc()));
            let record = format!("shortcode {} on {when}", merchant.business_short_code());
            store
                .execute_all(vec![(
                    "INSERT INTO installation (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    vec![REGISTERED_KEY.into(), record.into()],
                )])
                .await?;
            println!(
                "Registered for shortcode {} ({}; OriginatorCoversationID {}).",
                merchant.business_short_code(),
                accepted.response_description,
                accepted.originator_conversation_id
            );
            println!("Daraja now sends payments by hand to this gateway's secret C2B path (not printed: keep it private).");
            Ok(())
        }
        Err(e) if e.api_kind() == Some(&daraja::ApiErrorKind::UrlsAlreadyRegistered) => Err(format!(
            "Daraja says the URLs of shortcode {} are already registered. Safaricom keeps the first registration in \
             production: ask Safaricom's support to clear it, then run this again. ({e})",
            merchant.business_short_code()
        )
        .into()),
        Err(e) if e.to_string().contains("no apiproduct match") => Err(format!(
            "Daraja refused the Register URL path for this app ({e}). Set MPESA_C2B_REGISTER_VERSION to {} and run again.",
            if settings.c2b.register_version == daraja::c2b::RegisterVersion::V1 { "v2" } else { "v1" }
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

async fn register_pull(args: PullArgs) -> Result<()> {
    let (_, confirmation, _, client, merchant, _) = wiring(&args.common).await?;
    let nominated_number = daraja::Msisdn::parse(&args.nominated_number).map_err(|e| e.reason)?;
    client
        .pull_register(&daraja::c2b::PullRegister {
            short_code: merchant.business_short_code(),
            nominated_number,
            callback_url: daraja::CallbackUrl::parse(&confirmation)?,
        })
        .await?;
    println!("Shortcode {} is registered for Pull Transactions.", merchant.business_short_code());
    Ok(())
}

async fn list(args: ListArgs) -> Result<()> {
    let settings = args.common.settings()?;
    let store = Store::open(&settings.database_url).await?;
    let shown = store.c2b_transactions(args.status.as_deref(), None, args.limit.clamp(1, 500)).await?;
    if shown.is_empty() {
        println!("No payments by hand.");
    }
    for t in shown {
        println!(
            "{}  {}  KES {:>7}  account {:<12} {:<16} {}",
            lipa_gateway::time_fmt::nairobi(t.received_at),
            t.trans_id,
            t.amount,
            if t.account.is_empty() { "-" } else { &t.account },
            t.status,
            t.note
        );
    }
    Ok(())
}

async fn pull_now(args: PullNowArgs) -> Result<()> {
    let settings = args.common.settings()?;
    let connection = if settings.mpesa.environment == MpesaEnvironment::Simulator
        && settings.mpesa.consumer_key.is_none()
    {
        let base =
            settings.mpesa.base_url.clone().ok_or("in simulator mode set MPESA_BASE_URL to the simulator's address")?;
        let sim = daraja_sim::SimConfig::default();
        let (app, merchant) = (sim.primary_app().ok_or("no app")?, sim.primary_merchant().ok_or("no merchant")?);
        lipa_gateway::config::DarajaConnection::custom(
            &base,
            &app.consumer_key,
            &app.consumer_secret,
            merchant.shortcode,
            &merchant.passkey,
        )?
    } else {
        settings.daraja_connection()?
    };
    let store = Store::open(&settings.database_url).await?;
    let public_url = settings.public_url.clone().unwrap_or_default();
    let gateway = lipa_gateway::service::Gateway::new(
        store,
        settings,
        connection,
        public_url,
        std::sync::Arc::new(daraja::SystemClock),
    )?;
    let lookback = std::time::Duration::from_secs(args.lookback_hours.clamp(1, 47) * 3600);
    let swept = lipa_gateway::pull::sweep(&gateway, lookback).await?;
    println!(
        "{} transactions listed, {} recovered (their confirmation had not arrived), {} unreadable",
        swept.listed, swept.recovered, swept.unreadable
    );
    Ok(())
}
