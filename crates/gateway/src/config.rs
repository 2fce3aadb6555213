//! Settings: defaults, then an optional TOML file, then environment variables (the names
//! people already use: `MPESA_CONSUMER_KEY`, `MPESA_PASSKEY`, `CALLBACK_BASE_URL`, …).
//!
//! Secrets are [`daraja::Secret`]s, so `Debug` of the settings is safe to log. [`Settings::check`]
//! lints a configuration (what `lipa config check` prints); [`Settings::validate`] refuses to
//! start on errors. Every finding names the setting and says what to change.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use daraja::Secret;
use serde::Deserialize;

use crate::redact;

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
    /// How long a pushed prompt counts as live on the phone (no second push meanwhile).
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
        vec![
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
            ("SMTP_URL", opt_url(&self.mail.smtp_url)),
            ("MAIL_FROM", opt(&self.mail.from)),
            ("LIPA_HEADER_TIMEOUT_SECS", secs(self.header_timeout)),
            ("LIPA_LOG_FORMAT", if self.json_logs { "json" } else { "text" }.to_owned()),
        ]
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    public_url: Option<String>,
    database_url: Option<String>,
    business_name: Option<String>,
    #[serde(default)]
    mpesa: FileMpesa,
    #[serde(default)]
    payments: FilePayments,
    #[serde(default)]
    reconciliation: FileReconciliation,
    #[serde(default)]
    callbacks: FileCallbacks,
    #[serde(default)]
    webhooks: FileWebhooks,
    #[serde(default)]
    mail: FileMail,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMail {
    smtp_url: Option<String>,
    from: Option<String>,
    max_age_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhooks {
    default_url: Option<String>,
    max_age_hours: Option<u64>,
    timeout_secs: Option<u64>,
    allow_private: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCallbacks {
    allowlist: Option<Vec<String>>,
    enforce_allowlist: Option<bool>,
    trusted_proxy_header: Option<String>,
}

fn allowlist(entries: &[String]) -> Result<Vec<std::net::IpAddr>, ConfigError> {
    let mut out = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        if entry.eq_ignore_ascii_case("safaricom") {
            out.extend(SAFARICOM_CALLBACK_IPS.iter().filter_map(|ip| ip.parse::<std::net::IpAddr>().ok()));
        } else {
            out.push(entry.parse().map_err(|_| ConfigError::Invalid {
                setting: "LIPA_CALLBACK_ALLOWLIST",
                message: format!("{entry:?} is not an IP address (or the word safaricom)"),
            })?);
        }
    }
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMpesa {
    environment: Option<String>,
    base_url: Option<String>,
    consumer_key: Option<String>,
    consumer_secret: Option<String>,
    passkey: Option<String>,
    shortcode: Option<String>,
    till_number: Option<String>,
    request_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePayments {
    max_amount: Option<u32>,
    prompt_lifetime_secs: Option<u64>,
    pushes_per_phone_per_hour: Option<u32>,
    pushes_per_second: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReconciliation {
    first_query_after_secs: Option<u64>,
    query_interval_secs: Option<u64>,
    expire_after_secs: Option<u64>,
    queries_per_second: Option<u32>,
}

/// The commented example `lipa config print` shows.
pub const EXAMPLE: &str = include_str!("lipa.example.toml");

/// A yes/no setting: the environment's `1`, `true` or `yes` (anything else is no), else the
/// file's, else no.
fn flag(env: Option<String>, file: Option<bool>) -> bool {
    env.map(|v| matches!(v.trim(), "1" | "true" | "yes")).or(file).unwrap_or(false)
}

fn number<T: std::str::FromStr>(setting: &'static str, value: Option<String>) -> Result<Option<T>, ConfigError> {
    value
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| ConfigError::Invalid { setting, message: format!("{v:?} is not a whole number") })
        })
        .transpose()
}

impl Settings {
    /// Loads defaults, then `file` (if given and present), then the environment through `env`.
    pub fn load(file: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let f: FileSettings = match file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::File { path: path.display().to_string(), message: e.to_string() })?;
                toml::from_str(&text)
                    .map_err(|e| ConfigError::File { path: path.display().to_string(), message: e.to_string() })?
            }
            _ => FileSettings::default(),
        };
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let pick = |var: &str, file: Option<String>| env(var).or(file);

        let listen_text = pick("LIPA_LISTEN", f.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text.trim().parse().map_err(|_| ConfigError::Invalid {
            setting: "LIPA_LISTEN",
            message: format!("{listen_text:?} is not an address like 127.0.0.1:8080"),
        })?;

        let consumer_key = pick("MPESA_CONSUMER_KEY", f.mpesa.consumer_key);
        let consumer_secret = pick("MPESA_CONSUMER_SECRET", f.mpesa.consumer_secret);
        let passkey = pick("MPESA_PASSKEY", f.mpesa.passkey);
        let nothing_configured = consumer_key.is_none() && consumer_secret.is_none() && passkey.is_none();
        let env_text = pick("MPESA_ENVIRONMENT", f.mpesa.environment);
        let environment = match env_text.as_deref().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None if nothing_configured => MpesaEnvironment::Simulator,
            None | Some("sandbox") => MpesaEnvironment::Sandbox,
            Some("production") => MpesaEnvironment::Production,
            Some("simulator") => MpesaEnvironment::Simulator,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    setting: "MPESA_ENVIRONMENT",
                    message: format!("{other:?} is not one of sandbox, production, simulator"),
                });
            }
        };

        let p = f.payments;
        let r = f.reconciliation;
        let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default));
        Ok(Self {
            listen,
            public_url: pick("CALLBACK_BASE_URL", f.public_url).map(|u| u.trim_end_matches('/').to_owned()),
            database_url: pick("DATABASE_URL", f.database_url).unwrap_or_else(|| "sqlite:lipa.db".into()),
            business_name: pick("LIPA_BUSINESS_NAME", f.business_name).unwrap_or_else(|| "Lipa Demo Shop".into()),
            mpesa: MpesaSettings {
                environment,
                environment_defaulted: env_text.is_none() && nothing_configured,
                base_url: pick("MPESA_BASE_URL", f.mpesa.base_url),
                consumer_key: consumer_key.map(Secret::from),
                consumer_secret: consumer_secret.map(Secret::from),
                passkey: passkey.map(Secret::from),
                shortcode: env("MPESA_SHORTCODE").or_else(|| env("MPESA_BUSINESS_SHORTCODE")).or(f.mpesa.shortcode),
                till_number: pick("MPESA_TILL_NUMBER", f.mpesa.till_number),
                request_timeout: secs(f.mpesa.request_timeout_secs, 20),
            },
            payments: PaymentSettings {
                max_amount: number("LIPA_MAX_AMOUNT", env("LIPA_MAX_AMOUNT"))?.or(p.max_amount).unwrap_or(250_000),
                prompt_lifetime: secs(p.prompt_lifetime_secs, 90),
                pushes_per_phone_per_hour: p.pushes_per_phone_per_hour.unwrap_or(10),
                pushes_per_second: p.pushes_per_second.unwrap_or(200),
            },
            reconciliation: ReconciliationSettings {
                first_query_after: secs(r.first_query_after_secs, 20),
                query_interval: secs(r.query_interval_secs, 15),
                expire_after: secs(r.expire_after_secs, 180),
                queries_per_second: r.queries_per_second.unwrap_or(5),
            },
            callbacks: CallbackSettings {
                allowlist: allowlist(
                    &env("LIPA_CALLBACK_ALLOWLIST")
                        .map(|v| v.split(',').map(str::to_owned).collect())
                        .or(f.callbacks.allowlist)
                        .unwrap_or_default(),
                )?,
                enforce_allowlist: flag(env("LIPA_CALLBACK_ALLOWLIST_ENFORCE"), f.callbacks.enforce_allowlist),
                trusted_proxy_header: pick("LIPA_TRUSTED_PROXY_HEADER", f.callbacks.trusted_proxy_header),
            },
            webhooks: WebhookSettings {
                default_url: pick("LIPA_WEBHOOK_URL", f.webhooks.default_url),
                max_age: Duration::from_secs(f.webhooks.max_age_hours.unwrap_or(72).saturating_mul(3600)),
                timeout: secs(f.webhooks.timeout_secs, 10),
                allow_private: flag(env("LIPA_WEBHOOK_ALLOW_PRIVATE"), f.webhooks.allow_private),
            },
            mail: MailSettings {
                smtp_url: pick("SMTP_URL", f.mail.smtp_url),
                from: pick("MAIL_FROM", f.mail.from),
                max_age: Duration::from_secs(f.mail.max_age_hours.unwrap_or(72).saturating_mul(3600)),
            },
            json_logs: env("LIPA_LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")),
            header_timeout: Duration::from_secs(
                number("LIPA_HEADER_TIMEOUT_SECS", env("LIPA_HEADER_TIMEOUT_SECS"))?.unwrap_or(10u64).max(1),
            ),
        })
    }

    /// Loads from the process environment and `lipa.toml` (or `LIPA_CONFIG`).
    pub fn from_environment() -> Result<Self, ConfigError> {
        let file = std::env::var("LIPA_CONFIG").unwrap_or_else(|_| "lipa.toml".into());
        Self::load(Some(Path::new(&file)), &|name| std::env::var(name).ok())
    }

    /// Lints the configuration; errors stop the gateway, warnings are advice.
    pub fn check(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut error = |setting, message: String| out.push(Finding { error: true, setting, message });
        let m = &self.mpesa;
        let real = m.environment != MpesaEnvironment::Simulator;
        if real {
            for (setting, value) in [
                ("MPESA_CONSUMER_KEY", &m.consumer_key),
                ("MPESA_CONSUMER_SECRET", &m.consumer_secret),
                ("MPESA_PASSKEY", &m.passkey),
            ] {
                match value {
                    None => error(
                        setting,
                        "is not set; copy it from your Daraja app (or use MPESA_ENVIRONMENT=simulator)".into(),
                    ),
                    Some(s) if s.is_blank() => error(setting, "is empty".into()),
                    Some(s) if s.expose().trim() != s.expose() => {
                        error(setting, "has spaces or line breaks around it; remove them".into())
                    }
                    Some(_) => {}
                }
            }
            match &m.shortcode {
                None => error("MPESA_SHORTCODE", "is not set; use your paybill, or your till's store number".into()),
                Some(code) if daraja::ShortCode::parse(code).is_err() => {
                    error("MPESA_SHORTCODE", format!("{code:?} is not a 5 to 7 digit shortcode"))
                }
                Some(_) => {}
            }
            if let Some(till) = &m.till_number {
                if daraja::TillNumber::parse(till).is_err() {
                    error("MPESA_TILL_NUMBER", format!("{till:?} is not a 5 to 7 digit till number"));
                } else if m.shortcode.as_deref() == Some(till.as_str()) {
                    error(
                        "MPESA_TILL_NUMBER",
                        "equals MPESA_SHORTCODE; for a till, MPESA_SHORTCODE is the store (head office) number and the till goes here".into(),
                    );
                }
            }
            match self.public_url.as_deref() {
                None => error(
                    "CALLBACK_BASE_URL",
                    "is not set; Safaricom needs the public https address of this gateway".into(),
                ),
                Some(url) => {
                    if let Err(e) = daraja::CallbackUrl::parse(&format!("{url}/callbacks/stk/0")) {
                        error("CALLBACK_BASE_URL", e.reason);
                    } else if !url.starts_with("https://") {
                        error("CALLBACK_BASE_URL", format!("{url:?} must use https for Safaricom"));
                    }
                }
            }
        }
        if m.environment == MpesaEnvironment::Production {
            if m.shortcode.as_deref() == Some("174379") {
                error(
                    "MPESA_SHORTCODE",
                    "174379 is the public sandbox shortcode; use your live paybill or store number".into(),
                );
            }
            if m.passkey
                .as_ref()
                .is_some_and(|p| p.expose() == "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919")
            {
                error(
                    "MPESA_PASSKEY",
                    "is the public sandbox passkey; use the production passkey Safaricom emailed you".into(),
                );
            }
            if m.base_url.is_some() {
                out.push(Finding {
                    error: false,
                    setting: "MPESA_BASE_URL",
                    message: "overrides the production host; make sure this is intended (an egress proxy?)".into(),
                });
            }
        }
        if let Some(url) = &self.public_url {
            let lower = url.to_ascii_lowercase();
            if ["ngrok", "mockbin", "requestbin"].iter().any(|w| lower.contains(w)) {
                out.push(Finding {
                    error: false,
                    setting: "CALLBACK_BASE_URL",
                    message:
                        "tunnelling and request-bin hosts are usually blocked by Safaricom, especially in production"
                            .into(),
                });
            }
        }
        if m.environment == MpesaEnvironment::Production && self.callbacks.allowlist.is_empty() {
            out.push(Finding {
                error: false,
                setting: "LIPA_CALLBACK_ALLOWLIST",
                message: "is empty; consider `safaricom` to log (or, with LIPA_CALLBACK_ALLOWLIST_ENFORCE, refuse) callbacks from other addresses".into(),
            });
        }
        if let Some(url) = &self.webhooks.default_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {
                    if let Err(e) = crate::outbound::check_url(&u, self.webhooks.allow_private) {
                        out.push(Finding { error: true, setting: "LIPA_WEBHOOK_URL", message: e });
                    }
                }
                _ => out.push(Finding {
                    error: true,
                    setting: "LIPA_WEBHOOK_URL",
                    message: format!("{} is not an absolute http(s) URL", redact::url(url)),
                }),
            }
        }
        if self.mail.smtp_url.is_some() {
            let from = self.mail.from.as_deref().unwrap_or_default();
            if from.parse::<lettre::message::Mailbox>().is_err() {
                out.push(Finding {
                    error: true,
                    setting: "MAIL_FROM",
                    message: format!("{from:?} is not a sender address; use e.g. \"Shop <receipts@shop.example>\""),
                });
            }
            if let Err(e) = crate::smtp::parse(self.mail.smtp_url.as_deref().unwrap_or_default()) {
                out.push(Finding { error: true, setting: "SMTP_URL", message: e });
            }
        }
        let p = &self.payments;
        if p.max_amount == 0 || p.max_amount > 250_000 {
            out.push(Finding {
                error: true,
                setting: "LIPA_MAX_AMOUNT",
                message: format!("{} is out of range: use 1 to 250000, M-Pesa's limit for one payment", p.max_amount),
            });
        }
        let db = &self.database_url;
        if !(db.starts_with("sqlite:") || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            out.push(Finding {
                error: true,
                setting: "DATABASE_URL",
                message: "use sqlite:<file> (e.g. sqlite:lipa.db) or postgres://user@host/database".into(),
            });
        }
        if let Some(why) = db.strip_prefix("sqlite:").and_then(sqlite_not_durable) {
            out.push(Finding {
                error: true,
                setting: "DATABASE_URL",
                message: format!(
                    "{why}: every acknowledged payment would be lost when Lipa stops; use a file, e.g. sqlite:lipa.db"
                ),
            });
        }
        out
    }

    /// Refuses a configuration with errors.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let errors: Vec<_> = self.check().into_iter().filter(|f| f.error).collect();
        if errors.is_empty() { Ok(()) } else { Err(ConfigError::Findings(errors)) }
    }

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
        Ok(DarajaConnection { environment, credentials, merchant })
    }
}

/// Why the SQLite database at `path` (a `sqlite:` URL without its scheme) would keep nothing
/// across a restart, if it would: an in-memory database, or none named (SQLite then makes a
/// temporary one and deletes it on close).
fn sqlite_not_durable(path: &str) -> Option<&'static str> {
    let path = path.trim_start_matches("//");
    let (file, query) = path.strip_prefix("file:").map_or((path, ""), |uri| uri.split_once('?').unwrap_or((uri, "")));
    if file.trim().is_empty() && query.is_empty() {
        return Some("names no database file");
    }
    let memory_mode = query.split('&').any(|pair| pair.eq_ignore_ascii_case("mode=memory"));
    (file == ":memory:" || memory_mode).then_some("is an in-memory database")
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
        })
    }
}
