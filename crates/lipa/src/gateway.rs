//! `lipa serve`, `lipa migrate`, `lipa keys`, `lipa config`: the gateway's roles and tools.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use daraja_sim::SimConfig;
use lipa_gateway::config::{DarajaConnection, MpesaEnvironment, Settings};
use lipa_gateway::startup::Application;
use lipa_gateway::store::Store;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Options every database-touching command shares.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// TOML settings file (environment variables still win).
    #[arg(long, env = "LIPA_CONFIG", default_value = "lipa.toml")]
    config: PathBuf,
}

impl Common {
    pub(crate) fn settings(&self) -> Result<Settings> {
        Ok(Settings::load(Some(&self.config), &|name| std::env::var(name).ok())?)
    }
}

/// Options of `lipa serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Address to listen on (overrides LIPA_LISTEN).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Port of the in-process simulator, in simulator mode (0 picks a free one).
    #[arg(long, env = "LIPA_SIM_PORT", default_value_t = 8081)]
    sim_port: u16,
}

/// Starts the simulator in this process and describes how to reach it.
pub async fn start_simulator(config: SimConfig, port: u16) -> Result<(DarajaConnection, String)> {
    let server = daraja_sim::SimServer::bind(config, ("127.0.0.1", port))
        .await
        .map_err(|e| format!("could not start the simulator on 127.0.0.1:{port}: {e} (use --sim-port)"))?;
    let base = server.base_url();
    let sim = server.sim().config().clone();
    let app = sim.primary_app().ok_or("the simulator has no app")?;
    let merchant = sim.primary_merchant().ok_or("the simulator has no merchant")?;
    let connection = DarajaConnection::custom(
        &base,
        &app.consumer_key,
        &app.consumer_secret,
        merchant.shortcode,
        &merchant.passkey,
    )?;
    let connection = with_simulator_initiator(connection, &sim)?;
    tokio::spawn(async move {
        if let Err(e) = server.run_until_stopped(std::future::pending()).await {
            tracing::error!(error = %e, "the simulator stopped");
        }
    });
    Ok((connection, base))
}

pub async fn serve(args: ServeArgs) -> Result<()> {
    let mut settings = args.common.settings()?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    refuse_errors(&settings)?;
    let connection = if settings.mpesa.environment == MpesaEnvironment::Simulator && settings.mpesa.base_url.is_some() {
        // A simulator in another process (`lipa sim`, a test's): its default credentials.
        simulator_at(settings.mpesa.base_url.as_deref().unwrap_or_default())?
    } else if settings.mpesa.environment == MpesaEnvironment::Simulator {
        // The simulator calls back from loopback: a Safaricom allowlist would refuse it.
        settings.callbacks.allowlist.clear();
        let (connection, base) = start_simulator(SimConfig::interactive(), args.sim_port).await?;
        let why = if settings.mpesa.environment_defaulted { " because no M-Pesa credentials are set" } else { "" };
        tracing::warn!("SIMULATOR MODE{why}: payments go to the built-in Daraja simulator; no real money moves");
        println!("Simulator (Daraja) at {base}; approve prompts on the virtual phone: {base}/phone");
        connection
    } else {
        settings.daraja_connection()?
    };
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock)).await?;
    println!("Lipa gateway listening on http://{}", app.addr());
    let first_password = std::env::var("LIPA_ADMIN_PASSWORD").ok();
    if lipa_gateway::admin::bootstrap(app.gateway(), first_password.as_deref()).await? {
        println!("Created the admin user \"admin\" from LIPA_ADMIN_PASSWORD.");
    }
    println!("Admin dashboard at http://{}/admin", app.addr());
    let (stop_workers, stopped) = tokio::sync::watch::channel(false);
    let workers = spawn_workers(app.gateway().clone(), stopped);
    let store = app.gateway().store().clone();
    let stopped = async move {
        crate::until_stopped(store).await;
        println!("Stopping: finishing the requests under way…");
    };
    app.run_until_stopped(stopped).await?;
    let _ = stop_workers.send(true);
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    }
    Ok(())
}

