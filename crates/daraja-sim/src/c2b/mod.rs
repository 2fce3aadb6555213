//! C2B: customers who pay a paybill or till by hand ("Lipa na M-PESA → Pay Bill / Buy Goods"),
//! and what Safaricom tells the business about it.
//!
//! A payment goes as Daraja's does: the PIN is checked, then the registered validation URL is
//! asked (only for shortcodes with external validation, waiting at most
//! [`SimConfig::validation_timeout`](crate::SimConfig) and applying the registration's
//! `ResponseType` when it does not answer), then the wallet is debited and the confirmation is
//! delivered with the callback faults (drop, copies, delay, jitter, retries). Pull
//! Transactions answers from this record, so a dropped confirmation can be recovered.

mod api;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::config::{Faults, MerchantAccount, MsisdnStyle};
use crate::delivery::{self, Delivery, json_str, nairobi_digits};
use crate::records::{CallbackAttempt, Transaction, rfc3339};
use crate::sim::Sim;

pub(crate) use api::{documented_fields, routes};

/// C2B state: registrations, Pull registrations, payments and each shortcode's balance.
#[derive(Debug, Default)]
pub(crate) struct Book {
    registrations: HashMap<u32, Registration>,
    pull_registered: HashSet<u32>,
    payments: Vec<C2bTransaction>,
    balances: HashMap<u32, u64>,
}

/// Where Daraja sends a shortcode's validations and confirmations.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// The shortcode.
    pub shortcode: u32,
    /// `Completed` or `Cancelled`: what happens when validation does not answer.
    pub response_type: String,
    /// `ConfirmationURL`.
    pub confirmation_url: String,
    /// `ValidationURL`.
    pub validation_url: String,
}

/// How a C2B payment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum C2bStatus {
    /// The money moved and the confirmation was sent (or dropped by a fault).
    Completed,
    /// The validation URL rejected it; no money moved.
    Rejected,
    /// The validation URL did not answer and the default action is `Cancelled`.
    Cancelled,
    /// The wallet could not pay (balance, daily limit, PIN).
    Failed,
}

/// One C2B payment, by hand or echoed from an STK payment.
#[derive(Debug, Clone, Serialize)]
pub struct C2bTransaction {
    /// `TransID`: the M-Pesa receipt.
    pub trans_id: String,
    /// The registered shortcode paid (a till's store number for Buy Goods).
    pub shortcode: u32,
    /// The number the customer typed: the paybill, or the till.
    pub paid_to: u32,
    /// `Pay Bill` or `Buy Goods` (`CustomerPayBillOnline` / `CustomerBuyGoodsOnline` for an
    /// echoed STK payment).
    pub transaction_type: String,
    /// `BillRefNumber`: the account number typed (empty for a till).
    pub account: String,
    /// KES.
    pub amount: u64,
    /// The payer's 12-digit MSISDN.
    pub phone: u64,
    /// `TransTime`.
    #[serde(serialize_with = "rfc3339")]
    pub at: OffsetDateTime,
    /// How it ended.
    pub status: C2bStatus,
    /// The reject code, the wallet's failure code, or `None`.
    pub result_code: Option<String>,
    /// `ThirdPartyTransID` from the validation answer, echoed in the confirmation.
    pub third_party_trans_id: String,
    /// Whether it is the C2B echo of an STK payment.
    pub from_stk: bool,
}

/// A customer paying by hand: the control API's `POST /sim/c2b/pay` and the virtual phone's
/// "Lipa na M-PESA" menu.
#[derive(Debug, Clone, Deserialize)]
pub struct ManualPayment {
    /// The paybill or till number typed.
    pub shortcode: u32,
    /// The account number (empty for a till).
    #[serde(default)]
    pub account: String,
    /// KES.
    pub amount: u64,
    /// The paying phone, as people write it.
    pub phone: String,
    /// The PIN typed on the phone; `None` from the control API.
    #[serde(default)]
    pub pin: Option<String>,
    /// Faults for this payment's confirmation (default: the global ones).
    #[serde(default)]
    pub faults: Option<Faults>,
}

impl Sim {
    /// A completed C2B payment by hand (not an STK echo) with this `TransID`.
    pub(crate) fn c2b_paid(&self, trans_id: &str) -> Option<C2bTransaction> {
        let book = self.c2b_book();
        book.payments
            .iter()
            .find(|p| p.trans_id == trans_id && !p.from_stk && p.status == C2bStatus::Completed)
            .cloned()
    }

