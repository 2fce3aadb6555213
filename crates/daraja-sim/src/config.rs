//! Simulator settings. `SimConfig::default()` suits tests: the public sandbox shortcode and
//! passkey, prompts answered at once, callbacks delivered at once, no faults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Safaricom's public sandbox shortcode.
pub const SANDBOX_SHORTCODE: u32 = 174379;
/// The published passkey of the sandbox shortcode (public, not a secret).
pub const SANDBOX_PASSKEY: &str = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";

/// A Daraja app the simulator accepts OAuth requests from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct App {
    /// Consumer key.
    pub consumer_key: String,
    /// Consumer secret.
    pub consumer_secret: String,
}

/// A business shortcode the simulator knows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MerchantAccount {
    /// `BusinessShortCode` (a paybill, or a till's store number).
    pub shortcode: u32,
    /// Its Lipa na M-Pesa Online passkey.
    pub passkey: String,
    /// The name shown in the customer's prompt.
    pub name: String,
    /// Till numbers under this store. Empty for a plain paybill.
    #[serde(default)]
    pub tills: Vec<u32>,
    /// Whether Safaricom turned external validation on: C2B payments are first sent to the
    /// registered validation URL, which may reject them.
    #[serde(default)]
    pub external_validation: bool,
    /// Whether an STK payment to this shortcode is also confirmed to the C2B confirmation URL
    /// (with the STK receipt as `TransID`), as some shortcodes are set up.
    #[serde(default)]
    pub c2b_echo_stk: bool,
    /// How C2B bodies write the payer's `MSISDN`.
    #[serde(default)]
    pub msisdn_style: MsisdnStyle,
}

/// How C2B validation and confirmation bodies write `MSISDN`: Daraja has sent all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsisdnStyle {
    /// The 12 digits.
    Plain,
    /// Middle digits hidden: `25470****149`.
    Masked,
    /// SHA-256 of the 12 digits, 64 lowercase hex (what production sends today).
    #[default]
    Hashed,
}

/// Which C2B Register URL paths an app may call: Safaricom subscribes an app to one product,
/// and the other path answers `401.003.01 … no apiproduct match found`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterPaths {
    /// v1 and v2 both work.
    #[default]
    Both,
    /// Only `/mpesa/c2b/v1/registerurl`.
    V1,
    /// Only `/mpesa/c2b/v2/registerurl`.
    V2,
}

/// How the customer answers prompts to phones that no magic number or queued outcome covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAnswer {
    /// Approve (paying from the wallet) after `auto_answer_after`.
    Approve,
    /// Wait for a person on the virtual phone; time out (1037) after `prompt_lifetime`.
    VirtualPhone,
}

/// How the `Amount` metadata item is written in success callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmountStyle {
    /// `"Value": 45`
    Integer,
    /// `"Value": 45.00`
    Decimal,
}

/// How the `Balance` metadata item appears in success callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceStyle {
    /// `{"Name":"Balance"}` with no value, as most live callbacks.
    Valueless,
    /// No `Balance` item, as the current docs sample.
    Absent,
}

/// Faults applied to callback delivery, globally or to one push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Never deliver the callback (the transaction still completes; a query sees the result).
    pub drop: bool,
    /// How many copies of the callback to deliver (0 counts as 1; use `drop` for none).
    pub copies: u32,
    /// Deliver the copies at the same time rather than one after another.
    pub concurrent: bool,
    /// Extra delay before delivery.
    #[serde(with = "millis")]
    pub delay: Duration,
    /// Random extra delay in `0..jitter` per copy, so callbacks arrive out of order.
    #[serde(with = "millis")]
    pub jitter: Duration,
    /// Retries of a copy answered with non-2xx or not answered in time.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(with = "millis")]
    pub retry_backoff: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            drop: false,
            copies: 1,
            concurrent: false,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            retries: 0,
            retry_backoff: Duration::from_millis(500),
        }
    }
}

