//! The settings' lint: what `lipa config check` prints, and what stops the gateway when it
//! is an error. Every finding names the setting and says what to change.

use super::*;

impl Settings {
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
        self.check_refunds(&mut out);
        out
    }

    /// Refuses a configuration with errors.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let errors: Vec<_> = self.check().into_iter().filter(|f| f.error).collect();
        if errors.is_empty() { Ok(()) } else { Err(ConfigError::Findings(errors)) }
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
