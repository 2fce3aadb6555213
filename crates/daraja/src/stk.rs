//! M-Pesa Express: STK Push and STK Query.
//!
//! The push sends exactly the eleven documented fields, with one clock read for both
//! `Timestamp` and `Password`. The query answer is a tri-state: still pending (Daraja's
//! `500.001.1001 … being processed`), completed with a result code, or an error.

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::client::{Answer, Client};
use crate::error::{ApiError, ApiErrorKind, Error};
use crate::fields::{AccountReference, CallbackUrl, TransactionDesc};
use crate::ids::{CheckoutRequestId, MerchantRequestId};
use crate::merchant::Merchant;
use crate::msisdn::Msisdn;
use crate::result_code::ResultCode;
use crate::timestamp::{Timestamp, password};
use crate::validation::InvalidField;

/// One STK Push: who pays how much, for what, and where the result goes.
///
/// Every field is a validated type, so a value of this struct is always sendable.
#[derive(Debug, Clone)]
pub struct StkPush {
    /// The paying phone (`PartyA` and `PhoneNumber`).
    pub phone: Msisdn,
    /// Whole shillings.
    pub amount: Amount,
    /// Shown in the prompt; the account number for paybills.
    pub account_reference: AccountReference,
    /// Short description.
    pub description: TransactionDesc,
    /// Where Safaricom POSTs the result.
    pub callback_url: CallbackUrl,
}

/// Daraja accepted the push for processing. This says nothing yet about payment: the result
/// arrives in the callback, or from [`Client::stk_query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkPushAccepted {
    /// `MerchantRequestID`.
    pub merchant_request_id: MerchantRequestId,
    /// `CheckoutRequestID`: the key for the callback and for queries.
    pub checkout_request_id: CheckoutRequestId,
    /// `ResponseCode`, always `"0"` here.
    pub response_code: String,
    /// `ResponseDescription`.
    pub response_description: String,
    /// `CustomerMessage`.
    pub customer_message: String,
    /// The timestamp sent (Nairobi time), which the password was built from.
    pub timestamp: Timestamp,
}

/// The answer to an STK Query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryOutcome {
    /// The customer has not finished yet (`500.001.1001 The transaction is being processed`).
    /// Not a failure: ask again later.
    Pending,
    /// The transaction ended. The query carries no receipt number; only the callback does.
    Completed(QueryResult),
}

/// A final query answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// `MerchantRequestID` as Daraja echoed it (empty when it left it out).
    pub merchant_request_id: String,
    /// `CheckoutRequestID` as Daraja echoed it (empty when it left it out). Act on the answer
    /// only if it names the transaction asked about: see [`QueryResult::is_about`].
    pub checkout_request_id: String,
    /// The same code the callback carries.
    pub result_code: ResultCode,
    /// `ResultDesc`.
    pub result_desc: String,
}

impl QueryResult {
    /// Whether this answer is about the transaction with these ids: Daraja echoed the
    /// `CheckoutRequestID` asked about, and the `MerchantRequestID` too when both sides know
    /// one. An answer that names no transaction, or another, says nothing about this one.
    pub fn is_about(&self, checkout_request_id: &str, merchant_request_id: Option<&str>) -> bool {
        let merchant_agrees = match merchant_request_id.filter(|m| !m.is_empty()) {
            Some(known) if !self.merchant_request_id.is_empty() => self.merchant_request_id == known,
            _ => true,
        };
        !self.checkout_request_id.is_empty() && self.checkout_request_id == checkout_request_id && merchant_agrees
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PushWire<'a> {
    business_short_code: u32,
    password: &'a str,
    timestamp: &'a str,
    transaction_type: &'a str,
    amount: u32,
    party_a: u64,
    party_b: u32,
    phone_number: u64,
    #[serde(rename = "CallBackURL")]
    call_back_url: &'a str,
    account_reference: &'a str,
    transaction_desc: &'a str,
}

#[derive(Serialize)]
struct QueryWire<'a> {
    #[serde(rename = "BusinessShortCode")]
    business_short_code: u32,
    #[serde(rename = "Password")]
    password: &'a str,
    #[serde(rename = "Timestamp")]
    timestamp: &'a str,
    #[serde(rename = "CheckoutRequestID")]
    checkout_request_id: &'a str,
}

#[derive(Deserialize)]
struct PushOk {
    #[serde(rename = "MerchantRequestID")]
    merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID")]
    checkout_request_id: String,
    #[serde(rename = "ResponseCode")]
    response_code: serde_json::Value,
    #[serde(rename = "ResponseDescription", default)]
    response_description: String,
    #[serde(rename = "CustomerMessage", default)]
    customer_message: String,
}

#[derive(Deserialize)]
struct QueryOk {
    #[serde(rename = "ResponseCode", default)]
    response_code: serde_json::Value,
    #[serde(rename = "ResponseDescription", default)]
    response_description: String,
    #[serde(rename = "MerchantRequestID", default)]
    merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID", default)]
    checkout_request_id: String,
    #[serde(rename = "ResultCode")]
    result_code: serde_json::Value,
    #[serde(rename = "ResultDesc", default)]
    result_desc: String,
}

/// A code that Daraja sends as a string or a number, as text.
fn code_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn api_error(operation: &'static str, answer: &Answer) -> Error {
    answer.envelope(operation).map_or_else(
        || Error::decode(operation, answer.status, "neither a success answer nor an error envelope", &answer.body),
        Error::Api,
    )
}

