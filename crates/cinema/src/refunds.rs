//! Cancelling a paid booking before the screening: the shop asks Lipa for the refund and
//! releases the seats when Lipa's `refund.succeeded` webhook arrives (a failed refund keeps
//! the booking, and says so).

use std::sync::Arc;

use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::db::{Db, DbError, Ticket, TicketStatus};
use crate::{State, now_ms};

/// Where a booking's refund is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundState {
    /// Asked for; the seats are held until M-PESA confirms.
    Pending,
    /// The money went back; the seats are on sale again.
    Succeeded,
    /// M-PESA did not refund it; the booking stands.
    Failed,
}

impl RefundState {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The columns the refund adds to `tickets` (added to databases made before it).
pub(crate) const COLUMNS: [(&str, &str); 4] = [
    ("refund_status", "TEXT"),
    ("refund_id", "TEXT"),
    ("refund_note", "TEXT"),
    ("refund_tries", "INTEGER NOT NULL DEFAULT 0"),
];

impl Db {
    /// Marks a paid ticket as being refunded; returns it with the idempotency key of this
    /// try, or `None` when it is not paid or a refund is pending or done.
    pub async fn start_refund(&self, id: String, now: i64) -> Result<Option<(Ticket, String)>, DbError> {
        self.run(move |c| {
            let changed = c.execute(
                "UPDATE tickets SET refund_status = 'pending', refund_note = NULL, refund_tries = refund_tries + 1,
                    updated_at = ?2
                 WHERE id = ?1 AND status = 'paid' AND lipa_payment_id IS NOT NULL
                   AND (refund_status IS NULL OR refund_status = 'failed')",
                params![id, now],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            let tries: i64 = c.query_row("SELECT refund_tries FROM tickets WHERE id = ?1", [&id], |r| r.get(0))?;
            let ticket = crate::db::find_ticket(c, &id)?;
            Ok(ticket.map(|t| (t, format!("refund-{id}-{tries}"))))
        })
        .await
    }

    /// Records what Lipa answered the refund request: its refund id, or why it was refused
    /// (the booking stands).
    pub async fn refund_asked(&self, id: String, answer: Result<String, String>, now: i64) -> Result<(), DbError> {
        self.run(move |c| {
            match answer {
                Ok(refund_id) => c.execute(
                    "UPDATE tickets SET refund_id = ?2, updated_at = ?3 WHERE id = ?1",
                    params![id, refund_id, now],
                )?,
                Err(why) => c.execute(
                    "UPDATE tickets SET refund_status = 'failed', refund_note = ?2, updated_at = ?3
                     WHERE id = ?1 AND refund_status = 'pending'",
                    params![id, why, now],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// Applies a refund's end once per webhook event id. Returns false for an event already
    /// applied.
    pub async fn refund_ended(&self, event_id: String, end: RefundEnd, now: i64) -> Result<bool, DbError> {
        let RefundEnd { ticket_id, refund_id, succeeded, note } = end;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let fresh = tx.execute(
                "INSERT OR IGNORE INTO webhook_events (id, received_at) VALUES (?1, ?2)",
                params![event_id, now],
            )?;
            if fresh == 0 {
                return Ok(false);
            }
            let current: Option<(Option<String>, Option<String>)> = tx
                .query_row("SELECT refund_status, refund_id FROM tickets WHERE id = ?1", [&ticket_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let (status, current_refund) = current.unwrap_or_default();
            // A success is final; a failure does not undo one heard before, and the failure of
            // an earlier try does not touch a later one.
            let ours = current_refund.is_none_or(|r| r == refund_id);
            if status.as_deref() != Some("succeeded") && (ours || succeeded) {
                tx.execute(
                    "UPDATE tickets SET refund_status = ?2, refund_note = ?3, updated_at = ?4 WHERE id = ?1",
                    params![ticket_id, if succeeded { "succeeded" } else { "failed" }, note, now],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

/// `POST /tickets/{id}/cancel`: asks Lipa to refund a paid booking whose screening has not
/// started.
pub(crate) async fn cancel(AxumState(state): AxumState<Arc<State>>, Path(id): Path<String>) -> Response {
    let back = Redirect::to(&format!("/tickets/{id}")).into_response();
    let ticket = match state.db.ticket(id.clone()).await {
        Ok(Some(t)) => t,
        Ok(None) => return (StatusCode::NOT_FOUND, "There is no such booking.").into_response(),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let started = match state.db.movie(ticket.movie_id).await {
        Ok(Some(m)) => m.show_time <= now_ms(),
        _ => true,
    };
    if started || ticket.status != TicketStatus::Paid {
        return back;
    }
    let Ok(Some((ticket, key))) = state.db.start_refund(id.clone(), now_ms()).await else { return back };
    let payment_id = ticket.lipa_payment_id.clone().unwrap_or_default();
    let answer = state.lipa.refund(&payment_id, "Booking cancelled by the customer", &key).await;
    if let Err(e) = &answer {
        tracing::warn!(error = %e, ticket = %id, "refund not taken");
    }
    let answer = answer.map_err(|_| "We could not ask for the refund just now; please try again.".to_owned());
    if let Err(e) = state.db.refund_asked(id, answer, now_ms()).await {
        tracing::error!(error = %e, "refund answer not recorded");
    }
    back
}

/// What a `refund.succeeded` or `refund.failed` webhook says about a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundEnd {
    /// The ticket.
    pub ticket_id: String,
    /// Lipa's refund.
    pub refund_id: String,
    /// Whether the money went back.
    pub succeeded: bool,
    /// A line for the customer.
    pub note: String,
}

/// Reads a `refund.succeeded` or `refund.failed` webhook's data.
pub(crate) fn refund_event(kind: &str, data: &Value) -> Option<RefundEnd> {
    let ticket_id = data["payment"]["metadata"]["ticket_id"].as_str()?.to_owned();
    let refund_id = data["id"].as_str()?.to_owned();
    let (succeeded, note) = match kind {
        "refund.succeeded" => {
            (true, format!("M-PESA refund receipt {}", data["receipt"].as_str().unwrap_or("on its way by SMS")))
        }
        "refund.failed" => (
            false,
            "M-PESA could not refund this booking; it still stands. Please contact us at the box office.".into(),
        ),
        _ => return None,
    };
    Some(RefundEnd { ticket_id, refund_id, succeeded, note })
}

/// The paid ticket page's part about cancelling: the button, or where the refund is.
pub(crate) fn section(ticket: &Ticket, show_time: i64, total: &str) -> Markup {
    let before_show = show_time > now_ms();
    html! {
        @match ticket.refund_status {
            Some(RefundState::Pending) => {
                p class="status" { "Cancelling: your refund of " (total) " is on its way. Your seats are released when M-PESA confirms it." }
            }
            Some(RefundState::Succeeded) => {
                p class="status" { "Cancelled. " (total) " was refunded to your M-PESA. " (ticket.refund_note.as_deref().unwrap_or("")) }
            }
            Some(RefundState::Failed) | None => {
                @if let Some(note) = ticket.refund_note.as_deref().filter(|_| ticket.refund_status.is_some()) {
                    p class="status bad" { (note) }
                }
                @if before_show {
                    form method="post" action=(format!("/tickets/{}/cancel", ticket.id)) {
                        button type="submit" class="secondary" { "Cancel booking and refund " (total) }
                    }
                }
            }
        }
    }
}
