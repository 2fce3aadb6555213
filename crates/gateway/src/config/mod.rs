//! Settings: defaults, then an optional TOML file, then environment variables (the names
//! people already use: `MPESA_CONSUMER_KEY`, `MPESA_PASSKEY`, `CALLBACK_BASE_URL`, …).
//!
//! Secrets are [`daraja::Secret`]s, so `Debug` of the settings is safe to log. [`Settings::check`]
//! lints a configuration (what `lipa config check` prints); [`Settings::validate`] refuses to
//! start on errors. Every finding names the setting and says what to change.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use daraja::Secret;

use crate::redact;

mod check;
mod load;
mod refunds;

pub use refunds::RefundSettings;

/// The commented example `lipa config print` shows.
pub const EXAMPLE: &str = include_str!("../lipa.example.toml");

/// Which Daraja the gateway talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpesaEnvironment {
    /// Safaricom's sandbox.
    Sandbox,
    /// Safaricom's production API.
    Production,
    /// The built-in simulator, started in-process (the default with no credentials).
    Simulator,
}

impl MpesaEnvironment {
    /// Its `MPESA_ENVIRONMENT` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Production => "production",
            Self::Simulator => "simulator",
        }
    }
}

/// Daraja credentials and account.
#[derive(Debug, Clone)]
pub struct MpesaSettings {
    /// Which Daraja.
    pub environment: MpesaEnvironment,
    /// Whether the environment was chosen because nothing was configured.
    pub environment_defaulted: bool,
    /// Overrides the Daraja host (`MPESA_BASE_URL`).
    pub base_url: Option<String>,
    /// `MPESA_CONSUMER_KEY`.
    pub consumer_key: Option<Secret>,
    /// `MPESA_CONSUMER_SECRET`.
    pub consumer_secret: Option<Secret>,
    /// `MPESA_PASSKEY`.
    pub passkey: Option<Secret>,
    /// `MPESA_SHORTCODE` / `MPESA_BUSINESS_SHORTCODE`: the paybill, or a till's store number.
    pub shortcode: Option<String>,
    /// `MPESA_TILL_NUMBER`: set for Buy Goods tills.
    pub till_number: Option<String>,
    /// How long to wait for Daraja's answer before treating a push as "may have reached".
    pub request_timeout: Duration,
}

/// Limits on payments and pushes.
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// Largest amount accepted (KES).
    pub max_amount: u32,
    /// How long a pushed prompt stays open on the phone: the checkout page's countdown, and no
    /// second push to the phone meanwhile. Daraja's prompts last about 60 s.
    pub prompt_lifetime: Duration,
    /// Pushes allowed per phone per hour.
    pub pushes_per_phone_per_hour: u32,
    /// Pushes allowed per second across the gateway process.
    pub pushes_per_second: u32,
}

/// Reconciliation timing.
#[derive(Debug, Clone)]
pub struct ReconciliationSettings {
    /// First STK Query this long after an accepted push with no callback.
    pub first_query_after: Duration,
    /// Between queries answered "being processed".
    pub query_interval: Duration,
    /// Pending this long with nothing conclusive: expired.
    pub expire_after: Duration,
    /// STK Queries per second (shared by all queries of the process).
    pub queries_per_second: u32,
}

/// Safaricom's callback source addresses as published by SDKs (reference §4.6).
pub const SAFARICOM_CALLBACK_IPS: [&str; 12] = [
    "196.201.214.200",
    "196.201.214.206",
    "196.201.213.114",
    "196.201.214.207",
    "196.201.214.208",
    "196.201.213.44",
    "196.201.212.127",
    "196.201.212.138",
    "196.201.212.129",
    "196.201.212.136",
    "196.201.212.74",
    "196.201.212.69",
];

