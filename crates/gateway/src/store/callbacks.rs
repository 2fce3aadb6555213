//! What settlement keeps of a callback, decided once for every backend: what the message is
//! (malformed, an orphan, or the rules' decision for the payment its token names), and what
//! of it is stored (the whole body, an excerpt, or only a count beyond the budget).

use crate::payment::{Payment, PaymentId, Status};
use crate::settlement::{Current, Decision, Outcome};

use super::{IncomingCallback, StoreError, UNMATCHED_EXCERPT_BYTES, sql};

/// The columns settlement needs, read on the callback hot path instead of the whole row.
#[derive(Debug)]
pub(super) struct Settling {
    pub(super) id: PaymentId,
    pub(super) status: Status,
    pub(super) amount: daraja::Amount,
    pub(super) phone: daraja::Msisdn,
    pub(super) checkout_request_id: Option<daraja::CheckoutRequestId>,
    pub(super) receipt: Option<daraja::ReceiptNumber>,
    pub(super) result_code: Option<String>,
    pub(super) settled_by: Option<crate::payment::SettledBy>,
}

impl Settling {
    /// From `SELECT id, status, amount, phone, checkout_request_id, receipt, result_code,
    /// settled_by`.
    pub(super) fn from_cells(row: &[sql::Cell]) -> Result<Self, StoreError> {
        let [id, status, amount, phone, checkout_request_id, receipt, result_code, settled_by] = row else {
            return Err(StoreError::corrupt("a settling row has the wrong columns"));
        };
        Ok(Self {
            id: PaymentId::from_db(id.text()),
            status: Status::parse(&status.text()).ok_or_else(|| StoreError::corrupt("unknown status"))?,
            amount: super::stored_amount(amount.int())?,
            phone: daraja::Msisdn::parse(&phone.text())
                .map_err(|_| StoreError::corrupt("a phone is not a Kenyan MSISDN"))?,
            checkout_request_id: super::daraja_id(
                checkout_request_id.opt_text().as_deref(),
                daraja::CheckoutRequestId::parse,
            )?,
            receipt: super::daraja_id(receipt.opt_text().as_deref(), daraja::ReceiptNumber::parse)?,
            result_code: result_code.opt_text(),
            settled_by: settled_by
                .opt_text()
                .map(|s| crate::payment::SettledBy::parse(&s).ok_or_else(|| StoreError::corrupt("unknown settled_by")))
                .transpose()?,
        })
    }

    pub(super) fn current(&self) -> Current<'_> {
        Current {
            status: self.status,
            amount: self.amount,
            phone: self.phone,
            checkout_request_id: self.checkout_request_id.as_ref(),
            // Callbacks are matched by CheckoutRequestID alone.
            merchant_request_id: None,
            receipt: self.receipt.as_ref(),
            result_code: self.result_code.as_deref(),
            settled_by: self.settled_by,
        }
    }
}

/// What a callback is, before anything is written: malformed, an orphan (no payment has its
/// token), or the settlement rules' decision for its payment.
pub(super) fn callback_decision(
    parsed: &Result<daraja::StkCallback, daraja::CallbackError>,
    payment: Option<Current<'_>>,
) -> Decision {
    match (parsed, payment) {
        (Err(e), _) => Decision { outcome: Outcome::Malformed, change: None, note: e.to_string() },
        (Ok(_), None) => {
            Decision { outcome: Outcome::Orphan, change: None, note: "no payment has this callback token".into() }
        }
        (Ok(cb), Some(p)) => crate::settlement::on_callback(&p, cb),
    }
}

/// What the settlement rules look at, from a whole payment.
pub(super) fn current(p: &Payment) -> Current<'_> {
    Current {
        status: p.status,
        amount: p.amount,
        phone: p.phone,
        checkout_request_id: p.checkout_request_id.as_ref(),
        merchant_request_id: p.merchant_request_id.as_ref(),
        receipt: p.receipt.as_ref(),
        result_code: p.result_code.as_deref(),
        settled_by: p.settled_by,
    }
}

/// What is stored of the body of a callback no payment took: at most
/// [`UNMATCHED_EXCERPT_BYTES`], with its size and SHA-256 added to `note` when cut.
fn unmatched_excerpt<'b>(body: &'b [u8], note: &mut String) -> &'b [u8] {
    if body.len() <= UNMATCHED_EXCERPT_BYTES {
        return body;
    }
    note.push_str(&format!(
        " (the first {UNMATCHED_EXCERPT_BYTES} of {} bytes kept; SHA-256 {})",
        body.len(),
        crate::ids::sha256_hex(body)
    ));
    &body[..UNMATCHED_EXCERPT_BYTES]
}

/// What a settlement keeps of a callback, decided here for every backend.
pub(super) enum Kept<'a> {
    /// Its row.
    Row(CallbackRow<'a>),
    /// Only a count: no payment took it, and the budget for storing such callbacks is spent.
    Counted(Tally),
}

/// A callback's row: the body (cut to an excerpt when no payment took it), its outcome and
/// the decision's note.
pub(super) struct CallbackRow<'a> {
    pub(super) received_at: i64,
    pub(super) payment_id: Option<&'a str>,
    pub(super) token_hash: &'a str,
    pub(super) source: Option<&'a str>,
    pub(super) checkout_request_id: Option<&'a str>,
    pub(super) outcome: &'static str,
    pub(super) note: String,
    pub(super) body: &'a [u8],
}

/// A callback counted instead of stored: tallied under its minute (ms, the minute's start).
#[derive(Debug, Clone, Copy)]
pub(super) struct Tally {
    pub(super) minute: i64,
    pub(super) bytes: i64,
    pub(super) at: i64,
}

/// What to keep of `incoming`, given the payment that took it (if any), its outcome and its
/// decision's note.
pub(super) fn kept<'a>(
    incoming: &'a IncomingCallback,
    payment_id: Option<&'a PaymentId>,
    outcome: Outcome,
    note: String,
) -> Kept<'a> {
    let (note, body) = if payment_id.is_some() {
        (note, incoming.body.as_slice())
    } else if incoming.keep_if_unmatched {
        let mut note = note;
        let body = unmatched_excerpt(&incoming.body, &mut note);
        (note, body)
    } else {
        let at = incoming.received_at;
        let bytes = i64::try_from(incoming.body.len()).unwrap_or(i64::MAX);
        return Kept::Counted(Tally { minute: at - at.rem_euclid(60_000), bytes, at });
    };
    Kept::Row(CallbackRow {
        received_at: incoming.received_at,
        payment_id: payment_id.map(PaymentId::as_str),
        token_hash: &incoming.token_hash,
        source: incoming.source.as_deref(),
        checkout_request_id: incoming.parsed.as_ref().ok().map(|cb| cb.checkout_request_id.as_str()),
        outcome: outcome.as_str(),
        note,
        body,
    })
}