/// Everything the simulator can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// Apps allowed to get tokens.
    pub apps: Vec<App>,
    /// Shortcodes that exist.
    pub merchants: Vec<MerchantAccount>,
    /// `expires_in` of issued tokens.
    #[serde(with = "secs")]
    pub token_lifetime: Duration,
    /// Whether issuing a token invalidates the app's previous one (a claim in Daraja's FAQ).
    pub one_token_per_app: bool,
    /// Answer for ordinary phones.
    pub default_answer: DefaultAnswer,
    /// Delay before an automatic answer (`DefaultAnswer::Approve` and magic numbers).
    #[serde(with = "millis")]
    pub auto_answer_after: Duration,
    /// How long a prompt stays open on the virtual phone before it times out with 1037.
    #[serde(with = "millis")]
    pub prompt_lifetime: Duration,
    /// Delay of the "late callback" magic number's callback.
    #[serde(with = "millis")]
    pub late_callback_delay: Duration,
    /// Faults for every callback unless a push has its own.
    pub faults: Faults,
    /// Timeout of one callback delivery attempt.
    #[serde(with = "millis")]
    pub callback_timeout: Duration,
    /// Per-transaction maximum (KES).
    pub max_amount: u64,
    /// A phone's daily spending limit (KES).
    pub daily_limit: u64,
    /// Starting wallet balance of every phone (KES).
    pub default_balance: u64,
    /// PIN of every virtual phone.
    pub pin: String,
    /// Wrong PINs in a row after which a phone's PIN is locked (8006).
    pub max_wrong_pins: u32,
    /// STK pushes per second before `Spike Arrest Violation`; 0 = unlimited.
    pub push_rate_limit: u32,
    /// STK queries per second before `Spike Arrest Violation`; 0 = unlimited.
    pub query_rate_limit: u32,
    /// Refuse requests whose Timestamp is further than this from Nairobi time; 0 = no check.
    #[serde(with = "secs")]
    pub max_timestamp_skew: Duration,
    /// Refuse unknown request fields instead of recording and ignoring them.
    pub strict_fields: bool,
    /// How success callbacks write `Amount`.
    pub amount_style: AmountStyle,
    /// How success callbacks write `Balance`.
    pub balance_style: BalanceStyle,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Which C2B Register URL paths answer.
    pub register_paths: RegisterPaths,
    /// Whether registering a shortcode's C2B URLs a second time is refused with
    /// `500.003.1001 Urls are already registered`, as in production (the sandbox allows it).
    pub register_once: bool,
    /// How long Daraja waits for the validation URL before applying the default action.
    #[serde(with = "millis")]
    pub validation_timeout: Duration,
    /// How far back Pull Transactions reaches.
    #[serde(with = "secs")]
    pub pull_window: Duration,
    /// Transactions per Pull Transactions page.
    pub pull_page_size: usize,
    /// Org-portal users allowed to call Reversal and Transaction Status.
    pub initiators: Vec<crate::initiator::InitiatorAccount>,
    /// PKCS#8 PEM private key credentials are decrypted with; `None`: the bundled key of
    /// [`CERTIFICATE_PEM`](crate::CERTIFICATE_PEM).
    pub initiator_key_pem: Option<String>,
    /// The `RecieverIdentifierType` a reversal must send (`11` per Safaricom's portal; set `4`
    /// to act as the Postman collection's Daraja).
    pub reversal_identifier_type: String,
    /// Delay before a Reversal or Transaction Status result is sent.
    #[serde(with = "millis")]
    pub result_delay: Duration,
    /// Faults of Reversal and Transaction Status results.
    pub result_faults: crate::initiator::ResultFaults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            apps: vec![App { consumer_key: "sim-consumer-key".into(), consumer_secret: "sim-consumer-secret".into() }],
            merchants: vec![MerchantAccount {
                shortcode: SANDBOX_SHORTCODE,
                passkey: SANDBOX_PASSKEY.into(),
                name: "Lipa Demo Shop".into(),
                tills: Vec::new(),
                external_validation: false,
                c2b_echo_stk: false,
                msisdn_style: MsisdnStyle::default(),
            }],
            token_lifetime: Duration::from_secs(3599),
            one_token_per_app: false,
            default_answer: DefaultAnswer::Approve,
            auto_answer_after: Duration::ZERO,
            prompt_lifetime: Duration::from_secs(60),
            late_callback_delay: Duration::from_secs(120),
            faults: Faults::default(),
            callback_timeout: Duration::from_secs(10),
            max_amount: 250_000,
            daily_limit: 500_000,
            default_balance: 100_000,
            pin: "1234".into(),
            max_wrong_pins: 3,
            push_rate_limit: 0,
            query_rate_limit: 0,
            max_timestamp_skew: Duration::ZERO,
            strict_fields: false,
            amount_style: AmountStyle::Decimal,
            balance_style: BalanceStyle::Valueless,
            max_body_bytes: 64 * 1024,
            register_paths: RegisterPaths::Both,
            register_once: false,
            validation_timeout: Duration::from_secs(8),
            pull_window: Duration::from_secs(48 * 3600),
            pull_page_size: 100,
            initiators: vec![crate::initiator::InitiatorAccount::sandbox()],
            initiator_key_pem: None,
            reversal_identifier_type: "11".into(),
            result_delay: crate::initiator::RESULT_DELAY,
            result_faults: crate::initiator::ResultFaults::default(),
        }
    }
}

impl SimConfig {
    /// Settings for a person at the virtual phone (`lipa sim`, `lipa demo`): prompts wait for
    /// an answer and time out after a minute.
    pub fn interactive() -> Self {
        Self { default_answer: DefaultAnswer::VirtualPhone, ..Self::default() }
    }

    /// The first configured app (what `lipa sim` prints).
    pub fn primary_app(&self) -> Option<&App> {
        self.apps.first()
    }

    /// The first configured merchant.
    pub fn primary_merchant(&self) -> Option<&MerchantAccount> {
        self.merchants.first()
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}
