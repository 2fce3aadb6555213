//! Refunds and receipt checks on a payment's page: its refunds, and for admins the Refund
//! action (a reason, then a confirmation step, audited); its receipt checks, and for admins
//! the Check receipt action (Transaction Status).

use super::*;
use crate::refund::{Refund, RefundStatus};

/// The payment page's refunds section: the refunds so far, and the form when one may be asked.
pub(in crate::admin) fn section(gateway: &Gateway, staff: &Staff, p: &Payment, refunds: &[Refund]) -> Markup {
    let open = refunds.iter().any(|r| r.status != RefundStatus::Failed);
    let refundable = p.status == Status::Paid && p.receipt.is_some() && !open;
    html! {
        @if !refunds.is_empty() || (refundable && staff.is_admin()) {
            h2 { "Refunds" }
        }
        @if !refunds.is_empty() {
            p class="scroll-hint" { "Swipe the table sideways for more columns \u{2192}" }
            div class="scroll" {
                table {
                    thead { tr { th { "Requested" } th { "Status" } th { "Amount" } th { "Refund receipt" } th { "Reason" } th { "By" } th { "Daraja said" } } }
                    tbody {
                        @for r in refunds {
                            tr {
                                td { (nairobi(r.created_at)) }
                                td {
                                    span class=(format!("badge {}", refund_badge(r.status))) { (r.status.as_str()) }
                                    @if r.needs_review { " " span class="badge review" { "review" } }
                                }
                                td { (kes(u32::try_from(r.amount).unwrap_or(u32::MAX))) }
                                td { (r.receipt.as_deref().unwrap_or("\u{2014}")) }
                                td { (r.reason) }
                                td { (r.requested_by) }
                                td {
                                    (r.result_code.as_deref().unwrap_or("")) " " (r.result_desc.as_deref().unwrap_or(""))
                                    @if !r.note.is_empty() { br; span class="muted" { (r.note) } }
                                    @if staff.is_admin() && r.status == RefundStatus::Pending && r.needs_review {
                                        (resolve_forms(staff, r))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if refundable && staff.is_admin() {
            @if gateway.refunds_enabled() {
                form method="post" action=(format!("/admin/payments/{}/refund", p.id)) class="actions" {
                    input type="hidden" name="csrf" value=(staff.session.csrf);
                    label for="refund-reason" { "Reason for the refund" }
                    textarea id="refund-reason" name="note" required rows="2" maxlength="200" placeholder="e.g. screening cancelled" {}
                    button type="submit" class="secondary" { "Refund " (kes(p.amount.shillings())) "\u{2026}" }
                }
            } @else {
                p class="muted" {
                    "Refunds are not configured: set MPESA_INITIATOR_NAME and MPESA_INITIATOR_PASSWORD (and MPESA_CERTIFICATE in production)."
                }
            }
        }
    }
}

/// For a pending refund Lipa cannot settle by itself: what the M-Pesa statement shows.
fn resolve_forms(staff: &Staff, r: &Refund) -> Markup {
    html! {
        @for (outcome, label) in [("succeeded", "The money went back"), ("failed", "Nothing moved")] {
            form method="post" action=(format!("/admin/refunds/{}/{outcome}", r.id)) class="actions" {
                input type="hidden" name="csrf" value=(staff.session.csrf);
                input name="note" required maxlength="200" placeholder="What the M-PESA statement shows" aria-label="Note";
                button type="submit" class="secondary" { (label) }
            }
        }
    }
}

/// `POST /admin/refunds/{id}/succeeded|failed`: an admin settles a pending refund from the
/// M-Pesa statement, with a note (audited).
pub(in crate::admin) async fn resolve_refund(
    State(gateway): State<Gateway>,
    Path((id, outcome)): Path<(String, String)>,
    Action { staff, note, .. }: Action,
) -> Response {
    let Some(id) = crate::refund::RefundId::parse(&id) else {
        return (StatusCode::NOT_FOUND, "No such refund.").into_response();
    };
    let succeeded = match outcome.as_str() {
        "succeeded" => true,
        "failed" => false,
        _ => return (StatusCode::NOT_FOUND, "No such action.").into_response(),
    };
    let refund = match gateway.store().refund(&id, None).await {
        Ok(Some(r)) => r,
        Ok(None) => return (StatusCode::NOT_FOUND, "No such refund.").into_response(),
        Err(e) => return store_down(&e),
    };
    let page = format!("/admin/payments/{}", refund.payment_id);
    let note = note.trim();
    if note.is_empty() {
        return back_with(&page, "Write what the M-PESA statement shows first.");
    }
    match gateway.store().resolve_refund(&id, succeeded, staff.name(), note, gateway.now()).await {
        Ok(Some(r)) => {
            let detail = format!("{} marked {} ({note})", r.id, r.status.as_str());
            let _ = gateway
                .store()
                .audit(staff.name(), "resolve_refund", refund.payment_id.as_str(), &detail, gateway.now())
                .await;
            gateway.changed(&refund.payment_id);
            back_with(&page, &format!("Refund marked {}.", r.status.as_str()))
        }
        Ok(None) => back_with(&page, "That refund is no longer pending."),
        Err(e) => store_down(&e),
    }
}

fn refund_badge(status: RefundStatus) -> &'static str {
    match status {
        RefundStatus::Pending => "pending",
        RefundStatus::Succeeded => "paid",
        RefundStatus::Failed => "failed",
    }
}

/// `POST /admin/payments/{id}/refund`: without `confirm=yes`, the confirmation page; with it,
/// the refund is asked for (as `admin:<user>`) and audited.
pub(in crate::admin) async fn refund(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Action { staff, note, confirmed }: Action,
) -> Response {
    let Some(id) = PaymentId::parse(&id) else { return (StatusCode::NOT_FOUND, "No such payment.").into_response() };
    let page = format!("/admin/payments/{id}");
    let reason = note.trim();
    if reason.is_empty() {
        return back_with(&page, "Write the reason for the refund first.");
    }
    let p = match gateway.store().payment(&id, None).await {
        Ok(Some(p)) => p,
        Ok(None) => return (StatusCode::NOT_FOUND, "No such payment.").into_response(),
        Err(e) => return store_down(&e),
    };
    if !confirmed {
        return confirmation(&staff, &p, reason);
    }
    let request = crate::service::RefundRequest { reason: reason.to_owned(), amount: None };
    let by = format!("admin:{}", staff.name());
    match gateway.request_refund(&id, None, None, &by, request).await {
        Ok(created) => {
            let r = created.refund;
            let detail = format!("{} of {} ({reason})", r.id, kes(p.amount.shillings()));
            let _ = gateway.store().audit(staff.name(), "refund", id.as_str(), &detail, gateway.now()).await;
            let said = match r.status {
                RefundStatus::Pending => {
                    "Refund asked for: M-PESA answers shortly; this page shows the result.".to_owned()
                }
                RefundStatus::Succeeded => "Refunded.".to_owned(),
                RefundStatus::Failed => {
                    format!("The refund failed: {}", r.result_desc.as_deref().unwrap_or("Daraja refused it"))
                }
            };
            back_with(&page, &said)
        }
        Err(crate::service::RefundError::Store(e)) => store_down(&e),
        Err(e) => back_with(&page, &format!("Not refunded: {e}")),
    }
}

/// The second step: what will happen, and the button that does it.
fn confirmation(staff: &Staff, p: &Payment, reason: &str) -> Response {
    let amount = kes(p.amount.shillings());
    layout(
        Some(staff),
        "Confirm the refund",
        "/admin/payments",
        html! {
            h1 { "Refund " (amount) " to " (local_phone(&p.phone.to_string())) "?" }
            p {
                "M-PESA will reverse payment " code { (p.receipt.as_deref().unwrap_or("")) } " and move the whole "
                (amount) " back to the customer. This cannot be undone."
            }
            dl class="facts" {
                dt { "Payment" } dd { code { (p.id) } }
                dt { "Reference" } dd { (p.account_reference) " \u{2014} " (p.description) }
                dt { "Reason" } dd { (reason) }
            }
            form method="post" action=(format!("/admin/payments/{}/refund", p.id)) class="actions" {
                input type="hidden" name="csrf" value=(staff.session.csrf);
                input type="hidden" name="note" value=(reason);
                input type="hidden" name="confirm" value="yes";
                button type="submit" { "Yes, refund " (amount) }
                " "
                a href=(format!("/admin/payments/{}", p.id)) { "Cancel" }
            }
        },
    )
}

/// The payment page's receipt checks: those asked so far, and for admins the form (this
/// payment's receipt, or the one the customer shows for a payment confirmed without it).
pub(in crate::admin) fn checks_section(
    gateway: &Gateway,
    staff: &Staff,
    p: &Payment,
    checks: &[crate::store::ReceiptCheck],
) -> Markup {
    let can_ask = staff.is_admin() && gateway.refunds_enabled() && p.status == Status::Paid;
    html! {
        @if !checks.is_empty() || can_ask { h2 { "Receipt checks" } }
        @if !checks.is_empty() {
            p class="scroll-hint" { "Swipe the table sideways for more columns \u{2192}" }
            div class="scroll" {
                table {
                    thead { tr { th { "Asked" } th { "Receipt" } th { "Answer" } th { "What Daraja said" } th { "By" } } }
                    tbody {
                        @for c in checks {
                            tr {
                                td { (nairobi(c.created_at)) }
                                td { code { (c.receipt) } }
                                td { (c.status.replace('_', " ")) br; span class="muted" { (c.note) } }
                                td { @if c.detail != serde_json::json!({}) { code { (c.detail.to_string()) } } }
                                td { (c.requested_by) }
                            }
                        }
                    }
                }
            }
        }
        @if can_ask {
            form method="post" action=(format!("/admin/payments/{}/check-receipt", p.id)) class="actions" {
                input type="hidden" name="csrf" value=(staff.session.csrf);
                @if let Some(receipt) = &p.receipt {
                    input type="hidden" name="note" value=(receipt.as_str());
                    button type="submit" class="secondary" { "Check receipt " (receipt.as_str()) " with M-PESA" }
                } @else {
                    label for="check-receipt" { "M-PESA receipt the customer shows" }
                    input id="check-receipt" name="note" required maxlength="20" pattern="[A-Za-z0-9]{8,20}" placeholder="e.g. UAB1C2D3E4";
                    button type="submit" class="secondary" { "Check with M-PESA" }
                }
            }
        }
    }
}

/// `POST /admin/payments/{id}/check-receipt`: asks Transaction Status about a receipt for this
/// payment (audited); the answer shows on the page when it comes.
pub(in crate::admin) async fn check_receipt(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Action { staff, note, .. }: Action,
) -> Response {
    let Some(id) = PaymentId::parse(&id) else { return (StatusCode::NOT_FOUND, "No such payment.").into_response() };
    let page = format!("/admin/payments/{id}");
    let by = format!("admin:{}", staff.name());
    match gateway.check_receipt(&note, Some(&id), &by).await {
        Ok(check) => {
            let _ = gateway
                .store()
                .audit(staff.name(), "check_receipt", id.as_str(), &format!("{} ({check})", note.trim()), gateway.now())
                .await;
            back_with(&page, "Asked M-PESA about the receipt; the answer shows below when it comes (reload).")
        }
        Err(crate::service::CheckError::Store(e)) => store_down(&e),
        Err(e) => back_with(&page, &format!("Not checked: {e}")),
    }
}
