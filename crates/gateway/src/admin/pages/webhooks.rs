//! Webhook events: their deliveries, dead letters and redelivery.

use super::*;

#[derive(Debug, Default, Deserialize)]
pub(in crate::admin) struct WebhookQuery {
    #[serde(default)]
    status: String,
}

pub(in crate::admin) async fn webhooks(
    State(gateway): State<Gateway>,
    staff: Staff,
    Query(q): Query<WebhookQuery>,
    headers: HeaderMap,
) -> Response {
    let status = ["pending", "delivered", "dead", "no_endpoint"].into_iter().find(|s| *s == q.status);
    let events = match gateway.store().recent_webhook_events(status, 200).await {
        Ok(e) => e,
        Err(e) => return store_down(&e),
    };
    let csrf = &staff.session.csrf;
    layout(
        Some(&staff),
        "Webhooks",
        "/admin/webhooks",
        html! {
            (flash_markup(&headers))
            h1 { "Webhook deliveries" }
            p { "Show: "
                a href="/admin/webhooks" { "all" }
                @for (s, label) in [("pending", "pending"), ("delivered", "delivered"), ("dead", "given up"), ("no_endpoint", "no webhook URL")] {
                    " \u{2022} " a href=(format!("/admin/webhooks?status={s}")) { (label) }
                }
            }
            p class="scroll-hint" { "Swipe the table sideways for more columns \u{2192}" }
            div class="scroll" {
                table {
                    thead { tr { th { "Created" } th { "Event" } th { "Type" } th { "Status" } th class="num" { "Attempts" } th { "Payment" } th {} } }
                    tbody {
                        @for (id, payment, kind, status, attempts, created, _) in &events {
                            tr {
                                td { (nairobi(*created)) }
                                td { code { (id) } }
                                td { (kind) }
                                td { span class=(format!("badge {status}")) { (status) } }
                                td class="num" { (attempts) }
                                td {
                                    @if payment.starts_with("pay_") { a href=(format!("/admin/payments/{payment}")) { "open" } }
                                    @else { a href="/admin/c2b?status=unmatched" { "Paybill" } }
                                }
                                td {
                                    @if staff.is_admin() {
                                        form method="post" action=(format!("/admin/webhook-events/{id}/redeliver")) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" class="secondary" { "Resend" }
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

pub(in crate::admin) async fn redeliver(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Action { staff, note, .. }: Action,
) -> Response {
    let back =
        if note.starts_with("pay_") { format!("/admin/payments/{}", note) } else { "/admin/webhooks".to_owned() };
    match gateway.store().redeliver_webhook(&id, None, gateway.now()).await {
        Ok(true) => {
            let _ = gateway.store().audit(staff.name(), "redeliver_webhook", &id, "", gateway.now()).await;
            back_with(&back, "The event will be sent again within seconds.")
        }
        Ok(false) => back_with(&back, "No such event."),
        Err(e) => store_down(&e),
    }
}
