//! Loading the settings: defaults, then the TOML file (mirrored by the `File*` structs, every
//! field optional), then environment variables, each value parsed with an error that names
//! its setting.

use std::path::Path;
use std::time::Duration;

use daraja::Secret;
use serde::Deserialize;

use super::*;

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
    #[serde(default)]
    c2b: FileC2b,
    #[serde(default)]
    refunds: refunds::FileRefunds,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileC2b {
    validation: Option<bool>,
    open_hours: Option<u64>,
    register_version: Option<String>,
    response_type: Option<String>,
    pull_interval_minutes: Option<u64>,
    pull_lookback_hours: Option<u64>,
    nominated_number: Option<String>,
    till_rule: Option<String>,
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
                prompt_lifetime: secs(p.prompt_lifetime_secs, 60),
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
            c2b: C2bSettings {
                validation: flag(env("LIPA_C2B_VALIDATION"), f.c2b.validation),
                open_for: Duration::from_secs(f.c2b.open_hours.unwrap_or(24).max(1).saturating_mul(3600)),
                register_version: pick("MPESA_C2B_REGISTER_VERSION", f.c2b.register_version)
                    .map(|v| daraja::c2b::RegisterVersion::parse(&v))
                    .transpose()
                    .map_err(|e| ConfigError::Invalid { setting: "MPESA_C2B_REGISTER_VERSION", message: e.reason })?
                    .unwrap_or_default(),
                response_type: f
                    .c2b
                    .response_type
                    .map(|v| daraja::c2b::DefaultAction::parse(&v))
                    .transpose()
                    .map_err(|e| ConfigError::Invalid { setting: "[c2b] response_type", message: e.reason })?
                    .unwrap_or_default(),
                pull_every: Duration::from_secs(f.c2b.pull_interval_minutes.unwrap_or(10).saturating_mul(60)),
                pull_lookback: Duration::from_secs(f.c2b.pull_lookback_hours.unwrap_or(6).clamp(1, 47) * 3600),
                nominated_number: pick("MPESA_PULL_NOMINATED_NUMBER", f.c2b.nominated_number),
                till_rule: match pick("LIPA_C2B_TILL_RULE", f.c2b.till_rule).as_deref().map(str::trim) {
                    None | Some("none") => TillRule::None,
                    Some("phone_and_amount") => TillRule::PhoneAndAmount,
                    Some(other) => {
                        return Err(ConfigError::Invalid {
                            setting: "LIPA_C2B_TILL_RULE",
                            message: format!("{other:?} is not none or phone_and_amount"),
                        });
                    }
                },
            },
            refunds: RefundSettings::load(f.refunds, &env)?,
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
}