    /// Takes a reversed amount off the shortcode's balance.
    pub(crate) fn c2b_reversed(&self, shortcode: u32, amount: u64) {
        if let Some(balance) = self.c2b_book().balances.get_mut(&shortcode) {
            *balance = balance.saturating_sub(amount);
        }
    }

    /// Registered C2B URLs, by shortcode.
    pub fn c2b_registrations(&self) -> Vec<Registration> {
        let mut all: Vec<_> = self.c2b_book().registrations.values().cloned().collect();
        all.sort_by_key(|r| r.shortcode);
        all
    }

    /// Every C2B payment, in order.
    pub fn c2b_transactions(&self) -> Vec<C2bTransaction> {
        self.c2b_book().payments.clone()
    }

    /// A customer pays a paybill or till by hand. `Err` says why it could not even start
    /// (unknown number, missing account number, bad amount or phone); a payment that starts
    /// ends with a [`C2bStatus`], after the validation URL answered if it is asked.
    pub async fn c2b_pay(&self, payment: ManualPayment) -> Result<C2bTransaction, String> {
        let config = self.config();
        let phone = crate::normalize_msisdn(&payment.phone)
            .ok_or_else(|| format!("{:?} is not a Kenyan mobile number such as 0712345678", payment.phone))?;
        if !(1..=config.max_amount).contains(&payment.amount) {
            return Err(format!("the amount must be 1 to {} shillings", config.max_amount));
        }
        let (merchant, kind) = payee(&config.merchants, payment.shortcode)
            .ok_or_else(|| format!("no business has the number {}", payment.shortcode))?;
        let account = payment.account.trim().to_owned();
        match kind {
            "Pay Bill" if account.is_empty() || account.chars().count() > 20 => {
                return Err("a Pay Bill payment needs an account number of 1 to 20 characters".into());
            }
            "Buy Goods" if !account.is_empty() => {
                return Err(format!("{} is a till: Buy Goods takes no account number", payment.shortcode));
            }
            _ => {}
        }
        let mut txn = C2bTransaction {
            trans_id: self.new_receipt(),
            shortcode: merchant.shortcode,
            paid_to: payment.shortcode,
            transaction_type: kind.to_owned(),
            account,
            amount: payment.amount,
            phone,
            at: OffsetDateTime::now_utc(),
            status: C2bStatus::Completed,
            result_code: None,
            third_party_trans_id: String::new(),
            from_stk: false,
        };
        if let Some(pin) = &payment.pin
            && let Err(code) = self.check_pin(phone, pin)
        {
            return Ok(self.ended(txn, C2bStatus::Failed, Some(code.into())));
        }
        let registration = self.c2b_book().registrations.get(&merchant.shortcode).cloned();
        if let Some(reg) = registration.as_ref().filter(|_| merchant.external_validation) {
            match self.validate(&txn, merchant, reg).await {
                Verdict::Accept(third_party) => txn.third_party_trans_id = third_party,
                Verdict::Reject(code) => return Ok(self.ended(txn, C2bStatus::Rejected, Some(code))),
                Verdict::NoAnswer if reg.response_type == "Cancelled" => {
                    return Ok(self.ended(txn, C2bStatus::Cancelled, None));
                }
                Verdict::NoAnswer => {}
            }
        }
        if let Err(code) = self.debit(phone, txn.amount) {
            return Ok(self.ended(txn, C2bStatus::Failed, Some(code.into())));
        }
        let faults = payment.faults.unwrap_or_else(|| self.faults());
        Ok(self.confirm(txn, merchant, faults))
    }

    /// Records a payment that ended without money moving.
    fn ended(&self, mut txn: C2bTransaction, status: C2bStatus, code: Option<String>) -> C2bTransaction {
        txn.status = status;
        txn.result_code = code;
        self.c2b_book().payments.push(txn.clone());
        txn
    }

