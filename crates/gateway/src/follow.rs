//! Following one payment as it changes, for server-sent event streams (the merchant API's and
//! the checkout page's).

use futures_util::Stream;

use crate::payment::{Payment, PaymentId, Status};
use crate::service::Gateway;

struct Follow {
    gateway: Gateway,
    id: PaymentId,
    changes: tokio::sync::broadcast::Receiver<PaymentId>,
    stopping: tokio::sync::watch::Receiver<bool>,
    last: Option<Payment>,
    pending: Option<Payment>,
    done: bool,
}

impl Follow {
    /// Whether the payment may still change: pending, or failed but still payable by hand.
    fn may_change(&self, p: &Payment) -> bool {
        p.status == Status::Pending || (p.status == Status::Failed && self.gateway.payable_by_hand(p))
    }
}

/// `first`, then the payment again on every change, ending after it is final (a failed payment
/// that can still be paid by hand is not final yet). Woken at once by
/// changes in this process; re-reads every 2 s so changes settled by another replica are seen.
/// Ends early when the server stops (the client reconnects to another replica, or later).
pub fn payment(gateway: Gateway, first: Payment) -> impl Stream<Item = Payment> {
    let changes = gateway.changes();
    let stopping = gateway.stopping();
    let state =
        Follow { gateway, id: first.id.clone(), changes, stopping, last: None, pending: Some(first), done: false };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            if let Some(p) = s.pending.take()
                && s.last.as_ref() != Some(&p)
            {
                s.done = !s.may_change(&p);
                s.last = Some(p.clone());
                return Some((p, s));
            }
            let woken = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                loop {
                    match s.changes.recv().await {
                        Ok(changed) if changed == s.id => return,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
                    }
                }
            });
            tokio::select! {
                _ = woken => {}
                _ = s.stopping.wait_for(|stopping| *stopping) => return None,
            }
            match s.gateway.store().payment(&s.id, None).await {
                // A failed payment whose Paybill window closed is final without changing.
                Ok(Some(p)) if s.last.as_ref() == Some(&p) && !s.may_change(&p) => return None,
                Ok(p) => s.pending = p,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream could not re-read the payment");
                    return None;
                }
            }
        }
    })
}