/// Who may send callbacks.
#[derive(Debug, Clone, Default)]
pub struct CallbackSettings {
    /// Allowed source addresses; empty means no check (`LIPA_CALLBACK_ALLOWLIST`, where
    /// `safaricom` stands for Safaricom's published addresses).
    pub allowlist: Vec<std::net::IpAddr>,
    /// Refuse (403) callbacks from other addresses instead of only logging them
    /// (`LIPA_CALLBACK_ALLOWLIST_ENFORCE`).
    pub enforce_allowlist: bool,
    /// Header a trusted reverse proxy puts the client address in, e.g. `X-Forwarded-For`
    /// (`LIPA_TRUSTED_PROXY_HEADER`). Without it the TCP peer address is used.
    pub trusted_proxy_header: Option<String>,
}

/// Paybill and Till payments (C2B): customers paying by hand.
#[derive(Debug, Clone)]
pub struct C2bSettings {
    /// Answer Daraja's validation requests by the rules (unknown account numbers and amounts
    /// other than what is due are refused, so the customer's money does not move) instead
    /// of accepting everything (`LIPA_C2B_VALIDATION`). Only shortcodes Safaricom turned
    /// external validation on for are asked at all.
    pub validation: bool,
    /// How long after it was created a payment can be paid by hand (`[c2b] open_hours`).
    pub open_for: Duration,
    /// Which Register URL path this Daraja app may call (`MPESA_C2B_REGISTER_VERSION`).
    pub register_version: daraja::c2b::RegisterVersion,
    /// What Daraja does when validation does not answer in time (`[c2b] response_type`).
    pub response_type: daraja::c2b::DefaultAction,
    /// How often to pull the shortcode's recent transactions, to recover confirmations that
    /// never arrived (`[c2b] pull_interval_minutes`; 0 turns it off).
    pub pull_every: Duration,
    /// How far back each pull looks (`[c2b] pull_lookback_hours`); Daraja keeps about 48 h.
    pub pull_lookback: Duration,
    /// The M-PESA number Safaricom tells about the Pull Transactions registration
    /// (`MPESA_PULL_NOMINATED_NUMBER`).
    pub nominated_number: Option<String>,
    /// How a till payment (no account number) finds its payment (`LIPA_C2B_TILL_RULE`).
    pub till_rule: TillRule,
}

/// How a payment by hand with no account number (Buy Goods, to a till) finds its payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TillRule {
    /// It does not: it is unmatched, for a person (`none`).
    #[default]
    None,
    /// The one open payment from the payer's phone due exactly its amount, when Daraja gives
    /// the phone (plain or hashed); else unmatched (`phone_and_amount`).
    PhoneAndAmount,
}

/// Receipt emails.
#[derive(Clone)]
pub struct MailSettings {
    /// `SMTP_URL`: `smtp://user:password@host:587` (STARTTLS), `smtps://…:465` (TLS), or
    /// `smtp://host:25?tls=none` for a local relay. Unset: no emails are sent.
    pub smtp_url: Option<String>,
    /// `MAIL_FROM`: the sender, e.g. `Shop <receipts@shop.example>`.
    pub from: Option<String>,
    /// Retry an unsent email for this long, then give up.
    pub max_age: Duration,
}

impl fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("default_url", &self.default_url.as_deref().map(redact::url))
            .field("max_age", &self.max_age)
            .field("timeout", &self.timeout)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

impl fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailSettings")
            .field("smtp_url", &self.smtp_url.as_deref().map(redact::url))
            .field("from", &self.from)
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// Merchant webhooks.
#[derive(Clone)]
pub struct WebhookSettings {
    /// Where events go when a payment has no `webhook_url` (`LIPA_WEBHOOK_URL`).
    pub default_url: Option<String>,
    /// Retry an undelivered event for this long, then dead-letter it.
    pub max_age: Duration,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// Whether webhooks may go to loopback, private and link-local addresses
    /// (`LIPA_WEBHOOK_ALLOW_PRIVATE`): off, as they reach into the gateway's own network; on
    /// for local development, where the shop runs beside the gateway.
    pub allow_private: bool,
}