/// Stops at the configuration's first error; logs its warnings.
fn refuse_errors(settings: &Settings) -> Result<()> {
    for finding in settings.check() {
        if finding.error {
            return Err(format!("{finding}\n(run `lipa config check` for every finding)").into());
        }
        tracing::warn!("{finding}");
    }
    Ok(())
}

/// The background workers of a gateway: reconciliation, webhook delivery, the Paybill pull
/// sweep, receipt emails, the admin overview's rollups.
pub fn spawn_workers(
    gateway: lipa_gateway::service::Gateway,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(lipa_gateway::reconciliation::run(gateway.clone(), stopped.clone())),
        tokio::spawn(lipa_gateway::webhooks::run(gateway.clone(), stopped.clone())),
        tokio::spawn(lipa_gateway::pull::run(gateway.clone(), stopped.clone())),
        tokio::spawn(lipa_gateway::mail::Worker::new(gateway.clone()).run(stopped.clone())),
        tokio::spawn(lipa_gateway::refund::run(gateway.clone(), stopped.clone())),
        tokio::spawn(lipa_gateway::admin::rollups::run(gateway, stopped)),
    ]
}

/// A connection to a simulator at `base` with the simulator's default app and paybill (what
/// `lipa sim` and `daraja_sim::SimConfig::default()` configure).
fn simulator_at(base: &str) -> Result<DarajaConnection> {
    let sim = SimConfig::default();
    let (app, merchant) = (sim.primary_app().ok_or("no app")?, sim.primary_merchant().ok_or("no merchant")?);
    let connection =
        DarajaConnection::custom(base, &app.consumer_key, &app.consumer_secret, merchant.shortcode, &merchant.passkey)?;
    with_simulator_initiator(connection, &sim)
}

/// Refunds against a simulator run as its first initiator, with its certificate.
pub fn with_simulator_initiator(connection: DarajaConnection, sim: &SimConfig) -> Result<DarajaConnection> {
    Ok(match sim.initiators.first() {
        Some(who) => {
            connection.with_initiator_from(&who.name, &who.password, daraja_sim::CERTIFICATE_PEM.as_bytes())?
        }
        None => connection,
    })
}

/// Options of `lipa work`.
#[derive(Debug, clap::Args)]
pub struct WorkArgs {
    #[command(flatten)]
    common: Common,
}

/// Runs the workers (reconciliation, expiry, webhooks) without the HTTP API, beside any number of
/// `lipa serve` replicas on the same database.
pub async fn work(args: WorkArgs) -> Result<()> {
    let settings = args.common.settings()?;
    refuse_errors(&settings)?;
    if settings.mpesa.environment == MpesaEnvironment::Simulator && settings.mpesa.base_url.is_none() {
        return Err("lipa work queries the Daraja the gateway pushes to: set MPESA_BASE_URL to that simulator (or configure sandbox/production credentials)".into());
    }
    let connection = match settings.mpesa.environment {
        MpesaEnvironment::Simulator => simulator_at(settings.mpesa.base_url.as_deref().unwrap_or_default())?,
        _ => settings.daraja_connection()?,
    };
    let store = Store::open(&settings.database_url).await?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{}", settings.listen));
    let gateway = lipa_gateway::service::Gateway::new(
        store.clone(),
        settings,
        connection,
        public_url,
        Arc::new(daraja::SystemClock),
    )?;
    // The refund worker builds the refunds' secret URLs from the installation's secret.
    gateway.load_c2b_path().await?;
    println!("Lipa workers running (reconciliation, expiry, webhooks, refunds); Ctrl-C to stop");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = spawn_workers(gateway, stopped);
    crate::until_stopped(store).await;
    println!("Stopping: finishing the jobs under way…");
    let _ = stop.send(true);
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    }
    Ok(())
}

pub async fn migrate(common: Common) -> Result<()> {
    let settings = common.settings()?;
    Store::open(&settings.database_url).await?;
    println!("{}: schema is up to date", settings.database_url);
    Ok(())
}