impl Client {
    /// Sends an STK Push: the customer's phone shows a PIN prompt.
    ///
    /// On `Ok`, store the `CheckoutRequestID` before anything else: the callback may arrive
    /// within a second. On [`Error::Transport`] with `may_have_reached_safaricom`, a prompt may
    /// be on the phone: settle by callback or query rather than pushing again.
    #[tracing::instrument(skip_all, fields(checkout_request_id))]
    pub async fn stk_push(&self, merchant: &Merchant, push: &StkPush) -> Result<StkPushAccepted, Error> {
        const OP: &str = "stk_push";
        if self.environment().requires_https_callbacks() && !push.callback_url.is_https() {
            return Err(InvalidField::new(
                "CallBackURL",
                "must use https with Safaricom's sandbox and production; plain http works only with a custom base URL such as the simulator",
            )
            .into());
        }
        // One clock read for both fields: two reads can straddle a second and break the password.
        let timestamp = Timestamp::at(self.clock().now());
        let wire_ts = timestamp.to_wire();
        let shortcode = merchant.business_short_code();
        let password = password(shortcode, merchant.passkey(), timestamp);
        let body = serde_json::to_vec(&PushWire {
            business_short_code: shortcode.get(),
            password: password.expose(),
            timestamp: &wire_ts,
            transaction_type: merchant.transaction_type(),
            amount: push.amount.shillings(),
            party_a: push.phone.as_u64(),
            party_b: merchant.party_b(),
            phone_number: push.phone.as_u64(),
            call_back_url: push.callback_url.as_str(),
            account_reference: push.account_reference.as_str(),
            transaction_desc: push.description.as_str(),
        })
        .map_err(|e| Error::decode(OP, 0, format!("could not encode the request: {e}"), b""))?;

        let answer = self.call(OP, "mpesa/stkpush/v1/processrequest", body).await?;
        if !answer.is_success() {
            return Err(api_error(OP, &answer));
        }
        let ok: PushOk = serde_json::from_slice(&answer.body).map_err(|e| {
            answer
                .envelope(OP)
                .map_or_else(|| Error::decode(OP, answer.status, e.to_string(), &answer.body), Error::Api)
        })?;
        let response_code = code_text(&ok.response_code).unwrap_or_default();
        if response_code != "0" {
            return Err(Error::Api(ApiError {
                operation: OP,
                status: answer.status,
                request_id: String::new(),
                code: response_code,
                message: ok.response_description,
                kind: ApiErrorKind::NotAccepted,
            }));
        }
        let bad_id = |e: InvalidField| Error::decode(OP, answer.status, e.to_string(), &answer.body);
        let accepted = StkPushAccepted {
            merchant_request_id: MerchantRequestId::parse(&ok.merchant_request_id).map_err(bad_id)?,
            checkout_request_id: CheckoutRequestId::parse(&ok.checkout_request_id).map_err(bad_id)?,
            response_code,
            response_description: ok.response_description,
            customer_message: ok.customer_message,
            timestamp,
        };
        tracing::Span::current().record("checkout_request_id", accepted.checkout_request_id.as_str());
        Ok(accepted)
    }

    /// Asks Daraja how an STK Push ended. `Pending` is not a failure.
    ///
    /// A query never carries the receipt number, and must never override a callback.
    #[tracing::instrument(skip_all, fields(checkout_request_id = %checkout_request_id))]
    pub async fn stk_query(
        &self,
        merchant: &Merchant,
        checkout_request_id: &CheckoutRequestId,
    ) -> Result<QueryOutcome, Error> {
        const OP: &str = "stk_query";
        let timestamp = Timestamp::at(self.clock().now());
        let wire_ts = timestamp.to_wire();
        let shortcode = merchant.business_short_code();
        let password = password(shortcode, merchant.passkey(), timestamp);
        let body = serde_json::to_vec(&QueryWire {
            business_short_code: shortcode.get(),
            password: password.expose(),
            timestamp: &wire_ts,
            checkout_request_id: checkout_request_id.as_str(),
        })
        .map_err(|e| Error::decode(OP, 0, format!("could not encode the request: {e}"), b""))?;

        let answer = self.call(OP, "mpesa/stkpushquery/v1/query", body).await?;
        if let Some(envelope) = answer.envelope(OP) {
            return match envelope.kind {
                ApiErrorKind::BeingProcessed => Ok(QueryOutcome::Pending),
                _ => Err(Error::Api(envelope)),
            };
        }
        if !answer.is_success() {
            return Err(api_error(OP, &answer));
        }
        let ok: QueryOk = serde_json::from_slice(&answer.body)
            .map_err(|e| Error::decode(OP, answer.status, e.to_string(), &answer.body))?;
        let response_code = code_text(&ok.response_code).unwrap_or_default();
        if !response_code.is_empty() && response_code != "0" {
            return Err(Error::Api(ApiError {
                operation: OP,
                status: answer.status,
                request_id: String::new(),
                code: response_code,
                message: ok.response_description,
                kind: ApiErrorKind::NotAccepted,
            }));
        }
        let code = code_text(&ok.result_code).ok_or_else(|| {
            Error::decode(OP, answer.status, "ResultCode is neither a string nor a number", &answer.body)
        })?;
        if ok.checkout_request_id != checkout_request_id.as_str() {
            tracing::warn!(echoed = %ok.checkout_request_id, "the query answer names another CheckoutRequestID");
        }
        Ok(QueryOutcome::Completed(QueryResult {
            merchant_request_id: ok.merchant_request_id,
            checkout_request_id: ok.checkout_request_id,
            result_code: ResultCode::from_wire(&code),
            result_desc: ok.result_desc,
        }))
    }
}
