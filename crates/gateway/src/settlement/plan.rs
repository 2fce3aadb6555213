//! The settlement plan: the effects of a decision, worked out once for every storage backend.
//!
//! The rules ([`super::on_callback`], [`super::on_query`]) decide; [`Plan::of`] turns any
//! decision into what to persist: the change to the payment row, whether it is flagged for
//! review, its timeline event, and the webhook event it announces. [`outbox`] then writes
//! that announcement's rows (the webhook body fixed from the payment as the change leaves it,
//! and the customer's receipt email). A backend only executes a plan inside the transaction
//! holding the payment's row: it never decides what to write.
//!
//! Expiry ([`Plan::expiry`]) is planned here too; a new payment kind adds its rules beside
//! the STK ones and reuses this plan unchanged.

use super::{Change, Decision, Outcome};
use crate::payment::{Payment, PaymentId, Status};

/// What a decision writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// What the decision was about (`callback`, `query`, `expiry`, `push`); a message's
    /// timeline event kind begins with it (`callback_applied`).
    pub source: &'static str,
    /// Classification (kept with the callback's row).
    pub outcome: Outcome,
    /// The change to write to the payment row, if any.
    pub change: Option<Change>,
    /// Whether the payment is flagged for staff review (with the change, or alone).
    pub review: bool,
    /// The payment's status before.
    pub before: Status,
    /// The payment's status once the plan is written.
    pub after: Status,
    /// The timeline entry.
    pub event: NewEvent,
    /// The webhook event it announces: a new state, a receipt added later, or something staff
    /// must review.
    pub announce: Option<&'static str>,
    /// Why, in a sentence (the decision's note).
    pub note: String,
}

/// A timeline entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// `callback_applied`, `query_duplicate`, `expired`, …
    pub kind: String,
    /// Its detail.
    pub detail: serde_json::Value,
}

impl Plan {
    /// The effects of `decision` about a payment in state `before`, heard through `source`
    /// (`callback`, `query`).
    pub fn of(source: &'static str, decision: Decision, before: Status) -> Self {
        let Decision { outcome, change, note } = decision;
        let after = change.as_ref().map_or(before, |c| c.status);
        let event = NewEvent {
            kind: format!("{source}_{}", outcome.as_str()),
            detail: serde_json::json!({"note": note, "status": after.as_str()}),
        };
        Self {
            source,
            outcome,
            review: outcome.needs_review(),
            change,
            before,
            after,
            event,
            announce: announcement(outcome, before, after),
            note,
        }
    }

    /// The effects of expiring a pending payment. When the push's answer never came (the
    /// request timed out, or the process died while sending it) Daraja may still have
    /// prompted the customer, and without its CheckoutRequestID it cannot be asked: such a
    /// payment is also flagged for review, as is one that was paid in part by hand
    /// (`received` shillings) and never in full.
    pub fn expiry(push_unheard: bool, received: u64) -> Self {
        let mut note = if push_unheard {
            "no conclusive answer in time; the push's answer was lost, so Daraja may have prompted the customer \
             and cannot be asked: check the M-Pesa statement for this phone and amount"
                .to_owned()
        } else {
            "no conclusive answer in time".to_owned()
        };
        if received > 0 {
            note.push_str(&format!("; KES {received} was paid by hand towards it and never the rest: refund it"));
        }
        let review = push_unheard || received > 0;
        Self {
            source: "expiry",
            outcome: Outcome::Applied,
            change: None,
            review,
            before: Status::Pending,
            after: Status::Expired,
            event: NewEvent {
                kind: "expired".into(),
                detail: serde_json::json!({"note": note, "needs_review": review}),
            },
            announce: announcement(Outcome::Applied, Status::Pending, Status::Expired),
            note,
        }
    }

