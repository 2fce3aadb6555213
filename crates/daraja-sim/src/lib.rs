//! `daraja-sim`: an offline simulator of Safaricom's Daraja STK APIs.
//!
//! It speaks Daraja's paths and JSON (OAuth, STK Push, STK Query, the STK callback, C2B,
//! Pull Transactions, Reversal and Transaction Status with their results) with
//! Daraja's validation, error envelopes and quirks, so the `daraja` client, the gateway, the
//! demo and any other Daraja code run against it unchanged. It is an independent
//! implementation of Safaricom's side and shares no wire types with the `daraja` crate.
//!
//! Outcomes are deterministic: magic test numbers ([`MAGIC_NUMBERS`]), outcomes scripted per
//! phone, wallets with balances and limits, or a person at the virtual phone page. Callback
//! delivery takes faults (drop, copies, delay, jitter, retries). All state is in memory and
//! lost when the process stops.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let sim = daraja_sim::spawn(daraja_sim::SimConfig::default()).await?;
//! println!("Daraja at {} (key {}, shortcode {})", sim.base_url(), sim.consumer_key(), sim.shortcode());
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod c2b;
mod config;
mod control;
mod delivery;
mod envelope;
mod ids;
mod initiator;
mod phone;
mod records;
mod rules;
mod server;
mod sim;
mod stk;

pub use c2b::{C2bStatus, C2bTransaction, ManualPayment, Registration};
pub use config::{
    AmountStyle, App, BalanceStyle, DefaultAnswer, Faults, MerchantAccount, MsisdnStyle, RegisterPaths,
    SANDBOX_PASSKEY, SANDBOX_SHORTCODE, SimConfig,
};
pub use envelope::DarajaError;
pub use initiator::{CERTIFICATE_PEM, InitiatorAccount, InitiatorKind, InitiatorRequest, ResultFaults};
pub use records::{CallbackAttempt, PhoneView, RequestRecord, Scripted, Status, Transaction};
pub use rules::{Answer, MAGIC_NUMBERS, MagicNumber, magic, result_desc};
pub use server::{SimHandle, SimServer, spawn};
pub use sim::{Endpoint, PhoneAction, Sim};

/// Nairobi's offset from UTC: Daraja's timestamps are Nairobi time.
pub(crate) const NAIROBI: time::UtcOffset = time::macros::offset!(+3);

/// Reads the phone forms people type (`0712 345 678`, `+254712345678`, `712345678`) as a
/// 12-digit MSISDN, for the control API and the virtual phone. `None` if it is not one.
pub fn normalize_msisdn(raw: &str) -> Option<u64> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '+')).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let national = match digits.len() {
        12 => digits.strip_prefix("254")?,
        10 => digits.strip_prefix('0')?,
        9 => digits.as_str(),
        _ => return None,
    };
    if !(national.starts_with('7') || national.starts_with('1')) {
        return None;
    }
    national.parse::<u64>().ok().map(|n| 254_000_000_000 + n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalize_msisdn_reads_typed_forms() {
        for raw in ["0712 345 678", "+254712345678", "254712345678", "712345678", "0712-345-678"] {
            assert_eq!(super::normalize_msisdn(raw), Some(254712345678), "{raw}");
        }
        for raw in ["", "0812345678", "25571234567", "07123456x8", "07123456789"] {
            assert_eq!(super::normalize_msisdn(raw), None, "{raw}");
        }
    }
}
