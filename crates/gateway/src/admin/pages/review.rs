//! The review queue: flagged payments and callbacks no payment took.

use super::*;

/// Callbacks shown per page of the review queue.
pub(in crate::admin) const REVIEW_PAGE: i64 = 25;

#[derive(Debug, Default, Deserialize)]
pub(in crate::admin) struct ReviewQuery {
    /// Show callbacks stored before this one (the next page).
    #[serde(default)]
    before: Option<i64>,
}

pub(in crate::admin) async fn review(
    State(gateway): State<Gateway>,
    staff: Staff,
    Query(q): Query<ReviewQuery>,
    headers: HeaderMap,
) -> Response {
    let store = gateway.store();
    let flagged = store.payments(PaymentFilter { needs_review: Some(true), limit: 200, ..PaymentFilter::default() });
    let callbacks = store.unresolved_callbacks(q.before, REVIEW_PAGE + 1);
    let counted = store.unmatched_counted_since(gateway.now() - DAY);
    let by_hand = store.c2b_transactions(Some("unmatched"), None, 201);
    let (flagged, mut callbacks, counted, by_hand) = match tokio::try_join!(flagged, callbacks, counted, by_hand) {
        Ok(r) => r,
        Err(e) => return store_down(&e),
    };
    let more = callbacks.len() > usize::try_from(REVIEW_PAGE).unwrap_or(usize::MAX);
    callbacks.truncate(usize::try_from(REVIEW_PAGE).unwrap_or(usize::MAX));
    let next_page = callbacks.last().filter(|_| more).map(|c| format!("/admin/review?before={}", c.id));
    let csrf = &staff.session.csrf;
    layout(
        Some(&staff),
        "Review",
        "/admin/review",
        html! {
            (flash_markup(&headers))
            h1 { "Review queue" }
            h2 { "Flagged payments (" (flagged.len()) ")" }
            p class="muted" { "Late settlements, mismatches and contradictions between query and callback. Open one to see the evidence and resolve it." }
            @if flagged.is_empty() { p { "Nothing to review." } }
            ul class="queue" {
                @for p in &flagged {
                    li { a href=(format!("/admin/payments/{}", p.id)) { (nairobi(p.created_at)) " \u{2014} " (kes(p.amount.shillings())) " from " (local_phone(&p.phone.to_string())) } " " (status_badge(p)) }
                }
            }
            h2 { "Payments by hand no payment took (" (if by_hand.len() > 200 { "200+".to_owned() } else { by_hand.len().to_string() }) ")" }
            @if by_hand.is_empty() { p { "Nothing to review." } } @else {
                p { "Customers paid from the M-PESA menu to an account number no open payment has. "
                    a href="/admin/c2b?status=unmatched" { "Assign or refund them \u{2192}" } }
            }
            h2 { "Callbacks to check" }
            p class="muted" {
                "Orphans (no payment has their token), and bodies that are not STK callbacks. "
                "A body no payment took is kept up to its first " (crate::store::UNMATCHED_EXCERPT_BYTES) " bytes."
            }
            @if counted.count > 0 {
                p class="error" role="status" {
                    "In the last 24 hours " (counted.count) " more callbacks that no payment took ("
                    (counted.bytes / 1024) " KiB) were only counted, not stored: more than "
                    (crate::budget::UNMATCHED_STORED_PER_MINUTE) " a minute arrived"
                    @if let Some(at) = counted.last_at { ", the last at " (nairobi(at)) }
                    ". Real callbacks carry a payment's token, so these come from someone else."
                }
            }
            @if callbacks.is_empty() { p { "Nothing to check." } }
            @for c in &callbacks {
                details {
                    summary { (nairobi(c.received_at)) " \u{2014} " strong { (c.outcome) } " \u{2014} " (c.note) }
                    @if let Some(payment) = &c.payment_id {
                        p { "Sent to the callback address of " a href=(format!("/admin/payments/{payment}")) { (payment) } "." }
                    }
                    pre class="raw" { (pretty(&c.body)) }
                    @if staff.is_admin() {
                        form method="post" action=(format!("/admin/callbacks/{}/resolve", c.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            label for=(format!("note-{}", c.id)) { "Resolution note" }
                            textarea id=(format!("note-{}", c.id)) name="note" required rows="2" {}
                            button type="submit" { "Resolve" }
                        }
                    }
                }
            }
            @if let Some(next) = &next_page { p { a href=(next) { "Older callbacks \u{2192}" } } }
        },
    )
}
