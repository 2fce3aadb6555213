//! `lipa demo`: the whole world on one machine with one command. Today that is the Daraja
//! simulator with its virtual phone and the gateway with its workers, on SQLite in a data
//! directory, with an API key ready; the demo shop and the admin dashboard join it when they
//! are built.

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
}

pub async fn run(args: Args) -> Result<()> {
    if args.reset && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .map_err(|e| format!("could not reset {}: {e}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("could not create the data directory {}: {e}", args.data_dir.display()))?;

    let mut settings = Settings::load(None, &|_| None)?;
    settings.listen = format!("127.0.0.1:{}", args.gateway_port).parse()?;
    settings.database_url = format!("sqlite:{}", args.data_dir.join("lipa.db").display());
    let mut sim = SimConfig::interactive();
    if args.auto {
        sim.default_answer = DefaultAnswer::Approve;
        sim.auto_answer_after = Duration::from_secs(3);
    }
    let (connection, sim_base) = crate::gateway::start_simulator(sim, args.sim_port).await?;
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock))
        .await
        .map_err(|e| format!("{e} (use --gateway-port)"))?;
    let gateway = app.gateway().clone();
    let key = demo_key(&gateway, &args.data_dir).await?;
    let base = format!("http://{}", app.addr());

    println!();
    println!("Lipa demo is running. No real money moves: payments go to the built-in Daraja simulator.");
    println!();
    println!("  Gateway API     {base}   (docs: {base}/openapi.json)");
    println!("  Virtual phone   {sim_base}/phone   (PIN 1234)");
    println!("  API key         {key}");
    println!("  Data            {}   (kept between runs; --reset starts fresh)", args.data_dir.display());
    println!();
    println!("Try it:");
    println!("  1. curl -s -X POST {base}/v1/payments -H 'Authorization: Bearer {key}' \\");
    println!("       -H 'Content-Type: application/json' \\");
    println!(
        "       -d '{{\"amount\":45,\"phone\":\"0712345678\",\"account_reference\":\"TICKET-42\",\"description\":\"Movie ticket\"}}'"
    );
    if args.auto {
        println!("  2. wait 3 seconds: the simulator approves the prompt by itself (--auto)");
    } else {
        println!("  2. open {sim_base}/phone/0712345678, type 1234 and press Send");
    }
    println!("  3. curl -s {base}/v1/payments/<id from step 1> -H 'Authorization: Bearer {key}'   (status: paid)");
    println!();
    println!("The demo cinema shop and the admin dashboard are not built yet; they will appear here.");
    println!("Press Ctrl-C to stop.");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = crate::gateway::spawn_workers(gateway, stopped);
    app.run_until_stopped(crate::shutdown_signal()).await?;
    let _ = stop.send(true);
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
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
    std::fs::write(&path, &key).map_err(|e| format!("could not save the demo key in {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(key)
}
