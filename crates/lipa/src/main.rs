//! `lipa`: one binary, many roles. `main` parses the command line, sets up logging and
//! shutdown, and hands over to the role; the roles live in their own crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: the callback path allocates on the HTTP threads and
/// frees on the SQLite writer and back, where glibc takes the other thread's arena lock (the
/// writer was seen waiting on it). Measured: 6 % more callbacks/s, the same resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod c2b;
mod demo;
mod gateway;
mod hostile;
mod ops;
mod receipts;
mod sim;

/// Lipa: a self-hosted M-Pesa (Daraja STK Push) payment gateway.
#[derive(Debug, Parser)]
#[command(name = "lipa", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo: cinema shop, gateway with its admin dashboard, simulator with a virtual phone.
    Demo(demo::Args),
    /// Run the gateway: merchant API, callbacks and reconciliation (simulator when unconfigured).
    Serve(gateway::ServeArgs),
    /// Run the workers (reconciliation, expiry) without the HTTP API.
    Work(gateway::WorkArgs),
    /// Create or update the database schema.
    Migrate(gateway::Common),
    /// Manage merchant API keys.
    #[command(subcommand)]
    Keys(gateway::KeysCommand),
    /// Manage admin dashboard users.
    #[command(subcommand)]
    Admin(gateway::AdminCommand),
    /// Inspect and redeliver merchant webhooks.
    #[command(subcommand)]
    Webhooks(gateway::WebhooksCommand),
    /// Paybill and Till payments: register the C2B URLs with Daraja, list payments by hand.
    #[command(subcommand)]
    C2b(c2b::C2bCommand),
    /// Check or print the configuration.
    #[command(subcommand)]
    Config(gateway::ConfigCommand),
    /// Send one real STK push with the configured credentials and wait for the answer (a
    /// go-live check). Exit code 3 when it ends unpaid.
    Push(ops::PushArgs),
    /// Ask Daraja about one CheckoutRequestID (STK Query).
    Query(ops::QueryArgs),
    /// List or show payments.
    #[command(subcommand)]
    Payments(ops::PaymentsCommand),
    /// List callbacks no payment took; replay a stored callback.
    #[command(subcommand)]
    Callbacks(ops::CallbacksCommand),
    /// Check M-PESA receipts with Daraja's Transaction Status.
    #[command(subcommand)]
    Receipts(receipts::ReceiptsCommand),
    /// Query Daraja about every payment still pending in a window.
    Reconcile(ops::ReconcileArgs),
    /// Write payments as CSV to standard output.
    Export(ops::ExportArgs),
    /// Run the Daraja simulator: Safaricom's STK APIs offline, with a virtual phone.
    Sim(sim::Args),
    /// Measure throughput and latency on loopback.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Serve(args) => gateway::serve(args).await,
            Command::Work(args) => gateway::work(args).await,
            Command::Migrate(common) => gateway::migrate(common).await,
            Command::Keys(command) => gateway::keys(command).await,
            Command::Admin(command) => gateway::admin(command).await,
            Command::Config(command) => gateway::config(command).await,
            Command::Webhooks(command) => gateway::webhooks(command).await,
            Command::C2b(command) => c2b::run(command).await,
            Command::Push(args) => ops::push(args).await,
            Command::Query(args) => ops::query(args).await,
            Command::Payments(command) => ops::payments(command).await,
            Command::Callbacks(command) => ops::callbacks(command).await,
            Command::Receipts(command) => receipts::run(command).await,
            Command::Reconcile(args) => ops::reconcile(args).await,
            Command::Export(args) => ops::export(args).await,
            Command::Sim(args) => sim::run(args).await,
            Command::Bench(command) => bench::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<ops::NotPaid>() => {
            eprintln!("not paid: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIPA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, not in files, pipes or journals.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    if std::env::var("LIPA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The exit code of a process stopped because its store lost durability (`EX_IOERR`).
const EXIT_DURABILITY_LOST: i32 = 74;

/// Completes on Ctrl-C or SIGTERM. If `store` loses durability first (a failed flush of
/// SQLite's files), stops the process at once with exit code 74 and without closing the
/// store: a clean close would checkpoint the WAL into the database file and remove it, where
/// a restart lets SQLite's recovery decide what is on disk.
pub(crate) async fn until_stopped(store: lipa_gateway::store::Store) {
    tokio::select! {
        () = shutdown_signal() => {}
        why = store.durability_lost() => {
            eprintln!("error: {why}");
            eprintln!("Lipa stopped without closing its database; start it again to recover.");
            std::process::exit(EXIT_DURABILITY_LOST);
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
