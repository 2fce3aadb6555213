//! Payments by hand (Paybill, Till): what arrived, what no open payment took, and the
//! operator's two decisions about the latter: give it to a payment, or note that it was
//! refunded outside Lipa. Both are audited.

use super::*;
use crate::store::Resolved;

#[derive(Debug, Default, Deserialize)]
pub(in crate::admin) struct C2bQuery {
    #[serde(default)]
    status: String,
}

const C2B_STATUSES: [&str; 5] = ["unmatched", "applied", "same_as_stk", "assigned", "refunded_outside"];

pub(in crate::admin) async fn c2b(
    State(gateway): State<Gateway>,
    staff: Staff,
    Query(q): Query<C2bQuery>,
    headers: HeaderMap,
) -> Response {
    let status = C2B_STATUSES.into_iter().find(|s| *s == q.status);
    let shown = match gateway.store().c2b_transactions(status, None, 200).await {
        Ok(t) => t,
        Err(e) => return store_down(&e),
    };
    let csrf = &staff.session.csrf;
    layout(
        Some(&staff),
        "Paybill",
        "/admin/c2b",
        html! {
            (flash_markup(&headers))
            h1 { "Payments by hand (Paybill, Till)" }
            p class="muted" {
                "Customers who paid from the M-PESA menu. Those no open payment took are unmatched: give each to the payment it was meant for, "
                "or refund it and note that here."
            }
            p { "Show: " a href="/admin/c2b" { "all" }
                @for s in C2B_STATUSES { " \u{2022} " a href=(format!("/admin/c2b?status={s}")) { (s.replace('_', " ")) } }
            }
            @if shown.is_empty() { p { "Nothing here." } }
            p class="scroll-hint" { "Swipe the table sideways for more columns \u{2192}" }
            div class="scroll" {
                table {
                    thead { tr { th { "Received" } th { "TransID" } th class="num" { "Amount" } th { "Account typed" } th { "Payer" } th { "Status" } th { "What happened" } } }
                    tbody {
                        @for t in &shown {
                            tr {
                                td { (nairobi(t.received_at)) }
                                td { code { (t.trans_id) } }
                                td class="num" { (kes(u32::try_from(t.amount).unwrap_or(u32::MAX))) }
                                td { @if t.account.is_empty() { span class="muted" { "none (till)" } } @else { code { (t.account) } } }
                                td { (t.payer_name) " " span class="muted" { (t.payer) } }
                                td { span class=(format!("badge {}", t.status)) { (t.status.replace('_', " ")) } }
                                td {
                                    (t.note)
                                    @if let Some(p) = &t.payment_id { " " a href=(format!("/admin/payments/{p}")) { "payment" } }
                                    @if t.status == "unmatched" && staff.is_admin() {
                                        details {
                                            summary { "Resolve" }
                                            form method="post" action=(format!("/admin/c2b/{}/assign", t.trans_id)) {
                                                input type="hidden" name="csrf" value=(csrf);
                                                label for=(format!("pay-{}", t.trans_id)) { "Payment id" }
                                                input id=(format!("pay-{}", t.trans_id)) name="payment_id" required placeholder="pay_…";
                                                label for=(format!("why-{}", t.trans_id)) { "Why this payment" }
                                                input id=(format!("why-{}", t.trans_id)) name="note" required;
                                                button type="submit" { "Assign" }
                                            }
                                            form method="post" action=(format!("/admin/c2b/{}/refunded", t.trans_id)) {
                                                input type="hidden" name="csrf" value=(csrf);
                                                label for=(format!("ref-{}", t.trans_id)) { "How it was refunded" }
                                                input id=(format!("ref-{}", t.trans_id)) name="note" required;
                                                button type="submit" class="secondary" { "Refunded outside Lipa" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub(in crate::admin) struct AssignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    payment_id: String,
    #[serde(default)]
    note: String,
}

fn said(resolved: Resolved, done: &str) -> String {
    match resolved {
        Resolved::Done(_) => done.to_owned(),
        Resolved::NotUnmatched => "That transaction is not unmatched (anymore).".to_owned(),
        Resolved::NoPayment => "No payment has that id; copy it from the payment's page (pay_…).".to_owned(),
        Resolved::AlreadyPaid => "That payment is paid already; refund this transaction instead.".to_owned(),
    }
}

pub(in crate::admin) async fn assign_c2b(
    State(gateway): State<Gateway>,
    Path(trans_id): Path<String>,
    staff: Staff,
    form: Result<Form<AssignForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if let Err(refusal) = staff.may_act(&form.csrf) {
        return refusal.into_response();
    }
    let note = form.note.trim();
    let Some(payment) = PaymentId::parse(form.payment_id.trim()) else {
        return back_with("/admin/c2b?status=unmatched", "Give the payment's id (pay_…) from its page.");
    };
    if note.is_empty() {
        return back_with("/admin/c2b?status=unmatched", "Write why this payment is the one it was meant for.");
    }
    match gateway.store().assign_c2b(&trans_id, &payment, staff.name(), note, gateway.now()).await {
        Ok(resolved) => {
            gateway.changed(&payment);
            back_with("/admin/c2b?status=unmatched", &said(resolved, "Assigned; the payment shows it on its timeline."))
        }
        Err(e) => store_down(&e),
    }
}

pub(in crate::admin) async fn c2b_refunded(
    State(gateway): State<Gateway>,
    Path(trans_id): Path<String>,
    Action { staff, note, .. }: Action,
) -> Response {
    let note = note.trim();
    if note.is_empty() {
        return back_with("/admin/c2b?status=unmatched", "Write how the money was sent back.");
    }
    match gateway.store().c2b_refunded_outside(&trans_id, staff.name(), note, gateway.now()).await {
        Ok(resolved) => back_with("/admin/c2b?status=unmatched", &said(resolved, "Marked as refunded outside Lipa.")),
        Err(e) => store_down(&e),
    }
}
