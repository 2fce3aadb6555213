//! C2B Register URL and C2B Simulate.

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::client::{Answer, Client, Environment};
use crate::error::{ApiError, ApiErrorKind, Error};
use crate::fields::CallbackUrl;
use crate::merchant::ShortCode;
use crate::msisdn::Msisdn;
use crate::validation::InvalidField;

/// What Daraja does with a payment when the validation URL does not answer in time (about
/// 8 s): `ResponseType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultAction {
    /// Let the payment through (`Completed`): the usual choice, so an outage of the validation
    /// URL does not stop customers paying.
    #[default]
    Completed,
    /// Stop the payment (`Cancelled`).
    Cancelled,
}

impl DefaultAction {
    /// The wire value, sentence case as Daraja requires.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "Completed",
            Self::Cancelled => "Cancelled",
        }
    }

    /// Reads `Completed` or `Cancelled` (any case).
    pub fn parse(text: &str) -> Result<Self, InvalidField> {
        match text.trim().to_ascii_lowercase().as_str() {
            "completed" => Ok(Self::Completed),
            "cancelled" | "canceled" => Ok(Self::Cancelled),
            _ => Err(InvalidField::new("ResponseType", "must be Completed or Cancelled")),
        }
    }
}

/// Which Register URL path to call. Safaricom's portal lists both; an app subscribed to the v2
/// product is refused on v1 (`401.003.01 … no apiproduct match found`), and support has moved
/// some production apps back to v1. Try the other when one is refused that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegisterVersion {
    /// `/mpesa/c2b/v1/registerurl`.
    #[default]
    V1,
    /// `/mpesa/c2b/v2/registerurl`.
    V2,
}

impl RegisterVersion {
    /// Reads `v1` or `v2` (or `1`, `2`).
    pub fn parse(text: &str) -> Result<Self, InvalidField> {
        match text.trim().trim_start_matches(['v', 'V']) {
            "1" => Ok(Self::V1),
            "2" => Ok(Self::V2),
            _ => Err(InvalidField::new("RegisterURL version", "must be v1 or v2")),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::V1 => "mpesa/c2b/v1/registerurl",
            Self::V2 => "mpesa/c2b/v2/registerurl",
        }
    }
}

/// A C2B Register URL request: where Daraja sends a shortcode's validations and confirmations.
///
/// In production the URLs can be registered once: registering again answers
/// `500.003.1001 Urls are already registered` ([`ApiErrorKind::UrlsAlreadyRegistered`]), and
/// changing them takes Safaricom's support. Tunnelling hosts (ngrok and the like) are refused.
#[derive(Debug, Clone)]
pub struct RegisterUrls {
    /// The paybill or till (store number) whose payments to hear about.
    pub short_code: ShortCode,
    /// What happens when the validation URL does not answer.
    pub response_type: DefaultAction,
    /// Where confirmations go.
    pub confirmation_url: CallbackUrl,
    /// Where validations go (called only when external validation is on for the shortcode).
    pub validation_url: CallbackUrl,
    /// Which path to call.
    pub version: RegisterVersion,
}

/// Daraja took the URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterAccepted {
    /// `OriginatorCoversationID` (Daraja's spelling), for support requests.
    pub originator_conversation_id: String,
    /// `ResponseDescription`.
    pub response_description: String,
}

/// A sandbox-only customer payment, to test the validation and confirmation URLs.
#[derive(Debug, Clone)]
pub struct C2bSimulate {
    /// The paybill or till paid.
    pub short_code: ShortCode,
    /// The paying phone.
    pub msisdn: Msisdn,
    /// Whole shillings.
    pub amount: Amount,
    /// The account number for a paybill (`CustomerPayBillOnline`); `None` pays a till
    /// (`CustomerBuyGoodsOnline`).
    pub bill_ref_number: Option<String>,
}

/// Daraja took the simulated payment; the validation and confirmation follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulateAccepted {
    /// `OriginatorCoversationID`.
    pub originator_conversation_id: String,
    /// `ResponseDescription`.
    pub response_description: String,
}

#[derive(Serialize)]
struct RegisterWire<'a> {
    #[serde(rename = "ShortCode")]
    short_code: String,
    #[serde(rename = "ResponseType")]
    response_type: &'a str,
    #[serde(rename = "ConfirmationURL")]
    confirmation_url: &'a str,
    #[serde(rename = "ValidationURL")]
    validation_url: &'a str,
}

#[derive(Serialize)]
struct SimulateWire<'a> {
    #[serde(rename = "ShortCode")]
    short_code: u32,
    #[serde(rename = "CommandID")]
    command_id: &'a str,
    #[serde(rename = "Amount")]
    amount: u32,
    #[serde(rename = "Msisdn")]
    msisdn: u64,
    #[serde(rename = "BillRefNumber")]
    bill_ref_number: Option<&'a str>,
}