/// `lipa admin …`
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create a dashboard user. The password is asked twice on a terminal, or read from the
    /// first line of standard input (`echo "$PASSWORD" | lipa admin create-user ops`).
    CreateUser {
        /// Login name (letters, digits, dot, dash, underscore).
        name: String,
        /// `admin` (everything) or `viewer` (read only).
        #[arg(long, default_value = "admin")]
        role: String,
        #[command(flatten)]
        common: Common,
    },
}

fn read_new_password() -> Result<String> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password (10 characters or more): ")?;
        let again = rpassword::prompt_password("The same password again: ")?;
        if first != again {
            return Err("the two passwords differ; nothing was created".into());
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

pub async fn admin(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::CreateUser { name, role, common } => {
            let role = lipa_gateway::store::admin::Role::parse(&role)
                .ok_or_else(|| format!("--role {role:?}: use admin or viewer"))?;
            let store = Store::open(&common.settings()?.database_url).await?;
            let password = read_new_password()?;
            lipa_gateway::admin::auth::create_user(&store, &name, &password, role, now_ms()).await?;
            println!("Created {} user {name:?}; sign in at <gateway>/admin.", role.as_str());
        }
    }
    Ok(())
}

/// `lipa keys …`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create an API key; it is printed once.
    Create {
        /// A name to recognise the key by (e.g. the shop).
        #[arg(long)]
        name: String,
        /// The name customers see on this merchant's checkout pages and receipts (default:
        /// LIPA_BUSINESS_NAME).
        #[arg(long)]
        display_name: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Set the name customers see on a key's checkout pages and receipts.
    SetDisplayName {
        /// The key's id (key_…) or name.
        key: String,
        /// The name; empty to show LIPA_BUSINESS_NAME again.
        display_name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Replace a key's webhook signing secret (the new one is printed once).
    RotateWebhookSecret {
        /// The key's id (key_…) or name.
        key: String,
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a key by id or name.
    Revoke {
        /// The key's id (key_…) or name.
        key: String,
        #[command(flatten)]
        common: Common,
    },
    /// List keys (never the keys themselves).
    List {
        #[command(flatten)]
        common: Common,
    },
}

pub(crate) fn now_ms() -> i64 {
    lipa_gateway::time_fmt::to_millis(time::OffsetDateTime::now_utc())
}

pub async fn keys(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Create { name, display_name, common } => {
            let display_name = display_name
                .map(|d| lipa_gateway::keys::parse_display_name(&d).map_err(|e| format!("--display-name: {e}")))
                .transpose()?;
            let store = Store::open(&common.settings()?.database_url).await?;
            let (key, secret) = lipa_gateway::keys::create_named(&store, &name, display_name, now_ms()).await?;
            let webhook_secret = lipa_gateway::keys::webhook_secret(&store, &key).await?;
            println!("Created API key {} ({name}). Store both now; they are not shown again.\n", key.id);
            println!("  API key (Authorization: Bearer …)         {secret}");
            println!("  Webhook secret (verifies Lipa-Signature)  {webhook_secret}\n");
        }
        KeysCommand::SetDisplayName { key, display_name, common } => {
            let display_name = match display_name.trim() {
                "" => None,
                name => Some(lipa_gateway::keys::parse_display_name(name)?),
            };
            let store = Store::open(&common.settings()?.database_url).await?;
            if !store.set_display_name(&key, display_name.as_deref()).await? {
                return Err(format!("no live API key with id or name {key:?} (see `lipa keys list`)").into());
            }
            match display_name {
                Some(name) => println!("Customers of {key} now see {name:?}."),
                None => println!("Customers of {key} now see the business name (LIPA_BUSINESS_NAME)."),
            }
        }
        KeysCommand::RotateWebhookSecret { key, common } => {
            let store = Store::open(&common.settings()?.database_url).await?;
            let secret = lipa_gateway::keys::new_secret();
            if !store.set_webhook_secret(&key, &secret).await? {
                return Err(format!("no live API key with id or name {key:?} (see `lipa keys list`)").into());
            }
            println!("New webhook secret for {key} (events are signed with it from now on):\n\n  {secret}\n");
        }
        KeysCommand::Revoke { key, common } => {
            let store = Store::open(&common.settings()?.database_url).await?;
            if !store.revoke_api_key(&key, now_ms()).await? {
                return Err(format!("no live API key with id or name {key:?} (see `lipa keys list`)").into());
            }
            println!("Revoked {key}.");
        }
        KeysCommand::List { common } => {
            let store = Store::open(&common.settings()?.database_url).await?;
            for k in store.api_keys().await? {
                let state = match k.revoked_at {
                    Some(at) => format!("revoked {}", lipa_gateway::time_fmt::rfc3339(at)),
                    None => "live".into(),
                };
                let shown = k.display_name.map(|d| format!("  shown as {d:?}")).unwrap_or_default();
                println!(
                    "{}  {:<20} {}…  created {}  {state}{shown}",
                    k.id,
                    k.name,
                    k.prefix,
                    lipa_gateway::time_fmt::rfc3339(k.created_at)
                );
            }
        }
    }
    Ok(())
}

/// `lipa config …`
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Lint the configuration before go-live; exits non-zero on errors.
    Check {
        #[command(flatten)]
        common: Common,
    },
    /// Print a commented example lipa.toml.
    Print,
}

