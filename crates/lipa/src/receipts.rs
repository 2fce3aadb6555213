//! `lipa receipts check <RECEIPT>`: asks M-PESA (Transaction Status) about a receipt. The
//! answer reaches the running gateway's public URL and is read back from the database, so
//! run it where the gateway's database and settings are. With `--payment`, a payment
//! confirmed without its receipt takes this one when M-PESA's answer matches it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lipa_gateway::config::MpesaEnvironment;
use lipa_gateway::payment::PaymentId;
use lipa_gateway::store::Store;

use crate::gateway::Common;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `lipa receipts …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReceiptsCommand {
    /// Ask M-PESA about a receipt (Transaction Status); prints what it says.
    Check {
        /// The M-PESA receipt, e.g. UAB1C2D3E4.
        receipt: String,
        /// The payment it should belong to (one confirmed without its receipt takes it when
        /// M-PESA's answer matches the payment's amount and phone).
        #[arg(long)]
        payment: Option<String>,
        /// Seconds to wait for M-PESA's answer.
        #[arg(long, default_value_t = 60)]
        wait: u64,
        /// Print the check as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(command: ReceiptsCommand) -> Result<()> {
    let ReceiptsCommand::Check { receipt, payment, wait, json, common } = command;
    let settings = common.settings()?;
    let payment = match payment.as_deref() {
        Some(p) => Some(PaymentId::parse(p).ok_or_else(|| format!("--payment {p:?} is not a payment id (pay_…)"))?),
        None => None,
    };
    let simulator = settings.mpesa.environment == MpesaEnvironment::Simulator;
    let mut connection = crate::ops::connection(&settings, false).await?;
    if simulator && connection.initiator.is_none() {
        connection = crate::gateway::with_simulator_initiator(connection, &daraja_sim::SimConfig::default())?;
    }
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{}", settings.listen));
    let store = Store::open(&settings.database_url).await?;
    let gateway = lipa_gateway::service::Gateway::new(
        store,
        settings,
        connection,
        public_url.clone(),
        Arc::new(daraja::SystemClock),
    )?;
    gateway.load_c2b_path().await?;
    let id = gateway.check_receipt(&receipt, payment.as_ref(), "cli").await?;
    let deadline = Instant::now() + Duration::from_secs(wait);
    let check = loop {
        let check = gateway.store().receipt_check(&id).await?.ok_or("the check vanished")?;
        if check.status != "asked" {
            break check;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no answer from M-PESA in {wait} s; it goes to the gateway at {public_url} (CALLBACK_BASE_URL): is it running there? The check is {id}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if json {
        println!("{}", serde_json::to_string(&check)?);
        return Ok(());
    }
    let answer = match check.status.as_str() {
        "found" => "M-PESA knows it",
        "not_found" => "M-PESA does not know it",
        _ => "M-PESA could not answer",
    };
    println!("Receipt {}: {answer}. {}", check.receipt, check.note);
    if let Some(fields) = check.detail.as_object().filter(|f| !f.is_empty()) {
        for (k, v) in fields {
            println!("  {k:<13} {}", v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        }
    }
    Ok(())
}
