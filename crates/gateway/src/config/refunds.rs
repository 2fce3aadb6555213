//! Refund settings: the initiator Daraja's Reversal and Transaction Status run as, the
//! certificate its password is encrypted with, and when to ask about a reversal whose result
//! has not come.

use std::time::Duration;

use daraja::Secret;
use daraja::reversal::IdentifierType;

use super::{ConfigError, Finding, MpesaEnvironment, Settings};

/// `[refunds]` and the `MPESA_INITIATOR_*` variables.
#[derive(Debug, Clone)]
pub struct RefundSettings {
    /// `MPESA_INITIATOR_NAME`: the org-portal API operator (`testapi` in the sandbox).
    pub initiator_name: Option<String>,
    /// `MPESA_INITIATOR_PASSWORD`: its password (encrypted at start-up, never sent plain).
    pub initiator_password: Option<Secret>,
    /// `MPESA_CERTIFICATE`: path of Safaricom's certificate (PEM or DER). Needed in production;
    /// the sandbox's is built in.
    pub certificate: Option<String>,
    /// `MPESA_REVERSAL_IDENTIFIER_TYPE`: the reversal's `RecieverIdentifierType` (11; 4 where
    /// Daraja refuses 11).
    pub identifier_type: IdentifierType,
    /// Ask Transaction Status about a reversal whose result has not come this long after it
    /// was sent (`[refunds] status_after_secs`, default 120).
    pub status_after: Duration,
    /// Then ask again this often (`[refunds] status_interval_secs`, default 300).
    pub status_interval: Duration,
    /// After this many questions without an answer, leave it for staff (`[refunds]
    /// max_status_checks`, default 12).
    pub max_status_checks: u32,
}

/// `[refunds]` in `lipa.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRefunds {
    initiator_name: Option<String>,
    initiator_password: Option<String>,
    certificate: Option<String>,
    reversal_identifier_type: Option<String>,
    status_after_secs: Option<u64>,
    status_interval_secs: Option<u64>,
    max_status_checks: Option<u32>,
}

impl RefundSettings {
    pub(super) fn load(f: FileRefunds, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let pick = |var: &str, file: Option<String>| env(var).or(file);
        Ok(Self {
            initiator_name: pick("MPESA_INITIATOR_NAME", f.initiator_name),
            initiator_password: pick("MPESA_INITIATOR_PASSWORD", f.initiator_password).map(Secret::from),
            certificate: pick("MPESA_CERTIFICATE", f.certificate),
            identifier_type: pick("MPESA_REVERSAL_IDENTIFIER_TYPE", f.reversal_identifier_type)
                .map(|v| IdentifierType::parse(&v))
                .transpose()
                .map_err(|e| ConfigError::Invalid { setting: "MPESA_REVERSAL_IDENTIFIER_TYPE", message: e.reason })?
                .unwrap_or_default(),
            status_after: Duration::from_secs(f.status_after_secs.unwrap_or(120).max(1)),
            status_interval: Duration::from_secs(f.status_interval_secs.unwrap_or(300).max(1)),
            max_status_checks: f.max_status_checks.unwrap_or(12).max(1),
        })
    }

    pub(super) fn shown(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MPESA_INITIATOR_NAME", self.initiator_name.clone().unwrap_or_else(|| "(not set)".into())),
            (
                "MPESA_INITIATOR_PASSWORD",
                if self.initiator_password.is_some() { "(set, hidden)" } else { "(not set)" }.into(),
            ),
            ("MPESA_CERTIFICATE", self.certificate.clone().unwrap_or_else(|| "(built-in for the sandbox)".into())),
            ("MPESA_REVERSAL_IDENTIFIER_TYPE", self.identifier_type.get().to_string()),
            ("[refunds] status_after_secs", format!("{} s", self.status_after.as_secs())),
            ("[refunds] status_interval_secs", format!("{} s", self.status_interval.as_secs())),
            ("[refunds] max_status_checks", self.max_status_checks.to_string()),
        ]
    }
}

impl Settings {
    /// The initiator refunds run as, from the settings: `None` when refunds are not set up
    /// (no initiator name and password). In simulator mode without a certificate set, the
    /// caller supplies the simulator's.
    pub fn initiator(&self) -> Result<Option<daraja::Initiator>, ConfigError> {
        let r = &self.refunds;
        let (Some(name), Some(password)) = (&r.initiator_name, &r.initiator_password) else { return Ok(None) };
        let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
        let certificate = match (&r.certificate, self.mpesa.environment) {
            (Some(path), _) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| invalid("MPESA_CERTIFICATE", format!("{path:?} cannot be read: {e}")))?;
                daraja::Certificate::parse(&bytes).map_err(|e| invalid("MPESA_CERTIFICATE", e.reason))?
            }
            (None, MpesaEnvironment::Sandbox) => {
                daraja::Certificate::sandbox().map_err(|e| invalid("MPESA_CERTIFICATE", e.reason))?
            }
            (None, MpesaEnvironment::Simulator) => return Ok(None),
            (None, MpesaEnvironment::Production) => {
                return Err(invalid(
                    "MPESA_CERTIFICATE",
                    "is not set; download Safaricom's production certificate from the Daraja portal and give its path"
                        .into(),
                ));
            }
        };
        let credential = certificate.encrypt(password).map_err(|e| invalid("MPESA_INITIATOR_PASSWORD", e.reason))?;
        daraja::Initiator::new(name, credential).map(Some).map_err(|e| invalid("MPESA_INITIATOR_NAME", e.reason))
    }

    /// What `lipa config check` says about refunds.
    pub(super) fn check_refunds(&self, out: &mut Vec<Finding>) {
        let r = &self.refunds;
        let real = self.mpesa.environment != MpesaEnvironment::Simulator;
        match (&r.initiator_name, &r.initiator_password) {
            (None, None) if real => out.push(Finding {
                error: false,
                setting: "MPESA_INITIATOR_NAME",
                message: "refunds are not configured: set MPESA_INITIATOR_NAME and MPESA_INITIATOR_PASSWORD (the \
                          org portal's API operator with the Reversal and Transaction Status roles)"
                    .into(),
            }),
            (Some(_), None) | (None, Some(_)) => out.push(Finding {
                error: true,
                setting: if r.initiator_name.is_none() { "MPESA_INITIATOR_NAME" } else { "MPESA_INITIATOR_PASSWORD" },
                message: "is not set, while the other initiator setting is: refunds need both".into(),
            }),
            _ => {
                if let Err(ConfigError::Invalid { setting, message }) = self.initiator() {
                    out.push(Finding { error: true, setting, message });
                }
            }
        }
    }
}
