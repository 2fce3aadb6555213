//! The payments list: search, filters, pages and the CSV export.

use super::*;

#[derive(Debug, Default, Deserialize, Clone)]
pub(in crate::admin) struct PaymentQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    min: String,
    #[serde(default)]
    max: String,
    #[serde(default)]
    flagged: String,
    #[serde(default)]
    cursor: String,
}

/// The filter a search box and the filter fields mean. The box takes a payment id, a phone
/// in any typed form, a receipt number or an account reference, in any case.
pub(in crate::admin) fn filter_from(q: &PaymentQuery, limit: u32) -> PaymentFilter {
    let mut f = PaymentFilter { limit, ..PaymentFilter::default() };
    let text = q.q.trim();
    if !text.is_empty() {
        if text.to_ascii_lowercase().starts_with("pay_") {
            f.id = Some(text.to_ascii_lowercase());
        } else if let Ok(phone) = daraja::Msisdn::parse(text) {
            f.phone = Some(phone);
        } else {
            f.text = Some(text.to_owned());
        }
    }
    f.status = Status::parse(&q.status);
    f.created_from = nairobi_day_start(&q.from);
    f.created_to = nairobi_day_start(&q.to).map(|t| t + DAY);
    f.min_amount = q.min.trim().parse().ok();
    f.max_amount = q.max.trim().parse().ok();
    f.needs_review = (q.flagged == "on").then_some(true);
    f.after = q
        .cursor
        .split_once('_')
        .and_then(|(at, id)| Some((at.parse().ok()?, format!("pay_{}", id.trim_start_matches("pay_")))));
    f
}

pub(in crate::admin) fn query_string(q: &PaymentQuery, cursor: Option<&str>) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("q", &q.q),
        ("status", &q.status),
        ("from", &q.from),
        ("to", &q.to),
        ("min", &q.min),
        ("max", &q.max),
        ("flagged", &q.flagged),
    ] {
        if !v.is_empty() {
            pairs.append_pair(k, v);
        }
    }
    if let Some(c) = cursor {
        pairs.append_pair("cursor", c);
    }
    pairs.finish()
}

pub(in crate::admin) async fn payments(
    State(gateway): State<Gateway>,
    staff: Staff,
    Query(q): Query<PaymentQuery>,
) -> Response {
    const PAGE: u32 = 50;
    let mut rows = match gateway.store().payments(filter_from(&q, PAGE + 1)).await {
        Ok(r) => r,
        Err(e) => return store_down(&e),
    };
    let next = (rows.len() > PAGE as usize).then(|| {
        rows.truncate(PAGE as usize);
        rows.last().map(|p| format!("{}_{}", p.created_at, p.id))
    });
    let next = next.flatten();
    layout(
        Some(&staff),
        "Payments",
        "/admin/payments",
        html! {
            h1 { "Payments" }
            form method="get" action="/admin/payments" class="filters" {
                label { "Search " input type="search" name="q" value=(q.q) placeholder="phone, receipt, reference or id"; }
                label { "Status "
                    select name="status" {
                        option value="" { "any" }
                        @for s in ["pending", "paid", "failed", "expired"] { option value=(s) selected[q.status == s] { (s) } }
                    }
                }
                label { "From " input type="date" name="from" value=(q.from); }
                label { "To " input type="date" name="to" value=(q.to); }
                label { "KES from " input type="number" name="min" min="1" value=(q.min); }
                label { "to " input type="number" name="max" min="1" value=(q.max); }
                label { input type="checkbox" name="flagged" checked[q.flagged == "on"]; " flagged only" }
                button type="submit" { "Find" }
                a href=(format!("/admin/payments.csv?{}", query_string(&q, None))) { "Export CSV" }
            }
            @if rows.is_empty() {
                p { "No payments match." }
            } @else {
                p class="scroll-hint" { "Swipe the table sideways for more columns \u{2192}" }
                div class="scroll" {
                    table {
                        thead { tr { th { "Created" } th { "Phone" } th class="num" { "Amount" } th { "Status" } th { "Receipt" } th { "Reference" } } }
                        tbody {
                            @for p in &rows {
                                tr {
                                    td { a href=(format!("/admin/payments/{}", p.id)) { (nairobi(p.created_at)) } }
                                    td { (local_phone(&p.phone.to_string())) }
                                    td class="num" { (kes(p.amount.shillings())) }
                                    td { (status_badge(p)) }
                                    td {
                                        @match (&p.receipt, p.status, p.settled_by) {
                                            (Some(r), _, _) => (r.as_str()),
                                            (None, Status::Paid, _) => span class="muted" title="STK Query confirmed the payment; Daraja's query does not tell the receipt. It comes with a late callback or a C2B echo, or check the one the customer shows on the payment's page." { "not told by the query" },
                                            _ => "",
                                        }
                                    }
                                    td { (p.account_reference) }
                                }
                            }
                        }
                    }
                }
                @if let Some(cursor) = &next {
                    p { a href=(format!("/admin/payments?{}", query_string(&q, Some(cursor)))) { "Older payments \u{2192}" } }
                }
            }
        },
    )
}

/// The filtered payments as CSV, streamed a page at a time: memory stays flat however many.
pub(in crate::admin) async fn payments_csv(
    State(gateway): State<Gateway>,
    staff: Staff,
    Query(q): Query<PaymentQuery>,
) -> Response {
    let _ = gateway.store().audit(staff.name(), "export_csv", "payments", &query_string(&q, None), gateway.now()).await;
    let body = crate::export::csv(gateway.store().clone(), filter_from(&q, 1000))
        .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"payments.csv\""),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
