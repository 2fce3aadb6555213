//! The payments service: what the API and the workers do, independent of HTTP. The
//! `Gateway` holds what they share; creating a payment is in `create.rs`, receiving a
//! callback here.

use std::sync::Arc;

use daraja::{AccountReference, Amount, CallbackUrl, Msisdn, StkPush, TransactionDesc};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::config::{DarajaConnection, Settings};
use crate::ids;
use crate::payment::Payment;
use crate::rate::RateLimiter;
use crate::store::{
    ApiKey, CallbackStored, CheckoutAttempt, IncomingCallback, Inserted, NewPayment, PushResult, Store, StoreError,
};
use crate::time_fmt::ms;
use crate::time_fmt::to_millis;

mod c2b;
mod checks;
mod create;
mod refund;

pub use checks::CheckError;
pub use create::{CreateError, CreatePayment, Created};
pub use refund::{RefundCreated, RefundError, RefundRequest};

/// The gateway's shared state.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    settings: Settings,
    daraja: daraja::Client,
    merchant: daraja::Merchant,
    /// Who refunds run as (`None`: refunds are not set up).
    initiator: Option<daraja::Initiator>,
    public_url: String,
    clock: daraja::SharedClock,
    push_limit: RateLimiter,
    query_limit: RateLimiter,
    metrics: crate::metrics::Metrics,
    webhook_client: reqwest::Client,
    /// Callbacks no payment took, stored per minute.
    unmatched_stored: crate::budget::PerMinute,
    /// Log lines about callbacks no payment took.
    unmatched_logged: crate::budget::LogBudget,
    /// Log lines about callbacks from addresses outside the allowlist.
    source_logged: crate::budget::LogBudget,
    key_last_used: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    changes: tokio::sync::broadcast::Sender<crate::payment::PaymentId>,
    /// Set when the server stops: open event streams end, so shutdown does not wait on them.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The secret path segment of the C2B URLs, read from the store at start-up.
    c2b_path: std::sync::OnceLock<String>,
}