/// Everything the gateway is configured with.
#[derive(Clone)]
pub struct Settings {
    /// Address to listen on (`LIPA_LISTEN`).
    pub listen: SocketAddr,
    /// Public base URL of this gateway, for callback URLs (`CALLBACK_BASE_URL`).
    pub public_url: Option<String>,
    /// `DATABASE_URL`: `sqlite:lipa.db` by default.
    pub database_url: String,
    /// Shown to customers (`LIPA_BUSINESS_NAME`).
    pub business_name: String,
    /// Daraja.
    pub mpesa: MpesaSettings,
    /// Payment limits.
    pub payments: PaymentSettings,
    /// Reconciliation.
    pub reconciliation: ReconciliationSettings,
    /// Callback source checks.
    pub callbacks: CallbackSettings,
    /// Merchant webhooks.
    pub webhooks: WebhookSettings,
    /// Receipt emails.
    pub mail: MailSettings,
    /// Paybill and Till payments.
    pub c2b: C2bSettings,
    /// Refunds (Reversal) and Transaction Status.
    pub refunds: RefundSettings,
    /// `LIPA_LOG_FORMAT=json` for JSON logs.
    pub json_logs: bool,
    /// A client must send a request's headers within this (`LIPA_HEADER_TIMEOUT_SECS`,
    /// default 10), and the whole request within 6 times it; slower connections are cut, so
    /// they cannot hold the server's connections (slowloris).
    pub header_timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("database_url", &redact::url(&self.database_url))
            .field("business_name", &self.business_name)
            .field("mpesa", &self.mpesa)
            .field("payments", &self.payments)
            .field("reconciliation", &self.reconciliation)
            .field("callbacks", &self.callbacks)
            .field("webhooks", &self.webhooks)
            .field("mail", &self.mail)
            .field("c2b", &self.c2b)
            .field("refunds", &self.refunds)
            .field("json_logs", &self.json_logs)
            .field("header_timeout", &self.header_timeout)
            .finish()
    }
}