pub async fn config(command: ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::Print => {
            print!("{}", lipa_gateway::config::EXAMPLE);
            Ok(())
        }
        ConfigCommand::Check { common } => {
            let settings = common.settings()?;
            let mut findings = settings.check();
            if let Err(e) = Store::open(&settings.database_url).await {
                findings.push(lipa_gateway::config::Finding {
                    error: true,
                    setting: "DATABASE_URL",
                    message: e.to_string(),
                });
            }
            println!(
                "Environment: {}; database: {}",
                settings.mpesa.environment.as_str(),
                lipa_gateway::redact::url(&settings.database_url)
            );
            for f in &findings {
                println!("{f}");
            }
            let errors = findings.iter().filter(|f| f.error).count();
            if errors > 0 {
                return Err(format!("{errors} error(s) in the configuration").into());
            }
            println!("No errors.");
            Ok(())
        }
    }
}

/// `lipa webhooks …`
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// Send an event again (same event id, new attempt).
    Redeliver {
        /// The event id (evt_…).
        event: String,
        #[command(flatten)]
        common: Common,
    },
    /// A payment's webhook events and every attempt.
    List {
        /// The payment id (pay_…).
        payment: String,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn webhooks(command: WebhooksCommand) -> Result<()> {
    match command {
        WebhooksCommand::Redeliver { event, common } => {
            let store = Store::open(&common.settings()?.database_url).await?;
            if !store.redeliver_webhook(&event, None, now_ms()).await? {
                return Err(format!("no webhook event {event:?}").into());
            }
            println!("{event} is queued for delivery; a running `lipa serve` or `lipa work` sends it.");
        }
        WebhooksCommand::List { payment, common } => {
            let store = Store::open(&common.settings()?.database_url).await?;
            let id = lipa_gateway::payment::PaymentId::parse(&payment)
                .ok_or("not a payment id (pay_ and 24 hex characters)")?;
            for e in store.webhook_events(&id).await? {
                println!(
                    "{}  {:<22} {:<11} created {}",
                    e.id,
                    e.event_type,
                    e.status,
                    lipa_gateway::time_fmt::rfc3339(e.created_at)
                );
                for a in e.attempts {
                    let outcome = a.status.map_or_else(|| a.error.clone().unwrap_or_default(), |s| format!("HTTP {s}"));
                    println!(
                        "    {}  {outcome}  {} ms  {}",
                        lipa_gateway::time_fmt::rfc3339(a.at),
                        a.latency_ms,
                        a.url
                    );
                }
            }
        }
    }
    Ok(())
}
