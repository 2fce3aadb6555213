//! Prometheus metrics, kept in atomics (the hot path only increments) and rendered as text
//! on `GET /metrics`: payments by status, callbacks by outcome, Daraja calls by operation and
//! result, and latency histograms of callback ingest and Daraja calls.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::settlement::Outcome;

const OUTCOMES: [Outcome; 13] = [
    Outcome::Applied,
    Outcome::Duplicate,
    Outcome::ReceiptAdded,
    Outcome::LateSuccess,
    Outcome::LateFailure,
    Outcome::Mismatch,
    Outcome::Conflict,
    Outcome::Orphan,
    Outcome::Malformed,
    Outcome::Partial,
    Outcome::Overpaid,
    Outcome::Unmatched,
    Outcome::SameTransaction,
];

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A latency histogram.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}", bucket.load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    callbacks: [AtomicU64; 9],
    callback_latency: Histogram,
    callbacks_refused: AtomicU64,
    callbacks_counted: AtomicU64,
    payments_created: AtomicU64,
    webhooks_delivered: AtomicU64,
    webhooks_failed: AtomicU64,
    daraja: Mutex<BTreeMap<(&'static str, String), u64>>,
    daraja_latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Metrics {
    /// A stored callback and how long storing it took.
    pub fn callback(&self, outcome: Outcome, took: Duration) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.callbacks[i].fetch_add(1, Ordering::Relaxed);
        }
        self.callback_latency.observe(took);
    }

    /// A callback refused before storing (bad token shape, source address, store down).
    pub fn callback_refused(&self) {
        self.callbacks_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A callback no payment took, counted instead of stored (beyond the storage budget).
    pub fn callback_counted(&self) {
        self.callbacks_counted.fetch_add(1, Ordering::Relaxed);
    }

    /// A webhook attempt: `delivered` or `failed`.
    pub fn webhook(&self, result: &str) {
        let counter = if result == "delivered" { &self.webhooks_delivered } else { &self.webhooks_failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A payment row created.
    pub fn payment_created(&self) {
        self.payments_created.fetch_add(1, Ordering::Relaxed);
    }

    /// A Daraja call: `operation` (`stk_push`, `stk_query`) and `result` (`ok`, `pending`, or
    /// an error kind).
    pub fn daraja(&self, operation: &'static str, result: &str, took: Duration) {
        let mut calls = self.daraja.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *calls.entry((operation, result.to_owned())).or_default() += 1;
        drop(calls);
        let mut latency = self.daraja_latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        latency.entry(operation).or_default().observe(took);
    }

    /// The Prometheus text exposition, with payments by status from the store.
    pub fn render(&self, payments_by_status: &[(String, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP lipa_payments Payments stored, by status.\n# TYPE lipa_payments gauge\n");
        for (status, n) in payments_by_status {
            let _ = writeln!(out, "lipa_payments{{status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP lipa_payments_created_total Payments created by this process.\n# TYPE lipa_payments_created_total counter\n");
        let _ = writeln!(out, "lipa_payments_created_total {}", self.payments_created.load(Ordering::Relaxed));
        out.push_str(
            "# HELP lipa_callbacks_total Callbacks stored, by outcome.\n# TYPE lipa_callbacks_total counter\n",
        );
        for (outcome, n) in OUTCOMES.iter().zip(&self.callbacks) {
            let _ =
                writeln!(out, "lipa_callbacks_total{{outcome=\"{}\"}} {}", outcome.as_str(), n.load(Ordering::Relaxed));
        }
        out.push_str("# HELP lipa_callbacks_refused_total Callbacks answered without being stored.\n# TYPE lipa_callbacks_refused_total counter\n");
        let _ = writeln!(out, "lipa_callbacks_refused_total {}", self.callbacks_refused.load(Ordering::Relaxed));
        out.push_str("# HELP lipa_callbacks_counted_total Callbacks no payment took, counted but not stored (beyond the storage budget).\n# TYPE lipa_callbacks_counted_total counter\n");
        let _ = writeln!(out, "lipa_callbacks_counted_total {}", self.callbacks_counted.load(Ordering::Relaxed));
        out.push_str("# HELP lipa_callback_duration_seconds Time to store and apply a callback.\n# TYPE lipa_callback_duration_seconds histogram\n");
        self.callback_latency.render(&mut out, "lipa_callback_duration_seconds", "");
        out.push_str("# HELP lipa_daraja_requests_total Daraja calls, by operation and result.\n# TYPE lipa_daraja_requests_total counter\n");
        for ((operation, result), n) in self.daraja.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let _ = writeln!(out, "lipa_daraja_requests_total{{operation=\"{operation}\",result=\"{result}\"}} {n}");
        }
        out.push_str("# HELP lipa_daraja_request_duration_seconds Daraja call latency.\n# TYPE lipa_daraja_request_duration_seconds histogram\n");
        for (operation, h) in self.daraja_latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            h.render(&mut out, "lipa_daraja_request_duration_seconds", &format!("operation=\"{operation}\""));
        }
        out
    }
}

/// A short label for a Daraja error.
pub fn error_label(e: &daraja::Error) -> String {
    match e {
        daraja::Error::InvalidInput(_) => "invalid_input".into(),
        daraja::Error::Transport { timed_out: true, .. } => "timeout".into(),
        daraja::Error::Transport { .. } => "transport".into(),
        daraja::Error::Decode { .. } => "decode".into(),
        daraja::Error::Api(api) => {
            let kind = format!("{:?}", api.kind);
            let kind = kind.split('(').next().unwrap_or("other");
            let mut label = String::new();
            for (i, c) in kind.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    label.push('_');
                }
                label.push(c.to_ascii_lowercase());
            }
            label
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.callback(Outcome::Applied, Duration::from_millis(3));
        m.callback(Outcome::Duplicate, Duration::from_millis(30));
        m.daraja("stk_push", "ok", Duration::from_millis(120));
        let text = m.render(&[("paid".into(), 1)]);
        assert!(text.contains("lipa_payments{status=\"paid\"} 1"));
        assert!(text.contains("lipa_callbacks_total{outcome=\"applied\"} 1"));
        assert!(text.contains("lipa_callback_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("lipa_callback_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("lipa_daraja_requests_total{operation=\"stk_push\",result=\"ok\"} 1"));
        assert!(text.contains("lipa_daraja_request_duration_seconds_count{operation=\"stk_push\"} 1"));
    }

    #[test]
    fn error_labels_are_snake_case_kinds() {
        let api = |kind| {
            daraja::Error::Api(daraja::ApiError {
                operation: "stk_push",
                status: 500,
                request_id: String::new(),
                code: String::new(),
                message: String::new(),
                kind,
            })
        };
        assert_eq!(error_label(&api(daraja::ApiErrorKind::SpikeArrest)), "spike_arrest");
        assert_eq!(error_label(&api(daraja::ApiErrorKind::InvalidField("Amount".into()))), "invalid_field");
    }
}
