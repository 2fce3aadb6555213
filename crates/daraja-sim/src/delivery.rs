//! Callback delivery: the body Safaricom would send (reference §4.2), POSTed to the push's
//! `CallBackURL` with the configured faults: drop, copies (sequential or concurrent), delay,
//! jitter (out-of-order arrival) and retries with doubling backoff on non-2xx or no answer.
//! Every attempt is recorded.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::NAIROBI;
use crate::config::{AmountStyle, BalanceStyle, Faults, SimConfig};
use crate::records::{CallbackAttempt, Transaction};
use crate::sim::Sim;

/// A callback ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    kind: &'static str,
    checkout_request_id: String,
    url: String,
    body: String,
    faults: Faults,
    generation: u64,
}

impl Delivery {
    /// The callback for a completed transaction; `None` when its faults drop it.
    pub(crate) fn of(txn: &Transaction, config: &SimConfig, generation: u64) -> Option<Self> {
        if txn.faults.drop {
            return None;
        }
        Some(Self {
            kind: "stk_callback",
            checkout_request_id: txn.checkout_request_id.clone(),
            url: txn.callback_url.clone(),
            body: callback_body(txn, config),
            faults: txn.faults.clone(),
            generation,
        })
    }
}

impl Delivery {
    /// A message other than an STK callback (a C2B confirmation, a Reversal or Transaction
    /// Status result, a queue timeout), recorded under `key` (its TransID or conversation id);
    /// `None` when its faults drop it.
    pub(crate) fn message(
        kind: &'static str,
        key: &str,
        url: &str,
        body: String,
        faults: Faults,
        generation: u64,
    ) -> Option<Self> {
        if faults.drop {
            return None;
        }
        let checkout_request_id = key.to_owned();
        Some(Self { kind, checkout_request_id, url: url.to_owned(), body, faults, generation })
    }
}

/// An error and its causes, in one line: reqwest's own message alone ("error sending request")
/// hides whether the connection was refused, reset or timed out.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

pub(crate) fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Builds the callback JSON by hand, to control number formatting (`45.00` vs `45`) and to
/// write `SFC_IC0003` as a string but numeric codes as numbers, as Safaricom does.
pub(crate) fn callback_body(txn: &Transaction, config: &SimConfig) -> String {
    let code = txn.result_code.as_deref().unwrap_or("1037");
    // A number exactly when it reads back as the same number ("007" and "" stay strings).
    let numeric = code.parse::<u64>().is_ok_and(|n| n.to_string() == code);
    let code_json = if numeric { code.to_owned() } else { json_str(code) };
    let desc = json_str(txn.result_desc.as_deref().unwrap_or(""));
    let mut body = format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":{},"CheckoutRequestID":{},"ResultCode":{code_json},"ResultDesc":{desc}"#,
        json_str(&txn.merchant_request_id),
        json_str(&txn.checkout_request_id),
    );
    if let (Some(receipt), Some(done)) = (&txn.receipt, txn.completed_at) {
        let amount = match config.amount_style {
            AmountStyle::Integer => txn.amount.to_string(),
            AmountStyle::Decimal => format!("{}.00", txn.amount),
        };
        let balance = match config.balance_style {
            BalanceStyle::Valueless => r#"{"Name":"Balance"},"#,
            BalanceStyle::Absent => "",
        };
        body.push_str(&format!(
            r#","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":{amount}}},{{"Name":"MpesaReceiptNumber","Value":{}}},{balance}{{"Name":"TransactionDate","Value":{}}},{{"Name":"PhoneNumber","Value":{}}}]}}"#,
            json_str(receipt),
            nairobi_digits(done),
            txn.phone,
        ));
    }
    body.push_str("}}}");
    body
}

pub(crate) fn nairobi_digits(t: OffsetDateTime) -> String {
    let t = t.to_offset(NAIROBI);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// Sends every copy of a callback, as its faults say.
pub(crate) async fn deliver(sim: Sim, http: reqwest::Client, d: Delivery) {
    if !d.faults.delay.is_zero() {
        tokio::time::sleep(d.faults.delay).await;
    }
    let copies = d.faults.copies.max(1);
    if d.faults.concurrent {
        let tasks: Vec<_> =
            (1..=copies).map(|copy| tokio::spawn(send_copy(sim.clone(), http.clone(), d.clone(), copy))).collect();
        for task in tasks {
            let _ = task.await;
        }
    } else {
        for copy in 1..=copies {
            send_copy(sim.clone(), http.clone(), d.clone(), copy).await;
        }
    }
}

async fn send_copy(sim: Sim, http: reqwest::Client, d: Delivery, copy: u32) {
    if !d.faults.jitter.is_zero() {
        let max = u64::try_from(d.faults.jitter.as_millis()).unwrap_or(u64::MAX);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=max))).await;
    }
    let mut backoff = d.faults.retry_backoff;
    for attempt in 1..=d.faults.retries.saturating_add(1) {
        let started = Instant::now();
        let at = OffsetDateTime::now_utc();
        let result = http
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(d.body.clone())
            .send()
            .await;
        let (status, response_body, error) = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                (Some(status), text.chars().take(512).collect(), None)
            }
            Err(e) => (None, String::new(), Some(error_chain(&e.without_url()))),
        };
        let record = CallbackAttempt {
            kind: d.kind,
            checkout_request_id: d.checkout_request_id.clone(),
            copy,
            attempt,
            at,
            url: d.url.clone(),
            body: d.body.clone(),
            status,
            response_body,
            error,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let acknowledged = record.acknowledged();
        sim.record_attempt(d.generation, record);
        if acknowledged || attempt > d.faults.retries {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Status;

    fn txn(code: &str) -> Transaction {
        Transaction {
            checkout_request_id: "ws_CO_1".into(),
            merchant_request_id: "m-1".into(),
            shortcode: 174379,
            party_b: 174379,
            transaction_type: "CustomerPayBillOnline".into(),
            business_name: "Shop".into(),
            phone: 254712345678,
            amount: 45,
            account_reference: "R".into(),
            description: "D".into(),
            callback_url: "http://127.0.0.1/x".into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            status: Status::Completed,
            result_code: Some(code.into()),
            result_desc: Some("d".into()),
            receipt: None,
            completed_at: Some(OffsetDateTime::UNIX_EPOCH),
            faults: Faults::default(),
        }
    }

    #[test]
    fn result_codes_are_numbers_only_when_they_read_back_as_numbers() {
        for (code, expected) in [
            ("1032", serde_json::json!(1032)),
            ("SFC_IC0003", serde_json::json!("SFC_IC0003")),
            ("007", serde_json::json!("007")),
            ("", serde_json::json!("")),
        ] {
            let body: serde_json::Value =
                serde_json::from_str(&callback_body(&txn(code), &SimConfig::default())).unwrap();
            assert_eq!(body["Body"]["stkCallback"]["ResultCode"], expected, "{code:?}");
        }
    }
}
