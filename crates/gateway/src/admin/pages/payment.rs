//! One payment: its details, timeline, callbacks and webhooks, and the staff actions on it.

use super::*;

pub(in crate::admin) fn pretty(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| raw.to_owned())
}

pub(in crate::admin) fn flash(headers: &HeaderMap) -> Option<String> {
    auth::cookie_value(headers, "lipa_flash")
        .map(|v| url::form_urlencoded::parse(format!("m={v}").as_bytes()).map(|(_, v)| v.into_owned()).collect())
}

/// A redirect that shows `message` once on the next page.
pub(in crate::admin) fn back_with(to: &str, message: &str) -> Response {
    let value: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    (
        [(header::SET_COOKIE, format!("lipa_flash={value}; Path=/admin; Max-Age=30; HttpOnly; SameSite=Strict"))],
        Redirect::to(to),
    )
        .into_response()
}

pub(in crate::admin) fn flash_markup(headers: &HeaderMap) -> Markup {
    html! { @if let Some(m) = flash(headers) { p class="flash" role="status" { (m) } } }
}

pub(in crate::admin) async fn payment(
    State(gateway): State<Gateway>,
    staff: Staff,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = PaymentId::parse(&id) else { return (StatusCode::NOT_FOUND, "No such payment.").into_response() };
    let store = gateway.store();
    let p = match store.payment(&id, None).await {
        Ok(Some(p)) => p,
        Ok(None) => return (StatusCode::NOT_FOUND, "No such payment.").into_response(),
        Err(e) => return store_down(&e),
    };
    let loaded = tokio::try_join!(
        store.events(&id),
        store.callbacks_for(&id),
        store.webhook_events(&id),
        store.audit_log(Some(id.as_str()), 50),
        store.refunds_of(&id),
        store.receipt_checks_of(&id)
    );
    let (events, callbacks, webhooks, audit, refunds, checks) = match loaded {
        Ok(l) => l,
        Err(e) => return store_down(&e),
    };
    let csrf = &staff.session.csrf;
    let mut response = layout(
        Some(&staff),
        &format!("Payment {}", p.id),
        "/admin/payments",
        html! {
            (flash_markup(&headers))
            h1 { (kes(p.amount.shillings())) " from " (local_phone(&p.phone.to_string())) " " (status_badge(&p)) }
            dl class="facts" {
                dt { "Payment" } dd { code { (p.id) } }
                dt { "Created" } dd { (nairobi(p.created_at)) }
                dt { "Reference" } dd { (p.account_reference) " \u{2014} " (p.description) }
                dt { "M-PESA receipt" } dd { (p.receipt.as_deref().unwrap_or("\u{2014}")) }
                @if let Some(t) = p.transaction_date { dt { "Paid at" } dd { (nairobi(t)) } }
                dt { "Result" } dd { (p.result_code.as_deref().unwrap_or("\u{2014}")) " " (p.result_desc.as_deref().unwrap_or("")) }
                @if let Some(r) = p.failure_reason { dt { "Failure" } dd { (r.as_str()) } }
                dt { "CheckoutRequestID" } dd { code { (p.checkout_request_id.as_deref().unwrap_or("\u{2014}")) } }
                dt { "Settled by" } dd { (p.settled_by.map_or("\u{2014}", |s| s.as_str())) }
                dt { "Customer email" } dd { (p.customer_email.as_deref().unwrap_or("\u{2014}")) }
                @if p.refunded_amount > 0 { dt { "Refunded" } dd { (kes(u32::try_from(p.refunded_amount).unwrap_or(u32::MAX))) } }
                dt { "Metadata" } dd { code { (p.metadata.to_string()) } }
            }
            @if staff.is_admin() {
                section class="actions" {
                    h2 { "Actions" }
                    form method="post" action=(format!("/admin/payments/{}/query", p.id)) {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Query Daraja now" }
                    }
                    @if p.needs_review {
                        form method="post" action=(format!("/admin/payments/{}/resolve", p.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            label for="note" { "Resolution note" }
                            textarea id="note" name="note" required rows="2" placeholder="What was checked and decided" {}
                            button type="submit" { "Resolve review" }
                        }
                    }
                }
            }
            (super::refund::section(&gateway, &staff, &p, &refunds))
            (super::refund::checks_section(&gateway, &staff, &p, &checks))
            h2 { "Timeline" }
            (super::timeline::list(&events))
            h2 { "Callbacks received (" (callbacks.len()) ")" }
            @for c in &callbacks {
                details open[callbacks.len() == 1] {
                    summary { (crate::time_fmt::nairobi_seconds(c.received_at)) " \u{2014} " strong { (c.outcome) } " \u{2014} " (c.note) " from " (c.source.as_deref().unwrap_or("?")) }
                    pre class="raw" { (pretty(&c.body)) }
                }
            }
            h2 { "Webhook events" }
            @if webhooks.is_empty() { p class="muted" { "None." } }
            @for w in &webhooks {
                details {
                    summary { (w.event_type) " \u{2014} " span class=(format!("badge {}", w.status)) { (w.status) } " \u{2014} " (w.attempts.len()) @if w.attempts.len() == 1 { " attempt" } @else { " attempts" } }
                    ul {
                        @for a in &w.attempts {
                            li { (crate::time_fmt::nairobi_seconds(a.at)) " " (crate::redact::url(&a.url)) " \u{2192} " (a.status.map_or_else(|| a.error.clone().unwrap_or_default(), |s| s.to_string())) " (" (a.latency_ms) " ms) " code { (a.response) } }
                        }
                    }
                    @if staff.is_admin() {
                        form method="post" action=(format!("/admin/webhook-events/{}/redeliver", w.id)) {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="note" value=(p.id.as_str());
                            button type="submit" class="secondary" { "Resend" }
                        }
                    }
                }
            }
            h2 { "Admin actions" }
            @if audit.is_empty() { p class="muted" { "None." } }
            ul { @for a in &audit { li { (nairobi(a.at)) " " strong { (a.actor) } " " (a.action) " " (a.detail) } } }
        },
    );
    if flash(&headers).is_some() {
        response.headers_mut().append(
            header::SET_COOKIE,
            header::HeaderValue::from_static("lipa_flash=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict"),
        );
    }
    response
}

pub(in crate::admin) async fn query_now(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Action { staff, .. }: Action,
) -> Response {
    let Some(id) = PaymentId::parse(&id) else { return (StatusCode::NOT_FOUND, "No such payment.").into_response() };
    let p = match gateway.store().payment(&id, None).await {
        Ok(Some(p)) => p,
        Ok(None) => return (StatusCode::NOT_FOUND, "No such payment.").into_response(),
        Err(e) => return store_down(&e),
    };
    let said = match crate::reconciliation::query_now(&gateway, &p).await {
        Ok(s) => s,
        Err(e) => return store_down(&e),
    };
    let _ = gateway.store().audit(staff.name(), "query_daraja", id.as_str(), &said, gateway.now()).await;
    back_with(&format!("/admin/payments/{id}"), &said)
}

pub(in crate::admin) async fn resolve_payment(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Action { staff, note, .. }: Action,
) -> Response {
    let Some(id) = PaymentId::parse(&id) else { return (StatusCode::NOT_FOUND, "No such payment.").into_response() };
    let note = note.trim();
    if note.is_empty() {
        return back_with(&format!("/admin/payments/{id}"), "Write a note saying what was checked before resolving.");
    }
    match gateway.store().resolve_payment_review(&id, staff.name(), note, gateway.now()).await {
        Ok(true) => back_with(&format!("/admin/payments/{id}"), "Review resolved."),
        Ok(false) => back_with(&format!("/admin/payments/{id}"), "This payment was not flagged (anymore)."),
        Err(e) => store_down(&e),
    }
}

pub(in crate::admin) async fn resolve_callback(
    State(gateway): State<Gateway>,
    Path(id): Path<i64>,
    Action { staff, note, .. }: Action,
) -> Response {
    let note = note.trim();
    if note.is_empty() {
        return back_with("/admin/review", "Write a note saying what was checked before resolving.");
    }
    match gateway.store().resolve_callback(id, staff.name(), note, gateway.now()).await {
        Ok(true) => back_with("/admin/review", "Callback resolved."),
        Ok(false) => back_with("/admin/review", "That callback was already resolved."),
        Err(e) => store_down(&e),
    }
}