    /// Records a completed payment and sends its confirmation (if URLs are registered).
    fn confirm(&self, txn: C2bTransaction, merchant: &MerchantAccount, faults: Faults) -> C2bTransaction {
        let (url, balance) = {
            let mut book = self.c2b_book();
            let balance = book.balances.entry(txn.shortcode).or_default();
            *balance += txn.amount;
            let balance = *balance;
            book.payments.push(txn.clone());
            (book.registrations.get(&txn.shortcode).map(|r| r.confirmation_url.clone()), balance)
        };
        let body = body(&txn, merchant, Some(balance));
        if let Some(d) = url
            .and_then(|url| Delivery::message("c2b_confirmation", &txn.trans_id, &url, body, faults, self.generation()))
        {
            tokio::spawn(delivery::deliver(self.clone(), self.http().clone(), d));
        }
        txn
    }

    /// Asks the validation URL about a payment, as Daraja does.
    async fn validate(&self, txn: &C2bTransaction, merchant: &MerchantAccount, reg: &Registration) -> Verdict {
        let body = body(txn, merchant, None);
        let started = Instant::now();
        let at = OffsetDateTime::now_utc();
        let sent = self
            .http()
            .post(&reg.validation_url)
            .timeout(self.config().validation_timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let (status, text, error) = match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                (Some(status), r.text().await.unwrap_or_default(), None)
            }
            Err(e) => (None, String::new(), Some(delivery::error_chain(&e.without_url()))),
        };
        let verdict = verdict(status, &text);
        let generation = self.generation();
        self.record_attempt(
            generation,
            CallbackAttempt {
                kind: "c2b_validation",
                checkout_request_id: txn.trans_id.clone(),
                copy: 1,
                attempt: 1,
                at,
                url: reg.validation_url.clone(),
                body,
                status,
                response_body: text.chars().take(512).collect(),
                error,
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
        );
        verdict
    }

    /// Completed payments to `shortcode` between `start` and `end` and inside the pull
    /// window, oldest first, from `offset`, one page.
    pub(crate) fn pulled(
        &self,
        shortcode: u32,
        start: OffsetDateTime,
        end: OffsetDateTime,
        offset: usize,
    ) -> Vec<C2bTransaction> {
        let config = self.config();
        let oldest = OffsetDateTime::now_utc() - config.pull_window;
        let mut found: Vec<_> = self
            .c2b_book()
            .payments
            .iter()
            .filter(|t| t.shortcode == shortcode && t.status == C2bStatus::Completed)
            // Daraja's times have whole seconds.
            .filter(|t| {
                let at = t.at.replace_nanosecond(0).unwrap_or(t.at);
                at >= start.max(oldest).replace_nanosecond(0).unwrap_or(start) && at <= end
            })
            .cloned()
            .collect();
        found.sort_by_key(|t| t.at);
        found.into_iter().skip(offset).take(config.pull_page_size.max(1)).collect()
    }
}

enum Verdict {
    /// Accepted, with the `ThirdPartyTransID` the answer gave.
    Accept(String),
    /// Rejected with a `C2B000xx` code.
    Reject(String),
    /// No usable answer in time: the default action applies.
    NoAnswer,
}

/// Reads a validation answer: `ResultCode` 0 accepts, `C2B00011`–`C2B00016` rejects, anything
/// else (no answer, non-2xx, another code, not JSON) is no answer.
fn verdict(status: Option<u16>, body: &str) -> Verdict {
    if !status.is_some_and(|s| (200..300).contains(&s)) {
        return Verdict::NoAnswer;
    }
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else { return Verdict::NoAnswer };
    let code = match &json["ResultCode"] {
        serde_json::Value::String(s) => s.trim().to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Verdict::NoAnswer,
    };
    let third_party = json["ThirdPartyTransID"].as_str().unwrap_or("").chars().take(64).collect();
    match code.as_str() {
        "0" => Verdict::Accept(third_party),
        c if c.len() == 8 && c.starts_with("C2B000") && ("C2B00011"..="C2B00016").contains(&c) => {
            Verdict::Reject(c.to_owned())
        }
        _ => Verdict::NoAnswer,
    }
}

/// The merchant a typed number pays, and how: its paybill, or one of its tills.
fn payee(merchants: &[MerchantAccount], number: u32) -> Option<(&MerchantAccount, &'static str)> {
    merchants.iter().find_map(|m| {
        if m.shortcode == number && m.tills.is_empty() {
            Some((m, "Pay Bill"))
        } else if m.tills.contains(&number) {
            Some((m, "Buy Goods"))
        } else {
            None
        }
    })
}