impl Gateway {
    /// Wires the gateway. `public_url` is the base of callback URLs.
    pub fn new(
        store: Store,
        settings: Settings,
        connection: DarajaConnection,
        public_url: String,
        clock: daraja::SharedClock,
    ) -> Result<Self, daraja::Error> {
        let daraja = daraja::Client::builder(connection.environment, connection.credentials)
            .clock(clock.clone())
            .request_timeout(settings.mpesa.request_timeout)
            .build()?;
        let mut webhook_client = reqwest::Client::builder();
        if !settings.webhooks.allow_private {
            // Through a proxy the resolver would only ever see the proxy's name.
            webhook_client = webhook_client.dns_resolver(std::sync::Arc::new(crate::outbound::PublicOnly)).no_proxy();
        }
        let webhook_client = webhook_client
            .timeout(settings.webhooks.timeout)
            .pool_idle_timeout(daraja::IDLE_CONNECTION_KEPT)
            // A redirect would send the signed event somewhere the merchant did not configure.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lipa-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| daraja::Error::Transport {
                operation: "build",
                may_have_reached_safaricom: false,
                timed_out: false,
                source,
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                push_limit: RateLimiter::per_second(settings.payments.pushes_per_second),
                query_limit: RateLimiter::per_second(settings.reconciliation.queries_per_second),
                store,
                settings,
                daraja,
                merchant: connection.merchant,
                initiator: connection.initiator,
                public_url: public_url.trim_end_matches('/').to_owned(),
                clock,
                metrics: crate::metrics::Metrics::default(),
                unmatched_stored: crate::budget::PerMinute::new(crate::budget::UNMATCHED_STORED_PER_MINUTE),
                unmatched_logged: crate::budget::LogBudget::default(),
                source_logged: crate::budget::LogBudget::default(),
                key_last_used: std::sync::Mutex::default(),
                webhook_client,
                changes: tokio::sync::broadcast::channel(1024).0,
                stopping: tokio::sync::watch::channel(false).0,
                c2b_path: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Now, in UTC milliseconds, from the gateway's clock.
    pub fn now(&self) -> i64 {
        to_millis(self.inner.clock.now())
    }

    pub(crate) fn daraja(&self) -> (&daraja::Client, &daraja::Merchant) {
        (&self.inner.daraja, &self.inner.merchant)
    }

    /// Whether the server is stopping; event streams end when it is.
    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    /// Ends the open event streams: the server is stopping.
    pub(crate) fn stop_streams(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Payments that changed in this process (callbacks, queries, expiry, pushes). Streams
    /// subscribe to wake up at once instead of waiting for their next re-read.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<crate::payment::PaymentId> {
        self.inner.changes.subscribe()
    }

    pub(crate) fn changed(&self, id: &crate::payment::PaymentId) {
        let _ = self.inner.changes.send(id.clone());
    }

    /// The public base URL (callbacks, checkout pages).
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// Notes that an API key was used: written to the database at most once a minute per key
    /// and process, off the request's path.
    pub(crate) fn key_used(&self, key_id: &str) {
        let now = self.now();
        {
            let mut seen = self.inner.key_last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match seen.get(key_id) {
                Some(at) if now - at < 60_000 => return,
                _ => seen.insert(key_id.to_owned(), now),
            };
        }
        let (store, id) = (self.inner.store.clone(), key_id.to_owned());
        tokio::spawn(async move {
            let update = ("UPDATE api_keys SET last_used_at = $2 WHERE id = $1", vec![id.into(), now.into()]);
            if let Err(e) = store.execute_all(vec![update]).await {
                tracing::debug!(error = %e, "could not record an API key's last use");
            }
        });
    }

    pub(crate) fn webhook_client(&self) -> &reqwest::Client {
        &self.inner.webhook_client
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    pub(crate) fn query_limit(&self) -> &RateLimiter {
        &self.inner.query_limit
    }

    /// Whether to log, now, that a callback came from an address outside the allowlist (an
    /// outsider controls how often), and how many such lines were left out the minute before.
    pub(crate) fn log_foreign_source(&self) -> (bool, u32) {
        self.inner.source_logged.allow(self.now())
    }

    /// Stores a callback for `token` and applies it. Answers only after the commit.
    ///
    /// A callback no payment took (anyone can send one) is stored within a budget per minute
    /// ([`crate::budget::UNMATCHED_STORED_PER_MINUTE`], each cut to its first bytes) and only
    /// counted beyond it, and its log line is rate-limited: a flood of them costs bounded disk
    /// and log.
    #[tracing::instrument(skip_all, fields(payment_id))]
    pub async fn ingest_callback(
        &self,
        token: &str,
        body: Vec<u8>,
        parsed: Result<daraja::StkCallback, daraja::CallbackError>,
        source: Option<String>,
    ) -> Result<CallbackStored, StoreError> {
        let started = std::time::Instant::now();
        let received_at = self.now();
        let stored = self
            .inner
            .store
            .settle_from_callback(IncomingCallback {
                token_hash: ids::sha256_hex(token.as_bytes()),
                body,
                source,
                received_at,
                parsed,
                keep_if_unmatched: self.inner.unmatched_stored.has_room(received_at),
            })
            .await?;
        self.inner.metrics.callback(stored.outcome, started.elapsed());
        match &stored.payment_id {
            Some(id) => {
                tracing::Span::current().record("payment_id", id.as_str());
                self.changed(id);
                if stored.outcome.needs_review() {
                    tracing::warn!(outcome = stored.outcome.as_str(), "callback stored for review");
                } else {
                    tracing::debug!(outcome = stored.outcome.as_str(), "callback stored");
                }
            }
            None => {
                if stored.stored {
                    self.inner.unmatched_stored.take(received_at);
                } else {
                    self.inner.metrics.callback_counted();
                }
                let (log, left_out) = self.inner.unmatched_logged.allow(received_at);
                if log {
                    tracing::warn!(
                        outcome = stored.outcome.as_str(),
                        stored = stored.stored,
                        left_out_last_minute = left_out,
                        "a callback no payment took"
                    );
                }
            }
        }
        Ok(stored)
    }
}
