//! Refunds: a paid payment's whole amount moved back to the customer by Daraja's Reversal,
//! whose answer comes later at a secret result URL.
//!
//! A refund is `pending` from the request until Daraja's result (or a Transaction Status
//! answer about it) makes it `succeeded` or `failed`. How far its Reversal request got is its
//! [`SendState`]; a request whose answer was lost is never sent again (a second reversal
//! could move money twice): it is asked about, or left for staff.

use serde::Serialize;

use crate::payment::PaymentId;

time_ordered_id!(
    /// A refund's public id, e.g. `re_3f9c0a6b1d2e4f5a6b7c8d9e`.
    RefundId,
    "re_"
);

/// Where a refund is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Asked for; Daraja has not said how it ended.
    Pending,
    /// The money went back to the customer. Final.
    Succeeded,
    /// Nothing moved: Daraja refused, or says the reversal never happened. Another refund of
    /// the payment may be asked for.
    Failed,
}

impl RefundStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Reads the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// How far the Reversal request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SendState {
    /// Not sent yet.
    New,
    /// Being sent: if this outlives its process, the answer was lost.
    Sending,
    /// Daraja queued it; its result comes to the result URL.
    Accepted,
    /// Daraja refused it at once: nothing was queued.
    Refused,
    /// Sent, and no answer came: Daraja may have queued it. Never sent again.
    Unknown,
}

impl SendState {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Sending => "sending",
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Unknown => "unknown",
        }
    }

    /// Reads the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "new" => Self::New,
            "sending" => Self::Sending,
            "accepted" => Self::Accepted,
            "refused" => Self::Refused,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }
}

/// A refund, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    /// Public id.
    pub id: RefundId,
    /// The payment refunded.
    pub payment_id: PaymentId,
    /// Whole shillings (always the payment's amount).
    pub amount: u64,
    /// Where it is.
    pub status: RefundStatus,
    /// Why, as the requester wrote it.
    pub reason: String,
    /// The reversal's own M-Pesa receipt, once it succeeded.
    pub receipt: Option<String>,
    /// Daraja's result code, once known (`R000001`, `21`, …).
    pub result_code: Option<String>,
    /// Daraja's description, or Lipa's when it decided.
    pub result_desc: Option<String>,
    /// Whether staff should look at it.
    pub needs_review: bool,
    /// Who asked: `api` (a merchant's key) or `admin:<user>`.
    pub requested_by: String,
    /// Created (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub created_at: i64,
    /// Last changed (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::millis")]
    pub updated_at: i64,
    /// Succeeded or failed (RFC 3339, UTC).
    #[serde(serialize_with = "crate::time_fmt::opt_millis")]
    pub settled_at: Option<i64>,
    /// How far the Reversal request got.
    #[serde(skip)]
    pub send_state: SendState,
    /// Daraja's `OriginatorConversationID` for the Reversal.
    #[serde(skip)]
    pub originator_conversation_id: Option<String>,
    /// Whether Daraja said the request timed out in its queue.
    #[serde(skip)]
    pub timed_out: bool,
    /// Transaction Status questions asked about it.
    #[serde(skip)]
    pub status_checks: u32,
    /// Staff's or Lipa's note about it.
    #[serde(skip)]
    pub note: String,
    #[serde(skip)]
    pub(crate) api_key_id: Option<String>,
}

/// The refunds worker: sends refunds whose request's own send never happened and asks
/// Transaction Status about reversals whose result has not come
/// ([`Gateway::refund_round`](crate::service::Gateway::refund_round)), every few seconds.
pub async fn run(gateway: crate::service::Gateway, shutdown: tokio::sync::watch::Receiver<bool>) {
    crate::worker::repeat("refunds", std::time::Duration::from_secs(2), shutdown, || async {
        gateway.refund_round().await.map(|steps| steps > 0)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_spellings_round_trip() {
        let id = RefundId::generate();
        assert_eq!(RefundId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(RefundId::parse("pay_3f9c0a6b1d2e4f5a6b7c8d9e"), None);
        assert_eq!(RefundId::parse("re_3F9C0A6B1D2E4F5A6B7C8D9E"), None);
        for s in [RefundStatus::Pending, RefundStatus::Succeeded, RefundStatus::Failed] {
            assert_eq!(RefundStatus::parse(s.as_str()), Some(s));
        }
        for s in [SendState::New, SendState::Sending, SendState::Accepted, SendState::Refused, SendState::Unknown] {
            assert_eq!(SendState::parse(s.as_str()), Some(s));
        }
    }
}