/// The payer's `MSISDN` as the shortcode is set up to see it.
fn msisdn(phone: u64, style: MsisdnStyle) -> String {
    let digits = phone.to_string();
    match style {
        MsisdnStyle::Plain => digits,
        MsisdnStyle::Masked => format!("{}****{}", &digits[..5], &digits[9..]),
        MsisdnStyle::Hashed => Sha256::digest(digits.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// A name for the payer, the same for a phone every time.
fn names(phone: u64) -> [&'static str; 3] {
    const FIRST: [&str; 6] = ["JOHN", "MARY", "PETER", "GRACE", "JAMES", "AMINA"];
    const LAST: [&str; 6] = ["KAMAU", "WANJIKU", "OTIENO", "ACHIENG", "MWANGI", "HASSAN"];
    let i = usize::try_from(phone % 6).unwrap_or(0);
    [FIRST[i], "", LAST[(i + 1) % 6]]
}

/// The validation (`balance` `None`) or confirmation body.
fn body(txn: &C2bTransaction, merchant: &MerchantAccount, balance: Option<u64>) -> String {
    let [first, middle, last] = names(txn.phone);
    let balance = balance.map(|b| format!("{b}.00")).unwrap_or_default();
    format!(
        r#"{{"TransactionType":{},"TransID":{},"TransTime":"{}","TransAmount":"{}.00","BusinessShortCode":"{}","BillRefNumber":{},"InvoiceNumber":"","OrgAccountBalance":"{balance}","ThirdPartyTransID":{},"MSISDN":"{}","FirstName":"{first}","MiddleName":"{middle}","LastName":"{last}"}}"#,
        json_str(&txn.transaction_type),
        json_str(&txn.trans_id),
        nairobi_digits(txn.at),
        txn.amount,
        txn.shortcode,
        json_str(&txn.account),
        json_str(&txn.third_party_trans_id),
        msisdn(txn.phone, merchant.msisdn_style),
    )
}

/// Confirms a successful STK payment to the C2B confirmation URL too, for shortcodes set up
/// that way: same `TransID` as the STK receipt, `BillRefNumber` the push's account reference.
pub(crate) fn echo_stk(sim: &Sim, stk: &Transaction) {
    let Some(merchant) = sim.config().merchants.iter().find(|m| m.shortcode == stk.shortcode && m.c2b_echo_stk) else {
        return;
    };
    let (Some(receipt), Some(at)) = (&stk.receipt, stk.completed_at) else { return };
    let txn = C2bTransaction {
        trans_id: receipt.clone(),
        shortcode: stk.shortcode,
        paid_to: stk.party_b,
        transaction_type: stk.transaction_type.clone(),
        account: stk.account_reference.clone(),
        amount: stk.amount,
        phone: stk.phone,
        at,
        status: C2bStatus::Completed,
        result_code: None,
        third_party_trans_id: String::new(),
        from_stk: true,
    };
    sim.confirm(txn, merchant, stk.faults.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_answers_are_read_as_daraja_reads_them() {
        assert!(matches!(verdict(Some(200), r#"{"ResultCode":"0","ResultDesc":"Accepted"}"#), Verdict::Accept(_)));
        assert!(matches!(verdict(Some(200), r#"{"ResultCode":0}"#), Verdict::Accept(_)));
        assert!(matches!(verdict(Some(200), r#"{"ResultCode":"C2B00012"}"#), Verdict::Reject(c) if c == "C2B00012"));
        for (status, body) in [
            (Some(200), r#"{"ResultCode":"C2B00017"}"#),
            (Some(200), r#"{"ResultCode":"1"}"#),
            (Some(500), r#"{"ResultCode":"0"}"#),
            (Some(200), "<html>"),
            (None, ""),
        ] {
            assert!(matches!(verdict(status, body), Verdict::NoAnswer), "{status:?} {body}");
        }
    }

    #[test]
    fn msisdn_styles() {
        assert_eq!(msisdn(254_708_374_149, MsisdnStyle::Plain), "254708374149");
        assert_eq!(msisdn(254_708_374_149, MsisdnStyle::Masked), "25470****149");
        assert_eq!(
            msisdn(254_708_374_149, MsisdnStyle::Hashed),
            "bbff37cea44ac0b2d964ee0dfb8d2df8513dc7ba1b36129a929fc3fbd6dd4af4"
        );
    }
}