    /// The effects of Daraja refusing the push: the payment fails (when `failed`: nothing
    /// settled it before the answer came) and that move is announced.
    pub fn push_refused(code: &str, message: &str, failed: bool) -> Self {
        let after = if failed { Status::Failed } else { Status::Pending };
        Self {
            source: "push",
            outcome: Outcome::Applied,
            change: None,
            review: false,
            before: Status::Pending,
            after,
            event: NewEvent {
                kind: "push_refused".into(),
                detail: serde_json::json!({"code": code, "message": message}),
            },
            announce: announcement(Outcome::Applied, Status::Pending, after),
            note: message.into(),
        }
    }

    /// The plan for `decision` instead, after writing this one's change was refused (its
    /// receipt or CheckoutRequestID belongs to another payment).
    pub fn replanned(&self, decision: Decision) -> Self {
        Self::of(self.source, decision, self.before)
    }

    /// The decision this plan carries out (for callers that report it).
    pub fn decision(self) -> Decision {
        Decision { outcome: self.outcome, change: self.change, note: self.note }
    }

    /// Whether the payment is flagged with no change to write.
    pub fn flags_only(&self) -> bool {
        self.change.is_none() && self.review
    }

    /// The payment as writing this plan at `now` leaves it, so a backend need not read it
    /// back for its webhook (debug builds compare it with the row).
    pub fn applied_to(&self, mut p: Payment, now: i64) -> Payment {
        if let Some(ch) = &self.change {
            p.status = ch.status;
            p.failure_reason = ch.failure_reason;
            p.result_code = Some(ch.result_code.clone());
            p.result_desc = Some(ch.result_desc.clone());
            if let Some(receipt) = &ch.receipt {
                p.receipt = Some(receipt.clone());
            }
            if let Some(at) = ch.transaction_date {
                p.transaction_date = Some(at);
            }
            if p.checkout_request_id.is_none() {
                p.checkout_request_id.clone_from(&ch.checkout_request_id);
            }
            p.settled_by = Some(ch.settled_by);
            p.settled_at = p.settled_at.or(Some(now));
        }
        if self.change.is_some() || self.review {
            p.needs_review |= self.review;
            p.updated_at = now;
        }
        p
    }
}

/// The webhook event a settlement announces, if any.
fn announcement(outcome: Outcome, before: Status, after: Status) -> Option<&'static str> {
    if after != before {
        return Some(match after {
            Status::Paid => "payment.paid",
            Status::Failed => "payment.failed",
            Status::Expired => "payment.expired",
            Status::Pending => return None,
        });
    }
    match outcome {
        Outcome::ReceiptAdded => Some("payment.receipt_added"),
        o if o.needs_review() => Some("payment.needs_review"),
        _ => None,
    }
}

/// The rows an announcement adds to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbox {
    /// The webhook event.
    pub webhook: NewWebhookEvent,
    /// The receipt email, when the payment is paid and has a customer address.
    pub email: Option<NewEmail>,
}

/// A webhook event to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhookEvent {
    /// `evt_…`, time-ordered.
    pub id: String,
    /// The payment.
    pub payment_id: PaymentId,
    /// The API key whose secret signs it.
    pub api_key_id: String,
    /// `payment.paid`, …
    pub event_type: &'static str,
    /// The payment's own webhook URL, if it gave one.
    pub url: Option<String>,
    /// The exact body, fixed now.
    pub payload: String,
    /// Created and first due, ms.
    pub at: i64,
}

/// A receipt email to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEmail {
    /// `eml_…`, time-ordered.
    pub id: String,
    /// The payment it is the receipt of.
    pub payment_id: PaymentId,
    /// Address.
    pub recipient: String,
    /// Created and first due, ms.
    pub at: i64,
}

