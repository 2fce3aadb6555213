//! Pull Transactions: a shortcode's recent C2B payments on request, to recover confirmations
//! that never arrived. Daraja keeps about the last 48 hours.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::format_description;

use super::api::{ack, check_url, encode};
use super::wire::Text;
use super::{Payer, TransactionType};
use crate::client::Client;
use crate::error::Error;
use crate::fields::CallbackUrl;
use crate::ids::ReceiptNumber;
use crate::merchant::ShortCode;
use crate::msisdn::Msisdn;
use crate::timestamp::{NAIROBI, Timestamp};

/// Registers a shortcode for Pull Transactions (once per shortcode).
#[derive(Debug, Clone)]
pub struct PullRegister {
    /// The shortcode to pull for.
    pub short_code: ShortCode,
    /// The M-PESA number Safaricom notifies about the registration.
    pub nominated_number: Msisdn,
    /// Daraja's `CallBackURL` for the registration (required, though pulls answer synchronously).
    pub callback_url: CallbackUrl,
}

/// One page of a pull: `offset` counts transactions already read in the same window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullQuery {
    /// The shortcode.
    pub short_code: ShortCode,
    /// Start of the window (any offset; sent as Nairobi time).
    pub start: OffsetDateTime,
    /// End of the window.
    pub end: OffsetDateTime,
    /// How many transactions of the window to skip (`OffSetValue`).
    pub offset: u32,
}

/// A transaction Pull Transactions reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledTransaction {
    /// `transactionId`: the M-Pesa receipt, the confirmation's `TransID`.
    pub trans_id: ReceiptNumber,
    /// `trxDate`.
    pub time: OffsetDateTime,
    /// `msisdn`, in whichever form Daraja gave it.
    pub payer: Payer,
    /// `amount` in whole shillings.
    pub amount: u64,
    /// `billreference`: the account number (empty for a till).
    pub bill_reference: String,
    /// `transactiontype`, read as paybill or till where it says so.
    pub transaction_type: TransactionType,
}

/// A page of pulled transactions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullPage {
    /// The transactions that could be read.
    pub transactions: Vec<PulledTransaction>,
    /// Entries that could not be read, each with why (kept out of `transactions` so one odd
    /// entry does not hide the rest).
    pub unreadable: Vec<String>,
}

impl PullPage {
    /// How many entries the page held, readable or not: add it to the next query's offset.
    pub fn len(&self) -> usize {
        self.transactions.len() + self.unreadable.len()
    }

    /// Whether the page held nothing: the window is exhausted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Serialize)]
struct RegisterWire<'a> {
    #[serde(rename = "ShortCode")]
    short_code: String,
    #[serde(rename = "RequestType")]
    request_type: &'a str,
    #[serde(rename = "NominatedNumber")]
    nominated_number: String,
    #[serde(rename = "CallBackURL")]
    callback_url: &'a str,
}

#[derive(Serialize)]
struct QueryWire {
    #[serde(rename = "ShortCode")]
    short_code: String,
    #[serde(rename = "StartDate")]
    start_date: String,
    #[serde(rename = "EndDate")]
    end_date: String,
    #[serde(rename = "OffSetValue")]
    offset: String,
}

#[derive(Deserialize)]
struct QueryAnswer<'a> {
    #[serde(rename = "Response", borrow, default)]
    response: Vec<Entries<'a>>,
}

/// Daraja nests the list (`[[…]]`); a flat list is read too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entries<'a> {
    #[serde(borrow)]
    Nested(Vec<Entry<'a>>),
    #[serde(borrow)]
    One(Entry<'a>),
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(rename = "transactionId", borrow, default)]
    transaction_id: Text<'a>,
    #[serde(rename = "trxDate", borrow, default)]
    trx_date: Text<'a>,
    #[serde(borrow, default)]
    msisdn: Text<'a>,
    #[serde(rename = "transactiontype", borrow, default)]
    transaction_type: Text<'a>,
    #[serde(rename = "billreference", borrow, default)]
    bill_reference: Text<'a>,
    #[serde(borrow, default)]
    amount: Text<'a>,
}

