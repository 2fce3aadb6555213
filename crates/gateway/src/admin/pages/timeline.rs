//! A payment's timeline in words: what happened, to the second, with the recorded details
//! (JSON) one click away.

use maud::{Markup, html};

use crate::time_fmt::nairobi_seconds;

/// What a timeline event kind means, in a sentence for the shop's staff.
pub(super) fn words(kind: &str) -> String {
    let known = match kind {
        "created" => Some("Payment created"),
        "push_accepted" => Some("Prompt sent: Daraja accepted the push"),
        "push_refused" => Some("Daraja refused the push; no prompt was sent"),
        "push_unknown" => Some("No answer to the push: Daraja may have sent the prompt"),
        "query" => Some("Asked Daraja how the prompt ended (STK Query)"),
        "expired" => Some("Expired: no answer came in time"),
        "email_sent" => Some("Receipt email sent"),
        "refund_requested" => Some("Refund requested"),
        "refund_sent" => Some("Reversal sent to Daraja"),
        "refund_not_sent" => Some("Reversal not sent"),
        "refund_send_unknown" => Some("No answer to the reversal request: staff must check"),
        _ => None,
    };
    if let Some(known) = known {
        return known.to_owned();
    }
    // "<source>_<outcome>": a message from Daraja and what it did to the payment.
    let sources = [
        ("callback", "Daraja's callback"),
        ("query", "STK Query answer"),
        ("status", "Transaction Status answer"),
        ("assignment", "Paybill payment"),
        ("c2b", "Paybill payment"),
    ];
    for (source, said) in sources {
        let Some(outcome) = kind.strip_prefix(source).and_then(|rest| rest.strip_prefix('_')) else { continue };
        let did = match outcome {
            "applied" => "applied",
            "duplicate" => "received again; ignored (duplicate)",
            "receipt_added" => "gave the receipt",
            "late_success" => "said paid after the payment had ended: paid, flagged for review",
            "late_failure" => "said failed after the payment was paid: ignored, flagged for review",
            "mismatch" => "did not match the payment (amount or phone): flagged for review",
            "conflict" => "conflicts with an earlier answer: flagged for review",
            "partial" => "paid part of the amount",
            "overpaid" => "paid more than the amount: flagged for a refund",
            "same_transaction" => "was the same M-Pesa transaction as the receipt: recorded once",
            other => return format!("{said}: {}", other.replace('_', " ")),
        };
        return format!("{said} {did}");
    }
    let mut text = kind.replace(['_', '.'], " ");
    if let Some(first) = text.get(..1) {
        text = first.to_uppercase() + &text[1..];
    }
    text
}

/// The timeline list.
pub(super) fn list(events: &[crate::store::Event]) -> Markup {
    html! {
        ol class="timeline" {
            @for e in events {
                li {
                    time { (nairobi_seconds(e.at)) } " " strong { (words(&e.kind)) }
                    @if !e.detail.is_null() && e.detail != serde_json::json!({}) {
                        details class="raw" {
                            summary { "Details" }
                            code { (e.kind) }
                            pre { (serde_json::to_string_pretty(&e.detail).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn events_read_as_sentences() {
        assert_eq!(words("push_accepted"), "Prompt sent: Daraja accepted the push");
        assert_eq!(words("callback_applied"), "Daraja's callback applied");
        assert_eq!(words("query_duplicate"), "STK Query answer received again; ignored (duplicate)");
        assert_eq!(
            words("callback_late_success"),
            "Daraja's callback said paid after the payment had ended: paid, flagged for review"
        );
        assert_eq!(words("something_new"), "Something new", "an unknown kind still reads as words");
        assert!(!words("callback_orphan").contains('_'));
    }
}