impl Settings {
    /// Every setting as it is in effect, for people to read: its environment variable (or, for
    /// a setting only the file has, its place in `lipa.toml`) and its value, with URLs by the
    /// one redaction rule and secrets only said to be set.
    pub fn shown(&self) -> Vec<(&'static str, String)> {
        let secret = |s: &Option<Secret>| if s.is_some() { "(set, hidden)" } else { "(not set)" }.to_owned();
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "(not set)".to_owned());
        let opt_url = |s: &Option<String>| s.as_deref().map_or_else(|| "(not set)".to_owned(), redact::url);
        let secs = |d: Duration| format!("{} s", d.as_secs());
        let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let m = &self.mpesa;
        let allowlist = if self.callbacks.allowlist.is_empty() {
            "(any address)".to_owned()
        } else {
            self.callbacks.allowlist.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        };
        let mut shown = vec![
            ("LIPA_LISTEN", self.listen.to_string()),
            ("CALLBACK_BASE_URL", opt_url(&self.public_url)),
            ("DATABASE_URL", redact::url(&self.database_url)),
            ("LIPA_BUSINESS_NAME", self.business_name.clone()),
            ("MPESA_ENVIRONMENT", m.environment.as_str().to_owned()),
            ("MPESA_BASE_URL", opt_url(&m.base_url)),
            ("MPESA_CONSUMER_KEY", secret(&m.consumer_key)),
            ("MPESA_CONSUMER_SECRET", secret(&m.consumer_secret)),
            ("MPESA_PASSKEY", secret(&m.passkey)),
            ("MPESA_SHORTCODE", opt(&m.shortcode)),
            ("MPESA_TILL_NUMBER", opt(&m.till_number)),
            ("[mpesa] request_timeout_secs", secs(m.request_timeout)),
            ("LIPA_MAX_AMOUNT", format!("KES {}", self.payments.max_amount)),
            ("[payments] prompt_lifetime_secs", secs(self.payments.prompt_lifetime)),
            ("[payments] pushes_per_phone_per_hour", self.payments.pushes_per_phone_per_hour.to_string()),
            ("[payments] pushes_per_second", self.payments.pushes_per_second.to_string()),
            ("[reconciliation] first_query_after_secs", secs(self.reconciliation.first_query_after)),
            ("[reconciliation] query_interval_secs", secs(self.reconciliation.query_interval)),
            ("[reconciliation] expire_after_secs", secs(self.reconciliation.expire_after)),
            ("[reconciliation] queries_per_second", self.reconciliation.queries_per_second.to_string()),
            ("LIPA_CALLBACK_ALLOWLIST", allowlist),
            ("LIPA_CALLBACK_ALLOWLIST_ENFORCE", yes(self.callbacks.enforce_allowlist)),
            ("LIPA_TRUSTED_PROXY_HEADER", opt(&self.callbacks.trusted_proxy_header)),
            ("LIPA_WEBHOOK_URL", opt_url(&self.webhooks.default_url)),
            ("LIPA_WEBHOOK_ALLOW_PRIVATE", yes(self.webhooks.allow_private)),
            ("[webhooks] max_age_hours", format!("{} h", self.webhooks.max_age.as_secs() / 3600)),
            ("[webhooks] timeout_secs", secs(self.webhooks.timeout)),
            ("LIPA_C2B_VALIDATION", yes(self.c2b.validation)),
            ("[c2b] open_hours", format!("{} h", self.c2b.open_for.as_secs() / 3600)),
            ("MPESA_C2B_REGISTER_VERSION", format!("{:?}", self.c2b.register_version).to_ascii_lowercase()),
            ("[c2b] response_type", self.c2b.response_type.as_str().to_owned()),
            ("[c2b] pull_interval_minutes", format!("{} min", self.c2b.pull_every.as_secs() / 60)),
            ("[c2b] pull_lookback_hours", format!("{} h", self.c2b.pull_lookback.as_secs() / 3600)),
            ("MPESA_PULL_NOMINATED_NUMBER", opt(&self.c2b.nominated_number)),
            (
                "LIPA_C2B_TILL_RULE",
                match self.c2b.till_rule {
                    TillRule::None => "none",
                    TillRule::PhoneAndAmount => "phone_and_amount",
                }
                .to_owned(),
            ),
            ("SMTP_URL", opt_url(&self.mail.smtp_url)),
            ("MAIL_FROM", opt(&self.mail.from)),
            ("LIPA_HEADER_TIMEOUT_SECS", secs(self.header_timeout)),
            ("LIPA_LOG_FORMAT", if self.json_logs { "json" } else { "text" }.to_owned()),
        ];
        shown.extend(self.refunds.shown());
        shown
    }
}

/// A configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether it stops the gateway from starting.
    pub error: bool,
    /// The setting, as its environment variable.
    pub setting: &'static str,
    /// What is wrong and what to change.
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = if self.error { "error" } else { "warning" };
        write!(f, "{level}: {}: {}", self.setting, self.message)
    }
}

/// Settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A value is malformed.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `validate` found errors.
    #[error("the configuration has errors:\n{}", .0.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n"))]
    Findings(Vec<Finding>),
}