/// The synchronous acknowledgement Register URL, Simulate and Pull register answer with.
#[derive(Deserialize)]
pub(crate) struct Ack {
    #[serde(rename = "OriginatorCoversationID", alias = "OriginatorConversationID", alias = "ResponseRefID", default)]
    pub originator_conversation_id: String,
    #[serde(rename = "ConversationID", default)]
    pub conversation_id: String,
    #[serde(rename = "ResponseCode", alias = "ResponseStatus", default)]
    pub response_code: Option<serde_json::Value>,
    #[serde(rename = "ResponseDescription", alias = "ResponseMessage", default)]
    pub response_description: String,
}

/// Reads an acknowledgement whose `ResponseCode` must be one of `ok_codes`.
pub(crate) fn ack(operation: &'static str, answer: &Answer, ok_codes: &[&str]) -> Result<Ack, Error> {
    if !answer.is_success() {
        return Err(answer.envelope(operation).map_or_else(
            || Error::decode(operation, answer.status, "neither a success answer nor an error envelope", &answer.body),
            Error::Api,
        ));
    }
    let ack: Ack = serde_json::from_slice(&answer.body)
        .map_err(|e| Error::decode(operation, answer.status, e.to_string(), &answer.body))?;
    let code = match &ack.response_code {
        Some(serde_json::Value::String(s)) => s.trim().to_owned(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err(Error::decode(operation, answer.status, "no ResponseCode", &answer.body)),
    };
    if !ok_codes.contains(&code.as_str()) {
        return Err(Error::Api(ApiError {
            operation,
            status: answer.status,
            request_id: String::new(),
            kind: ApiErrorKind::classify(&code, &ack.response_description),
            code,
            message: ack.response_description,
        }));
    }
    Ok(ack)
}

/// Refuses URLs production would refuse: plain http, and tunnelling hosts.
pub(crate) fn check_url(client: &Client, field: &'static str, url: &CallbackUrl) -> Result<(), Error> {
    if !client.environment().requires_https_callbacks() {
        return Ok(());
    }
    if !url.is_https() {
        return Err(InvalidField::new(field, "must use https with Safaricom's sandbox and production").into());
    }
    let host = url::Url::parse(url.as_str()).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    let tunnel = ["ngrok", "localtunnel", "loca.lt", "serveo", "trycloudflare"];
    if *client.environment() == Environment::Production && host.is_some_and(|h| tunnel.iter().any(|t| h.contains(t))) {
        return Err(InvalidField::new(
            field,
            "is a tunnelling host, which Safaricom refuses for C2B URLs in production; use the server's own domain",
        )
        .into());
    }
    Ok(())
}

pub(crate) fn encode<T: Serialize>(operation: &'static str, body: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|e| Error::decode(operation, 0, format!("could not encode the request: {e}"), b""))
}

impl Client {
    /// Registers where Daraja sends a shortcode's C2B validations and confirmations.
    #[tracing::instrument(skip_all, fields(short_code = %urls.short_code))]
    pub async fn c2b_register_urls(&self, urls: &RegisterUrls) -> Result<RegisterAccepted, Error> {
        const OP: &str = "c2b_register";
        check_url(self, "ConfirmationURL", &urls.confirmation_url)?;
        check_url(self, "ValidationURL", &urls.validation_url)?;
        let body = encode(
            OP,
            &RegisterWire {
                short_code: urls.short_code.to_string(),
                response_type: urls.response_type.as_str(),
                confirmation_url: urls.confirmation_url.as_str(),
                validation_url: urls.validation_url.as_str(),
            },
        )?;
        let answer = self.call(OP, urls.version.path(), body).await?;
        let ack = ack(OP, &answer, &["0", "00000000"])?;
        Ok(RegisterAccepted {
            originator_conversation_id: ack.originator_conversation_id,
            response_description: ack.response_description,
        })
    }

    /// Makes a sandbox customer pay a paybill or till (Safaricom offers it in the sandbox only).
    #[tracing::instrument(skip_all, fields(short_code = %payment.short_code))]
    pub async fn c2b_simulate(&self, payment: &C2bSimulate) -> Result<SimulateAccepted, Error> {
        const OP: &str = "c2b_simulate";
        if *self.environment() == Environment::Production {
            return Err(InvalidField::new(
                "CommandID",
                "C2B Simulate exists only in the sandbox; in production a customer pays from the M-PESA menu",
            )
            .into());
        }
        let bill_ref = payment.bill_ref_number.as_deref().map(str::trim);
        if bill_ref.is_some_and(|r| r.is_empty() || r.chars().count() > 20) {
            return Err(InvalidField::new(
                "BillRefNumber",
                "must be 1 to 20 characters for a paybill (leave it out for a till)",
            )
            .into());
        }
        let body = encode(
            OP,
            &SimulateWire {
                short_code: payment.short_code.get(),
                command_id: if bill_ref.is_some() { "CustomerPayBillOnline" } else { "CustomerBuyGoodsOnline" },
                amount: payment.amount.shillings(),
                msisdn: payment.msisdn.as_u64(),
                bill_ref_number: bill_ref,
            },
        )?;
        let answer = self.call(OP, "mpesa/c2b/v1/simulate", body).await?;
        let ack = ack(OP, &answer, &["0"])?;
        Ok(SimulateAccepted {
            originator_conversation_id: ack.originator_conversation_id,
            response_description: ack.response_description,
        })
    }
}
