//! `lipa sim`: the Daraja simulator as a standalone server.

use std::time::Duration;

use daraja_sim::{App, DefaultAnswer, SimConfig, SimServer};

/// Options of `lipa sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "LIPA_SIM_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "LIPA_SIM_PORT", default_value_t = 8081)]
    port: u16,
    /// Consumer key apps authenticate with.
    #[arg(long, env = "LIPA_SIM_CONSUMER_KEY", default_value = "sim-consumer-key")]
    consumer_key: String,
    /// Consumer secret apps authenticate with.
    #[arg(long, env = "LIPA_SIM_CONSUMER_SECRET", default_value = "sim-consumer-secret")]
    consumer_secret: String,
    /// Approve prompts by themselves after a few seconds instead of waiting for the virtual phone.
    #[arg(long)]
    auto: bool,
    /// Seconds a prompt stays open on the virtual phone before it times out (1037).
    #[arg(long, default_value_t = 60)]
    prompt_lifetime: u64,
}

pub async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = SimConfig {
        apps: vec![App { consumer_key: args.consumer_key, consumer_secret: args.consumer_secret }],
        prompt_lifetime: Duration::from_secs(args.prompt_lifetime),
        ..SimConfig::interactive()
    };
    if args.auto {
        config.default_answer = DefaultAnswer::Approve;
        config.auto_answer_after = Duration::from_secs(3);
    }
    let server = SimServer::bind(config.clone(), (args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("could not listen on {}:{}: {e} (choose another --port)", args.host, args.port))?;
    let base = server.base_url();
    let app = config.apps.first().map(|a| (a.consumer_key.as_str(), a.consumer_secret.as_str())).unwrap_or_default();
    let merchant = config.merchants.first();
    println!("Daraja simulator listening on {base}");
    println!();
    println!("  Base URL          {base}   (use instead of https://sandbox.safaricom.co.ke)");
    println!("  Consumer key      {}", app.0);
    println!("  Consumer secret   {}", app.1);
    if let Some(m) = merchant {
        println!("  Shortcode         {} (paybill, CustomerPayBillOnline)", m.shortcode);
        println!("  Passkey           {}", m.passkey);
    }
    println!("  Virtual phone     {base}/phone");
    println!("  Magic numbers     {base}/  (e.g. 254700001032 always cancels)");
    println!(
        "  Prompts           {}",
        if args.auto { "approved automatically after 3 s" } else { "wait for you on the virtual phone" }
    );
    println!();
    println!("Press Ctrl-C to stop. State is in memory and is lost on exit.");
    server.run_until_stopped(crate::shutdown_signal()).await?;
    Ok(())
}