/// `YYYY-MM-DD HH:MM:SS` in Nairobi time, as Pull Transactions takes dates.
pub fn wire_date(at: OffsetDateTime) -> String {
    let d = at.to_offset(NAIROBI);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

/// `trxDate`: RFC 3339 with its offset, `YYYY-MM-DD HH:MM:SS` or 14 digits (Nairobi time).
fn read_date(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Some(at);
    }
    let spaced = format_description!("[year]-[month]-[day] [hour padding:none]:[minute]:[second]");
    if let Ok(at) = time::PrimitiveDateTime::parse(text, spaced) {
        return Some(at.assume_offset(NAIROBI));
    }
    Timestamp::parse("trxDate", text).ok().map(Timestamp::instant)
}

fn read_entry(e: &Entry<'_>) -> Result<PulledTransaction, String> {
    let trans_id = ReceiptNumber::parse(e.transaction_id.trim()).map_err(|e| format!("transactionId {}", e.reason))?;
    let known = |why: &str| format!("{trans_id}: {why}");
    Ok(PulledTransaction {
        time: read_date(&e.trx_date).ok_or_else(|| known("trxDate is not a date"))?,
        payer: Payer::parse(&e.msisdn).ok_or_else(|| known("msisdn is not a number, a masked one or a hash"))?,
        amount: crate::callback::whole_number(&e.amount)
            .filter(|n| *n > 0)
            .ok_or_else(|| known("amount is not a positive whole number of shillings"))?,
        bill_reference: e.bill_reference.trim().chars().take(100).collect(),
        transaction_type: pulled_type(&e.transaction_type),
        trans_id,
    })
}

/// `c2b-pay-bill-debit`, `c2b-buy-goods-debit` and the C2B names.
fn pulled_type(text: &str) -> TransactionType {
    let lower = text.to_ascii_lowercase();
    if lower.contains("pay-bill") || lower.contains("paybill") || lower.contains("pay bill") {
        TransactionType::PayBill
    } else if lower.contains("buy-goods") || lower.contains("buygoods") || lower.contains("buy goods") {
        TransactionType::BuyGoods
    } else {
        TransactionType::from_wire(text)
    }
}

/// Reads a Pull Transactions answer body (`Response` entries).
pub fn parse_page(body: &[u8]) -> Result<PullPage, String> {
    let answer: QueryAnswer<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut page = PullPage::default();
    let entries = answer.response.iter().flat_map(|entries| match entries {
        Entries::Nested(list) => list.iter().collect::<Vec<_>>(),
        Entries::One(one) => vec![one],
    });
    for entry in entries {
        match read_entry(entry) {
            Ok(t) => page.transactions.push(t),
            Err(why) => page.unreadable.push(why),
        }
    }
    Ok(page)
}

impl Client {
    /// Registers a shortcode for Pull Transactions. Registering one already registered is
    /// not an error (`1001`).
    #[tracing::instrument(skip_all, fields(short_code = %request.short_code))]
    pub async fn pull_register(&self, request: &PullRegister) -> Result<(), Error> {
        const OP: &str = "pull_register";
        check_url(self, "CallBackURL", &request.callback_url)?;
        let body = encode(
            OP,
            &RegisterWire {
                short_code: request.short_code.to_string(),
                request_type: "Pull",
                nominated_number: request.nominated_number.local(),
                callback_url: request.callback_url.as_str(),
            },
        )?;
        let answer = self.call(OP, "pulltransactions/v1/register", body).await?;
        ack(OP, &answer, &["1000", "1001", "0"]).map(drop)
    }

    /// Reads one page of a shortcode's C2B transactions in a window (about the last 48 hours
    /// at most). Ask again with `offset` increased by [`PullPage::len`] until a page is empty.
    #[tracing::instrument(skip_all, fields(short_code = %query.short_code, offset = query.offset))]
    pub async fn pull_transactions(&self, query: &PullQuery) -> Result<PullPage, Error> {
        const OP: &str = "pull_query";
        let body = encode(
            OP,
            &QueryWire {
                short_code: query.short_code.to_string(),
                start_date: wire_date(query.start),
                end_date: wire_date(query.end),
                offset: query.offset.to_string(),
            },
        )?;
        let answer = self.call(OP, "pulltransactions/v1/query", body).await?;
        let ack = ack(OP, &answer, &["1000", "1001", "0"])?;
        if ack.response_code.as_ref().is_some_and(|c| c.as_str() == Some("1001") || c.as_u64() == Some(1001)) {
            return Ok(PullPage::default());
        }
        parse_page(&answer.body).map_err(|why| Error::decode(OP, answer.status, why, &answer.body))
    }
}
