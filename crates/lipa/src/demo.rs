//! `lipa demo`: the whole world on one machine with one command: the Daraja simulator with its
//! virtual phone, the gateway with its workers (SQLite in a data directory), and the demo
//! cinema shop paying through the gateway like any merchant, with an API key ready.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use daraja_sim::{DefaultAnswer, SimConfig};
use lipa_gateway::config::Settings;
use lipa_gateway::startup::Application;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Options of `lipa demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port of the demo cinema shop.
    #[arg(long, default_value_t = 8000)]
    shop_port: u16,
    /// Port of the gateway.
    #[arg(long, default_value_t = 8080)]
    gateway_port: u16,
    /// Port of the Daraja simulator and its virtual phone.
    #[arg(long, default_value_t = 8081)]
    sim_port: u16,
    /// Where the demo keeps its database and API key (kept between runs).
    #[arg(long, default_value = "lipa-data")]
    data_dir: PathBuf,
    /// Approve prompts by themselves after 3 s instead of waiting for the virtual phone.
    #[arg(long)]
    auto: bool,
    /// Start from an empty data directory.
    #[arg(long)]
    reset: bool,
    /// The business's name: the shop's, on the checkout pages, receipts and in the prompt.
    #[arg(long, default_value = "Lipa Cinema")]
    business_name: String,
}

/// The settings the demo does not read, named if the environment or a `lipa.toml` sets them:
/// the demo runs on its own defaults and takes only its options (`lipa demo --help`).
fn ignored_settings() -> Vec<String> {
    let mut ignored: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| {
            name.starts_with("LIPA_")
                || name.starts_with("MPESA_")
                || ["DATABASE_URL", "SMTP_URL", "MAIL_FROM", "CALLBACK_BASE_URL"].contains(&name.as_str())
        })
        // The log settings work for every command; the others drive the test suites.
        .filter(|name| {
            !["LIPA_LOG", "LIPA_LOG_FORMAT"].contains(&name.as_str())
                && !name.starts_with("LIPA_TEST_")
                && !name.starts_with("LIPA_SCALE_")
        })
        .filter(|name| !["LIPA_REQUIRE_ALL", "LIPA_SCREENSHOTS"].contains(&name.as_str()))
        .collect();
    ignored.sort();
    let file = std::env::var("LIPA_CONFIG").unwrap_or_else(|_| "lipa.toml".into());
    if std::path::Path::new(&file).is_file() {
        ignored.insert(0, file);
    }
    ignored
}

pub async fn run(args: Args) -> Result<()> {
    if args.reset && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .map_err(|e| format!("could not reset {}: {e}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("could not create the data directory {}: {e}", args.data_dir.display()))?;

    let ignored = ignored_settings();
    if !ignored.is_empty() {
        println!(
            "Note: the demo runs on its own settings and does not read {}. It takes only its options \
             (--shop-port, --gateway-port, --sim-port, --data-dir, --business-name, --auto, --reset); \
             `lipa serve` reads lipa.toml and the environment.",
            ignored.join(", ")
        );
    }
    let mut settings = Settings::load(None, &|_| None)?;
    settings.business_name = args.business_name.clone();
    settings.listen = format!("127.0.0.1:{}", args.gateway_port).parse()?;
    settings.database_url = format!("sqlite:{}", args.data_dir.join("lipa.db").display());
    // The shop's webhook endpoint is on this machine.
    settings.webhooks.allow_private = true;
    let mut sim = SimConfig::interactive();
    // The prompt names the business as Safaricom registered it: the same name everywhere.
    for merchant in &mut sim.merchants {
        merchant.name = args.business_name.clone();
    }
    if args.auto {
        sim.default_answer = DefaultAnswer::Approve;
        sim.auto_answer_after = Duration::from_secs(3);
    }
    let (connection, sim_base) = crate::gateway::start_simulator(sim, args.sim_port).await?;
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock)).await.map_err(|e| match e {
        lipa_gateway::startup::StartError::Bind { addr, source } => {
            format!("could not listen on {addr}: {source} (use --gateway-port)")
        }
        e => e.to_string(),
    })?;
    let gateway = app.gateway().clone();
    let key = demo_key(&gateway, &args.data_dir).await?;
    let base = format!("http://{}", app.addr());
    let key_row = lipa_gateway::keys::authenticate(gateway.store(), &key).await?.ok_or("the demo key vanished")?;
    let webhook_secret = lipa_gateway::keys::webhook_secret(gateway.store(), &key_row).await?;
    let shop = cinema::Shop::bind(cinema::ShopConfig {
        listen: format!("127.0.0.1:{}", args.shop_port).parse()?,
        public_url: None,
        lipa_url: base.clone(),
        api_key: key.clone(),
        webhook_secret,
        database: args.data_dir.join("cinema.db"),
        name: args.business_name.clone(),
    })
    .await?;
    let shop_url = format!("http://{}", shop.addr());
    let admin_password = demo_admin(&gateway, &args.data_dir).await?;

    println!();
    println!("Lipa demo is running. No real money moves: payments go to the built-in Daraja simulator.");
    println!();
    println!("  Cinema shop     {shop_url}");
    println!("  Virtual phone   {sim_base}/phone   (PIN 1234)");
    println!("  Admin           {base}/admin   (user admin, password {admin_password})");
    println!("  Gateway API     {base}   (docs: {base}/openapi.json)");
    println!("  API key         {key}");
    println!("  Data            {}   (kept between runs; --reset starts fresh)", args.data_dir.display());
    println!();
    println!("Try it:");
    println!("  1. open {shop_url}, book seats with phone 0712 345 678, and send the M-PESA prompt");
    if args.auto {
        println!("  2. wait 3 seconds: the simulator approves the prompt by itself (--auto)");
    } else {
        println!("  2. open {sim_base}/phone/0712345678, type PIN 1234 and press Send");
    }
    println!("  3. the checkout page turns to \"Payment received\"; \"Return to shop\" shows your paid tickets");
    println!(
        "  Or pay by hand, as when the prompt never comes: book with phone 0700 001 037 (the prompt cannot reach it),"
    );
    println!(
        "     then on {sim_base}/phone/0712345678 use Lipa na M-PESA > Pay Bill with the business and account numbers the checkout page shows"
    );
    println!();
    println!("Press Ctrl-C to stop.");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let store = gateway.store().clone();
    let workers = crate::gateway::spawn_workers(gateway, stopped.clone());
    let shop = tokio::spawn(shop.run_until_stopped(until_stopped(stopped.clone())));
    let server = tokio::spawn(app.run_until_stopped(until_stopped(stopped)));
    crate::until_stopped(store).await;
    println!("Stopping: finishing the requests under way…");
    let _ = stop.send(true);
    for task in [shop, server] {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(10), task).await {
            eprintln!("stopping: {e}");
        }
    }
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    }
    Ok(())
}

/// The demo's admin password: kept in the data directory like the key; the user `admin` is
/// created with it on the first run.
async fn demo_admin(gateway: &lipa_gateway::service::Gateway, dir: &std::path::Path) -> Result<String> {
    let path = dir.join("admin-password");
    if let Ok(saved) = std::fs::read_to_string(&path)
        && gateway.store().admin_user("admin").await?.is_some()
    {
        return Ok(saved.trim().to_owned());
    }
    let password = lipa_gateway::ids::random_hex(8);
    let store = gateway.store();
    if store.admin_user("admin").await?.is_some() {
        let hash = lipa_gateway::admin::auth::hash_password(&password)?;
        store.set_admin_password("admin", &hash).await?;
    } else {
        lipa_gateway::admin::auth::create_user(
            store,
            "admin",
            &password,
            lipa_gateway::store::admin::Role::Admin,
            gateway.now(),
        )
        .await?;
    }
    save_private(&path, &password)?;
    Ok(password)
}

fn save_private(path: &std::path::Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| format!("could not save {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// The demo's API key: kept in the data directory (readable by its owner only) so re-runs
/// reuse it; made anew if missing or revoked.
async fn demo_key(gateway: &lipa_gateway::service::Gateway, dir: &std::path::Path) -> Result<String> {
    let path = dir.join("demo-api-key");
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim().to_owned();
        if lipa_gateway::keys::authenticate(gateway.store(), &saved).await?.is_some() {
            return Ok(saved);
        }
    }
    let (_, key) = lipa_gateway::keys::create(gateway.store(), "demo", gateway.now()).await?;
    save_private(&path, &key)?;
    Ok(key)
}
