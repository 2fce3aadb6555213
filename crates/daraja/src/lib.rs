//! A typed, validated client for Safaricom's Daraja M-Pesa APIs: M-Pesa Express (STK Push), C2B,
//! Reversal and Transaction Status.
//!
//! What it gets right, so callers do not have to:
//! - **Validation before sending.** Phone numbers ([`Msisdn`]), amounts ([`Amount`]), account
//!   references, descriptions and callback URLs are newtypes that only hold values Daraja
//!   accepts; errors name the field and the rule.
//! - **Time.** Timestamps are Nairobi time (UTC+3) whatever the server's timezone, and one clock
//!   read feeds both `Timestamp` and `Password`.
//! - **Tokens.** Cached, refreshed early, fetched by one caller at a time however many wait,
//!   and refreshed once (never in a loop) when Daraja says `404.001.03 Invalid Access Token`.
//! - **Answers.** `ResponseCode` and `ResultCode` as strings or numbers, the overloaded
//!   `500.001.1001` told apart by its message, STK Query's "being processed" as
//!   [`QueryOutcome::Pending`] rather than a failure.
//! - **Callbacks.** [`callback::parse`] handles every observed quirk and never panics.
//! - **Secrets.** Credentials, passkeys, passwords and tokens are [`Secret`]s: never in `Debug`,
//!   logs or errors.
//! - **Initiator APIs.** [`Certificate`] encrypts the initiator password into the
//!   [`SecurityCredential`] (the sandbox certificate is bundled, pinned by
//!   [`SANDBOX_FINGERPRINT`]); [`reversal`] and [`status`] send Reversal and Transaction Status
//!   (Daraja's misspelled `RecieverIdentifierType` included, its value a setting);
//!   [`result::parse`] reads their asynchronous results and [`result::parse_timeout`] the queue
//!   timeouts, whatever shape the codes and parameters come in.
//!
//! # Example: push, then parse the callback
//!
//! ```no_run
//! use daraja::{
//!     AccountReference, Amount, CallbackUrl, Client, Credentials, Environment, Merchant, Msisdn,
//!     Secret, ShortCode, StkPush, TransactionDesc, callback,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(
//!     Environment::Sandbox,
//!     Credentials::new(std::env::var("MPESA_CONSUMER_KEY")?, std::env::var("MPESA_CONSUMER_SECRET")?)?,
//! )
//! .build()?;
//! let shop = Merchant::paybill(ShortCode::parse("174379")?, Secret::new(std::env::var("MPESA_PASSKEY")?));
//!
//! let accepted = client
//!     .stk_push(
//!         &shop,
//!         &StkPush {
//!             phone: Msisdn::parse("0712 345 678")?,
//!             amount: Amount::new(45)?,
//!             account_reference: AccountReference::parse("TICKET-42")?,
//!             description: TransactionDesc::parse("Movie ticket")?,
//!             callback_url: CallbackUrl::parse("https://pay.example.com/callbacks/stk/9f2c1e")?,
//!         },
//!     )
//!     .await?;
//! // Store accepted.checkout_request_id now: the callback can arrive within a second.
//!
//! // Later, in the handler for POST /callbacks/stk/9f2c1e:
//! # let body: &[u8] = b"";
//! let cb = callback::parse(body)?;
//! assert_eq!(cb.checkout_request_id, accepted.checkout_request_id);
//! match cb.payment {
//!     Some(paid) => println!("paid KES {} receipt {}", paid.amount, paid.receipt),
//!     None => println!("not paid: {}", cb.result_code.customer_message_en()),
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod amount;
pub mod c2b;
pub mod callback;
mod client;
mod error;
mod fields;
mod ids;
mod initiator;
mod merchant;
mod msisdn;
pub mod result;
mod result_code;
pub mod reversal;
mod secret;
pub mod status;
mod stk;
mod timestamp;
mod token;
mod validation;

pub use amount::Amount;
pub use c2b::C2bPayment;
pub use callback::{CallbackError, Payment, StkCallback};
pub use client::{Client, ClientBuilder, Credentials, Environment, IDLE_CONNECTION_KEPT};
pub use error::{ApiError, ApiErrorKind, Error};
pub use fields::{AccountReference, BANNED_URL_WORDS, CallbackUrl, TransactionDesc};
pub use ids::{CheckoutRequestId, MerchantRequestId, ReceiptNumber};
pub use initiator::{Certificate, Initiator, SANDBOX_FINGERPRINT, SecurityCredential};
pub use merchant::{Account, Merchant, Passkey, ShortCode, TillNumber};
pub use msisdn::Msisdn;
pub use result_code::{Cause, ResultCode, ResultInfo};
pub use secret::Secret;
pub use stk::{QueryOutcome, QueryResult, StkPush, StkPushAccepted};
pub use timestamp::{Clock, NAIROBI, SharedClock, SystemClock, Timestamp, password};
pub use validation::InvalidField;