/// The outbox rows announcing `event_type` for `payment` (as it now is) at `now`: the webhook
/// body is `{id, type, created_at, data}` with the payment as the API shows it.
pub fn outbox(payment: &Payment, event_type: &'static str, now: i64) -> Result<Outbox, serde_json::Error> {
    let email = match (&payment.customer_email, event_type) {
        (Some(recipient), "payment.paid") => Some(NewEmail {
            id: format!("eml_{}", crate::ids::time_ordered_hex()),
            payment_id: payment.id.clone(),
            recipient: recipient.clone(),
            at: now,
        }),
        _ => None,
    };
    Ok(Outbox { webhook: webhook_event(payment, event_type, payment, now)?, email })
}

/// The webhook event announcing a refund's end (`refund.succeeded`, `refund.failed`): its
/// `data` is the refund, with the payment as it now is under `payment`.
pub fn refund_outbox(
    payment: &Payment,
    refund: &crate::refund::Refund,
    event_type: &'static str,
    now: i64,
) -> Result<NewWebhookEvent, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Data<'a> {
        #[serde(flatten)]
        refund: &'a crate::refund::Refund,
        payment: &'a Payment,
    }
    webhook_event(payment, event_type, &Data { refund, payment }, now)
}

/// A webhook event about `payment`: the envelope every event has, around `data`, to the
/// payment's webhook URL.
fn webhook_event<T: serde::Serialize>(
    payment: &Payment,
    event_type: &'static str,
    data: &T,
    now: i64,
) -> Result<NewWebhookEvent, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Envelope<'a, T> {
        id: &'a str,
        #[serde(rename = "type")]
        event_type: &'a str,
        #[serde(serialize_with = "crate::time_fmt::millis")]
        created_at: i64,
        data: &'a T,
    }
    // Ids begin with their creation time, so the rows a burst of callbacks writes share index
    // pages (see [`crate::ids::time_ordered_hex`]).
    let id = format!("evt_{}", crate::ids::time_ordered_hex());
    let payload = serde_json::to_string(&Envelope { id: &id, event_type, created_at: now, data })?;
    Ok(NewWebhookEvent {
        id,
        payment_id: payment.id.clone(),
        api_key_id: payment.api_key_id.clone(),
        event_type,
        url: payment.webhook_url.clone(),
        payload,
        at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::{FailureReason, SettledBy};

    fn paid_change() -> Change {
        Change {
            status: Status::Paid,
            failure_reason: None,
            result_code: "0".into(),
            result_desc: "ok".into(),
            receipt: Some(daraja::ReceiptNumber::parse("UAB1234567").unwrap()),
            transaction_date: Some(1_700_000_000_000),
            checkout_request_id: None,
            settled_by: SettledBy::Callback,
        }
    }

    fn payment() -> Payment {
        crate::payment::example()
    }

    fn decision(outcome: Outcome, change: Option<Change>) -> Decision {
        Decision { outcome, change, note: "why".into() }
    }

    #[test]
    fn an_applied_payment_is_announced_paid_and_its_event_names_the_source() {
        let plan = Plan::of("callback", decision(Outcome::Applied, Some(paid_change())), Status::Pending);
        assert_eq!((plan.after, plan.announce, plan.review), (Status::Paid, Some("payment.paid"), false));
        assert_eq!(plan.event.kind, "callback_applied");
        assert_eq!(plan.event.detail, serde_json::json!({"note": "why", "status": "paid"}));
    }

    #[test]
    fn a_duplicate_writes_only_its_timeline_event() {
        let plan = Plan::of("query", decision(Outcome::Duplicate, None), Status::Paid);
        assert_eq!((plan.change.is_none(), plan.review, plan.announce), (true, false, None));
        assert_eq!(plan.event.kind, "query_duplicate");
        assert!(!plan.flags_only());
    }

    #[test]
    fn a_conflict_flags_the_payment_and_announces_it_for_review() {
        let plan = Plan::of("callback", decision(Outcome::Conflict, None), Status::Failed);
        assert!(plan.flags_only());
        assert_eq!((plan.after, plan.announce), (Status::Failed, Some("payment.needs_review")));
    }

    #[test]
    fn a_late_success_is_a_new_state_flagged_and_announced_as_paid() {
        let plan = Plan::of("callback", decision(Outcome::LateSuccess, Some(paid_change())), Status::Expired);
        assert_eq!((plan.review, plan.flags_only(), plan.announce), (true, false, Some("payment.paid")));
    }

    #[test]
    fn a_receipt_added_later_is_announced_without_a_new_state() {
        let mut change = paid_change();
        change.settled_by = SettledBy::Query;
        let plan = Plan::of("callback", decision(Outcome::ReceiptAdded, Some(change)), Status::Paid);
        assert_eq!(plan.announce, Some("payment.receipt_added"));
    }

    #[test]
    fn a_failure_is_announced_failed() {
        let change = Change {
            status: Status::Failed,
            failure_reason: Some(FailureReason::Cancelled),
            result_code: "1032".into(),
            result_desc: "cancelled".into(),
            receipt: None,
            transaction_date: None,
            checkout_request_id: None,
            settled_by: SettledBy::Callback,
        };
        let plan = Plan::of("callback", decision(Outcome::Applied, Some(change)), Status::Pending);
        assert_eq!(plan.announce, Some("payment.failed"));
    }

    #[test]
    fn an_expiry_flags_only_a_push_whose_answer_was_lost() {
        let heard = Plan::expiry(false, 0);
        assert_eq!((heard.after, heard.announce, heard.review), (Status::Expired, Some("payment.expired"), false));
        assert_eq!(heard.event.detail["needs_review"], false);
        let unheard = Plan::expiry(true, 0);
        assert!(unheard.review);
        assert!(unheard.event.detail["note"].as_str().unwrap().contains("M-Pesa statement"));
    }

    #[test]
    fn the_payment_as_a_plan_leaves_it_has_the_change_and_the_flag() {
        let before = payment();
        let plan = Plan::of("callback", decision(Outcome::LateSuccess, Some(paid_change())), Status::Pending);
        let after = plan.applied_to(before.clone(), 50);
        assert_eq!((after.status, after.receipt.as_deref()), (Status::Paid, Some("UAB1234567")));
        assert_eq!((after.settled_at, after.updated_at, after.needs_review), (Some(50), 50, true));
        // The CheckoutRequestID already known is kept.
        assert_eq!(after.checkout_request_id.as_deref(), Some("ws_CO_1"));
        let duplicate = Plan::of("callback", decision(Outcome::Duplicate, None), Status::Pending);
        assert_eq!(duplicate.applied_to(before.clone(), 60), before);
    }

    #[test]
    fn a_paid_announcement_queues_the_receipt_email_and_fixes_the_webhook_body() {
        let mut p = payment();
        p.status = Status::Paid;
        let out = outbox(&p, "payment.paid", 1_700_000_000_000).unwrap();
        assert!(out.webhook.id.starts_with("evt_"));
        assert_eq!(out.webhook.url.as_deref(), Some("https://shop.example/hook"));
        let body: serde_json::Value = serde_json::from_str(&out.webhook.payload).unwrap();
        assert_eq!(body["id"], out.webhook.id.as_str());
        assert_eq!(body["type"], "payment.paid");
        assert_eq!(body["data"]["id"], p.id.as_str());
        assert_eq!(body["data"]["metadata"]["order"], 7);
        assert!(body["data"].get("api_key_id").is_none(), "{body}");
        let email = out.email.unwrap();
        assert_eq!((email.recipient.as_str(), email.at), ("a@example.com", 1_700_000_000_000));
        assert!(email.id.starts_with("eml_"));
        // No email for other announcements, or without an address.
        assert!(outbox(&p, "payment.receipt_added", 1).unwrap().email.is_none());
        p.customer_email = None;
        assert!(outbox(&p, "payment.paid", 1).unwrap().email.is_none());
    }
}