impl Settings {
    /// The Daraja client and merchant for sandbox or production (not the simulator, which the
    /// binary starts and describes with [`DarajaConnection::custom`]).
    pub fn daraja_connection(&self) -> Result<DarajaConnection, ConfigError> {
        self.validate()?;
        let m = &self.mpesa;
        let invalid = |setting, e: daraja::InvalidField| ConfigError::Invalid { setting, message: e.reason };
        let environment = match (&m.base_url, m.environment) {
            (Some(url), _) => daraja::Environment::Custom(url::Url::parse(url).map_err(|e| ConfigError::Invalid {
                setting: "MPESA_BASE_URL",
                message: format!("{url:?} is not a URL: {e}"),
            })?),
            (None, MpesaEnvironment::Production) => daraja::Environment::Production,
            (None, _) => daraja::Environment::Sandbox,
        };
        let missing = |setting| ConfigError::Invalid { setting, message: "is not set".into() };
        let credentials = daraja::Credentials::new(
            m.consumer_key.clone().ok_or_else(|| missing("MPESA_CONSUMER_KEY"))?,
            m.consumer_secret.clone().ok_or_else(|| missing("MPESA_CONSUMER_SECRET"))?,
        )
        .map_err(|e| invalid("MPESA_CONSUMER_KEY", e))?;
        let shortcode = daraja::ShortCode::parse(m.shortcode.as_deref().unwrap_or_default())
            .map_err(|e| invalid("MPESA_SHORTCODE", e))?;
        let passkey = m.passkey.clone().ok_or_else(|| missing("MPESA_PASSKEY"))?;
        let merchant = match &m.till_number {
            Some(till) => daraja::Merchant::till(
                shortcode,
                daraja::TillNumber::parse(till).map_err(|e| invalid("MPESA_TILL_NUMBER", e))?,
                passkey,
            ),
            None => daraja::Merchant::paybill(shortcode, passkey),
        };
        Ok(DarajaConnection { environment, credentials, merchant, initiator: self.initiator()? })
    }
}

/// Where and as whom the gateway calls Daraja.
#[derive(Debug, Clone)]
pub struct DarajaConnection {
    /// Host.
    pub environment: daraja::Environment,
    /// App credentials.
    pub credentials: daraja::Credentials,
    /// The account paid.
    pub merchant: daraja::Merchant,
    /// Who refunds run as, when refunds are set up.
    pub initiator: Option<daraja::Initiator>,
}

impl DarajaConnection {
    /// A connection to a Daraja at `base_url` (the simulator) with a paybill.
    pub fn custom(
        base_url: &str,
        consumer_key: &str,
        consumer_secret: &str,
        shortcode: u32,
        passkey: &str,
    ) -> Result<Self, ConfigError> {
        let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
        Ok(Self {
            environment: daraja::Environment::Custom(
                url::Url::parse(base_url).map_err(|e| invalid("MPESA_BASE_URL", e.to_string()))?,
            ),
            credentials: daraja::Credentials::new(consumer_key, consumer_secret)
                .map_err(|e| invalid("MPESA_CONSUMER_KEY", e.reason))?,
            merchant: daraja::Merchant::paybill(
                daraja::ShortCode::parse(&shortcode.to_string()).map_err(|e| invalid("MPESA_SHORTCODE", e.reason))?,
                Secret::new(passkey),
            ),
            initiator: None,
        })
    }

    /// The same, with refunds run as `initiator`.
    pub fn with_initiator(mut self, initiator: Option<daraja::Initiator>) -> Self {
        self.initiator = initiator;
        self
    }

    /// The same, with refunds run as the initiator `name` whose `password` is encrypted with
    /// the certificate `certificate` (PEM or DER): a simulator's.
    pub fn with_initiator_from(self, name: &str, password: &str, certificate: &[u8]) -> Result<Self, ConfigError> {
        let invalid = |setting, e: daraja::InvalidField| ConfigError::Invalid { setting, message: e.reason };
        let certificate = daraja::Certificate::parse(certificate).map_err(|e| invalid("MPESA_CERTIFICATE", e))?;
        let credential =
            certificate.encrypt(&Secret::new(password)).map_err(|e| invalid("MPESA_INITIATOR_PASSWORD", e))?;
        let initiator = daraja::Initiator::new(name, credential).map_err(|e| invalid("MPESA_INITIATOR_NAME", e))?;
        Ok(self.with_initiator(Some(initiator)))
    }
}
