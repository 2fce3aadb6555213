//! The dashboard's pages and actions.

use axum::body::Body;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use futures_util::StreamExt as _;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::auth::{self, Staff};
use super::charts;
use crate::payment::{Payment, PaymentId, Status};
use crate::service::Gateway;
use crate::store::{PaymentFilter, StoreError};
use crate::time_fmt::{kes, local_phone, nairobi, nairobi_day_start};

const CSS: &str = include_str!("admin.css");

pub(super) fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS)
        .into_response()
}

const NAV: [(&str, &str); 6] = [
    ("/admin", "Overview"),
    ("/admin/payments", "Payments"),
    ("/admin/review", "Review"),
    ("/admin/webhooks", "Webhooks"),
    ("/admin/keys", "API keys"),
    ("/admin/settings", "Settings"),
];

fn layout(staff: Option<&Staff>, title: &str, current: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " \u{2014} Lipa admin" }
                link rel="stylesheet" href="/assets/admin.css";
            }
            body {
                @if let Some(staff) = staff {
                    header {
                        nav {
                            strong { "Lipa" }
                            @for (href, label) in NAV {
                                a href=(href) aria-current=[(href == current).then_some("page")] { (label) }
                            }
                        }
                        form method="post" action="/admin/logout" class="logout" {
                            input type="hidden" name="csrf" value=(staff.session.csrf);
                            span class="muted" { (staff.name()) " (" (staff.session.user.role.as_str()) ")" }
                            button type="submit" class="link" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    let mut response = Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    response
}

fn store_down(e: &StoreError) -> Response {
    tracing::error!(error = %e, "admin page: storage");
    (StatusCode::SERVICE_UNAVAILABLE, "The database is unavailable; try again shortly.").into_response()
}

fn status_badge(p: &Payment) -> Markup {
    html! {
        span class=(format!("badge {}", p.status.as_str())) { (p.status.as_str()) }
        @if p.needs_review { " " span class="badge review" { "review" } }
    }
}

// ---------- sign in ----------

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    /// The sign-in form's own CSRF token (a copy of the `lipa_login` cookie).
    #[serde(default)]
    form_token: String,
}

/// The cookie that carries the sign-in form's token: the form is accepted only with the
/// cookie's value in its `form_token` field, which another site can neither read nor set, so
/// no other site can sign a visitor's browser in to an account of its choosing (login CSRF).
const LOGIN_COOKIE: &str = "lipa_login";

fn login_page(gateway: &Gateway, message: Option<&str>, status: StatusCode) -> Response {
    let token = crate::ids::random_hex(16);
    let mut response = layout(
        None,
        "Sign in",
        "",
        html! {
            div class="narrow" {
                h1 { "Lipa admin" }
                @if let Some(m) = message { p class="error" role="alert" { (m) } }
                form method="post" action="/admin/login" {
                    input type="hidden" name="form_token" value=(token);
                    label for="name" { "User" }
                    input id="name" name="name" autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                    button type="submit" { "Sign in" }
                }
            }
        },
    );
    *response.status_mut() = status;
    if let Ok(cookie) =
        header::HeaderValue::from_str(&auth::set_cookie(gateway, LOGIN_COOKIE, &token, "/admin/login", None))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(super) async fn login_form(State(gateway): State<Gateway>) -> Response {
    login_page(&gateway, None, StatusCode::OK)
}

/// Whether the sign-in form came with the token of the `lipa_login` cookie.
fn login_form_token_ok(headers: &HeaderMap, sent: &str) -> bool {
    auth::cookie_value(headers, LOGIN_COOKIE)
        .is_some_and(|cookie| cookie.len() == 32 && crate::ids::constant_time_eq(cookie, sent))
}

/// Signs a staff member in. Anyone can send this form, so it does bounded work: a body of at
/// most 4 KiB (see the router), a name checked against the naming rule before anything else
/// uses it, an attempt reserved for the address and the user before the password is checked
/// (see [`auth::Throttle`]), the check off the request threads, and an audit line only for
/// attempts that passed the throttle, with the name only if it is a valid one.
pub(super) async fn login(
    State(gateway): State<Gateway>,
    State(throttle): State<std::sync::Arc<auth::Throttle>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return login_page(&gateway, Some("Enter a user and a password."), StatusCode::BAD_REQUEST);
    };
    if !login_form_token_ok(&headers, &form.form_token) {
        return login_page(&gateway, Some("This sign-in form has expired. Sign in again."), StatusCode::FORBIDDEN);
    }
    let now = gateway.now();
    let ip = crate::api::client_address(&gateway, &headers, peer);
    let address = auth::address_key(ip);
    let name = auth::valid_name(&form.name).then_some(form.name.as_str());
    match throttle.reserve(gateway.store(), name, &address, now).await {
        Ok(true) => {}
        Ok(false) => {
            return login_page(
                &gateway,
                Some("Too many failed attempts. Wait 15 minutes, then try again."),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(e) => return store_down(&e),
    }
    let user = match name {
        Some(name) => match gateway.store().admin_user(name).await {
            Ok(u) => u,
            Err(e) => {
                let _ = throttle.not_tried(gateway.store(), Some(name), &address).await;
                return store_down(&e);
            }
        },
        None => None,
    };
    // A valid name's hash is checked even when nobody has it, so timing does not tell which
    // names exist; a name against the rule cannot exist, and is refused without a check.
    let matches = match name {
        Some(_) => match throttle.check_password(user.as_ref().map(|u| u.password_hash.clone()), form.password).await {
            Ok(matches) => matches,
            Err(auth::Busy) => {
                let _ = throttle.not_tried(gateway.store(), name, &address).await;
                return login_page(
                    &gateway,
                    Some("Too many people are signing in at once. Try again in a minute."),
                    StatusCode::SERVICE_UNAVAILABLE,
                );
            }
        },
        None => false,
    };
    let Some(user) = user.filter(|_| matches) else {
        let _ = gateway
            .store()
            .audit(name.unwrap_or("(not a user name)"), "login_failed", "admin", &ip.to_string(), now)
            .await;
        return login_page(&gateway, Some("Wrong user or password."), StatusCode::UNAUTHORIZED);
    };
    if let Err(e) = throttle.succeeded(gateway.store(), &user.name, &address).await {
        return store_down(&e);
    }
    let cookie = match auth::start_session(&gateway, &user).await {
        Ok(c) => c,
        Err(e) => return store_down(&e),
    };
    let _ = gateway.store().audit(&user.name, "login", "admin", &ip.to_string(), now).await;
    ([(header::SET_COOKIE, cookie)], Redirect::to("/admin")).into_response()
}

/// A state-changing request: a signed-in admin, the form's CSRF token checked, and its
/// optional `note` field.
pub(super) struct Action {
    staff: Staff,
    note: String,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Action
where
    Gateway: axum::extract::FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        use axum::extract::FromRequestParts as _;
        let (mut parts, body) = request.into_parts();
        let staff = Staff::from_request_parts(&mut parts, state).await?;
        let request = axum::extract::Request::from_parts(parts, body);
        let form = Form::<CsrfForm>::from_request(request, state).await.map(|Form(f)| f).unwrap_or_default();
        staff.may_act(&form.csrf).map_err(IntoResponse::into_response)?;
        Ok(Self { staff, note: form.note })
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

pub(super) async fn logout(
    State(gateway): State<Gateway>,
    staff: Staff,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    // Any role may sign out; the token still has to match.
    if csrf != staff.session.csrf {
        return (StatusCode::FORBIDDEN, "This form did not come from this dashboard.").into_response();
    }
    let _ = gateway.store().delete_admin_session(&staff.token_hash).await;
    let _ = gateway.store().audit(staff.name(), "logout", "admin", "", gateway.now()).await;
    ([(header::SET_COOKIE, auth::cookie(&gateway, "", Some(0)))], Redirect::to("/admin/login")).into_response()
}

// ---------- overview ----------

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const EAT: i64 = 3 * HOUR;

/// Midnight in Nairobi at or before `now`, as UTC ms.
fn nairobi_midnight(now: i64) -> i64 {
    (now + EAT).div_euclid(DAY) * DAY - EAT
}

fn success_rate(paid: i64, settled: i64) -> String {
    if settled == 0 { "\u{2014}".into() } else { format!("{:.0}%", 100.0 * paid as f64 / settled as f64) }
}

pub(super) async fn overview(State(gateway): State<Gateway>, staff: Staff) -> Response {
    let now = gateway.now();
    let today = nairobi_midnight(now);
    let week = today - 6 * DAY;
    let store = gateway.store();
    let (rollup, times, attention) =
        match tokio::try_join!(store.rollup(week, now), store.settle_times(week, now), store.attention_counts()) {
            Ok(r) => r,
            Err(e) => return store_down(&e),
        };
    let sum = |from: i64| {
        let rows = rollup.iter().filter(|r| r.hour * HOUR >= from);
        let mut count = 0;
        let mut paid = 0;
        let mut paid_kes = 0;
        let mut settled = 0;
        for r in rows {
            count += r.count;
            if r.status == "paid" {
                paid += r.count;
                paid_kes += r.amount;
            }
            if r.status != "pending" {
                settled += r.count;
            }
        }
        (count, paid, paid_kes, settled)
    };
    let (t_count, t_paid, t_kes, t_settled) = sum(today);
    let (w_count, w_paid, w_kes, w_settled) = sum(week);
    let total: i64 = times.iter().map(|(_, n)| n).sum();
    let median = {
        let mut sorted = times.clone();
        sorted.sort_unstable();
        let mut seen = 0;
        sorted
            .iter()
            .find(|(_, n)| {
                seen += n;
                seen * 2 >= total
            })
            .map(|(secs, _)| *secs)
    };
    let hourly: Vec<(String, i64)> = (0..24)
        .map(|h| {
            let hour = (today + h * HOUR) / HOUR;
            (format!("{h:02}"), rollup.iter().filter(|r| r.hour == hour).map(|r| r.count).sum())
        })
        .collect();
    let days: Vec<i64> = (0..7).map(|d| week + d * DAY).collect();
    let day_label = |start: i64| nairobi(start).split(',').next().unwrap_or_default().to_owned();
    let daily: Vec<(String, i64)> = days
        .iter()
        .map(|start| {
            let count =
                rollup.iter().filter(|r| r.hour * HOUR >= *start && r.hour * HOUR < start + DAY).map(|r| r.count).sum();
            (day_label(*start), count)
        })
        .collect();
    let daily_rate: Vec<(String, i64)> = days
        .iter()
        .map(|start| {
            let rows: Vec<_> =
                rollup.iter().filter(|r| r.hour * HOUR >= *start && r.hour * HOUR < start + DAY).collect();
            let paid: i64 = rows.iter().filter(|r| r.status == "paid").map(|r| r.count).sum();
            let settled: i64 = rows.iter().filter(|r| r.status != "pending").map(|r| r.count).sum();
            (day_label(*start), if settled == 0 { 0 } else { 100 * paid / settled })
        })
        .collect();
    let mut failures: Vec<(String, i64)> = Vec::new();
    for r in rollup.iter().filter(|r| r.status == "failed" || r.status == "expired") {
        let label = match (&r.result_code, r.status.as_str()) {
            (_, "expired") => "expired (no answer)".to_owned(),
            (Some(code), _) => {
                let rc = daraja::ResultCode::from_wire(code);
                match rc.info() {
                    Some(_) => format!("{code} {}", rc.customer_message_en().split('.').next().unwrap_or_default()),
                    None => code.clone(),
                }
            }
            (None, _) => "unknown".to_owned(),
        };
        match failures.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += r.count,
            None => failures.push((label, r.count)),
        }
    }
    failures.sort_by_key(|f| std::cmp::Reverse(f.1));
    failures.truncate(8);
    let (flagged, orphans, dead) = attention;
    layout(
        Some(&staff),
        "Overview",
        "/admin",
        html! {
            h1 { "Overview" }
            div class="tiles" {
                div class="tile" { span { "Today" } strong { (t_count) " payments" } small { (kes(u32::try_from(t_kes).unwrap_or(u32::MAX))) " paid" } }
                div class="tile" { span { "This week" } strong { (w_count) " payments" } small { (kes(u32::try_from(w_kes).unwrap_or(u32::MAX))) " paid" } }
                div class="tile" { span { "Success rate" } strong { (success_rate(t_paid, t_settled)) } small { "today; week " (success_rate(w_paid, w_settled)) } }
                div class="tile" { span { "Push to result" } strong { (median.map_or("\u{2014}".to_owned(), |s| format!("{s} s"))) } small { "median, this week" } }
                a class="tile attention" href="/admin/review" { span { "Needs review" } strong { (flagged + orphans) } small { (flagged) " payments, " (orphans) " callbacks" } }
                a class="tile attention" href="/admin/webhooks?status=dead" { span { "Webhook failures" } strong { (dead) } small { "dead letters" } }
            }
            (charts::bars("Payments per hour today (Nairobi time)", &hourly, 3))
            (charts::bars("Payments per day, last 7 days", &daily, 1))
            (charts::bars("Success rate per day (%)", &daily_rate, 1))
            (charts::ranking("Failures by result code, last 7 days", &failures))
        },
    )
}

// ---------- payments ----------

#[derive(Debug, Default, Deserialize, Clone)]
pub(super) struct PaymentQuery {
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
/// in any typed form, a receipt number or an account reference.
fn filter_from(q: &PaymentQuery, limit: u32) -> PaymentFilter {
    let mut f = PaymentFilter { limit, ..PaymentFilter::default() };
    let text = q.q.trim();
    if !text.is_empty() {
        if text.starts_with("pay_") {
            f.id = Some(text.to_owned());
        } else if let Ok(phone) = daraja::Msisdn::parse(text) {
            f.phone = Some(phone.to_string());
        } else if text.len() == 10 && text.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            f.receipt = Some(text.to_owned());
        } else {
            f.reference = Some(text.to_owned());
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

fn query_string(q: &PaymentQuery, cursor: Option<&str>) -> String {
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

pub(super) async fn payments(State(gateway): State<Gateway>, staff: Staff, Query(q): Query<PaymentQuery>) -> Response {
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
                div class="scroll" {
                    table {
                        thead { tr { th { "Created" } th { "Phone" } th class="num" { "Amount" } th { "Status" } th { "Receipt" } th { "Reference" } } }
                        tbody {
                            @for p in &rows {
                                tr {
                                    td { a href=(format!("/admin/payments/{}", p.id)) { (nairobi(p.created_at)) } }
                                    td { (local_phone(&p.phone)) }
                                    td class="num" { (kes(p.amount)) }
                                    td { (status_badge(p)) }
                                    td { (p.receipt.as_deref().unwrap_or("")) }
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
pub(super) async fn payments_csv(
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

// ---------- payment detail ----------

fn pretty(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| raw.to_owned())
}

fn flash(headers: &HeaderMap) -> Option<String> {
    auth::cookie_value(headers, "lipa_flash")
        .map(|v| url::form_urlencoded::parse(format!("m={v}").as_bytes()).map(|(_, v)| v.into_owned()).collect())
}

/// A redirect that shows `message` once on the next page.
fn back_with(to: &str, message: &str) -> Response {
    let value: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    (
        [(header::SET_COOKIE, format!("lipa_flash={value}; Path=/admin; Max-Age=30; HttpOnly; SameSite=Strict"))],
        Redirect::to(to),
    )
        .into_response()
}

fn flash_markup(headers: &HeaderMap) -> Markup {
    html! { @if let Some(m) = flash(headers) { p class="flash" role="status" { (m) } } }
}

pub(super) async fn payment(
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
        store.audit_log(Some(id.as_str()), 50)
    );
    let (events, callbacks, webhooks, audit) = match loaded {
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
            h1 { (kes(p.amount)) " from " (local_phone(&p.phone)) " " (status_badge(&p)) }
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
            h2 { "Timeline" }
            ol class="timeline" {
                @for e in &events {
                    li {
                        time { (nairobi(e.at)) } " " strong { (e.kind) }
                        @if !e.detail.is_null() && e.detail != serde_json::json!({}) { pre { (serde_json::to_string_pretty(&e.detail).unwrap_or_default()) } }
                    }
                }
            }
            h2 { "Callbacks received (" (callbacks.len()) ")" }
            @for c in &callbacks {
                details open[callbacks.len() == 1] {
                    summary { (nairobi(c.received_at)) " \u{2014} " strong { (c.outcome) } " \u{2014} " (c.note) " from " (c.source.as_deref().unwrap_or("?")) }
                    pre class="raw" { (pretty(&c.body)) }
                }
            }
            h2 { "Webhook events" }
            @if webhooks.is_empty() { p class="muted" { "None." } }
            @for w in &webhooks {
                details {
                    summary { (w.event_type) " \u{2014} " span class=(format!("badge {}", w.status)) { (w.status) } " \u{2014} " (w.attempts.len()) " attempts" }
                    ul {
                        @for a in &w.attempts {
                            li { (nairobi(a.at)) " " (crate::redact::url(&a.url)) " \u{2192} " (a.status.map_or_else(|| a.error.clone().unwrap_or_default(), |s| s.to_string())) " (" (a.latency_ms) " ms) " code { (a.response) } }
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

pub(super) async fn query_now(
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

pub(super) async fn resolve_payment(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Action { staff, note }: Action,
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

pub(super) async fn resolve_callback(
    State(gateway): State<Gateway>,
    Path(id): Path<i64>,
    Action { staff, note }: Action,
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

// ---------- review ----------

/// Callbacks shown per page of the review queue.
const REVIEW_PAGE: i64 = 25;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ReviewQuery {
    /// Show callbacks stored before this one (the next page).
    #[serde(default)]
    before: Option<i64>,
}

pub(super) async fn review(
    State(gateway): State<Gateway>,
    staff: Staff,
    Query(q): Query<ReviewQuery>,
    headers: HeaderMap,
) -> Response {
    let store = gateway.store();
    let flagged = store.payments(PaymentFilter { needs_review: Some(true), limit: 200, ..PaymentFilter::default() });
    let callbacks = store.unresolved_callbacks(q.before, REVIEW_PAGE + 1);
    let counted = store.unmatched_counted_since(gateway.now() - DAY);
    let (flagged, mut callbacks, counted) = match tokio::try_join!(flagged, callbacks, counted) {
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
                    li { a href=(format!("/admin/payments/{}", p.id)) { (nairobi(p.created_at)) " \u{2014} " (kes(p.amount)) " from " (local_phone(&p.phone)) } " " (status_badge(p)) }
                }
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

// ---------- webhooks ----------

#[derive(Debug, Default, Deserialize)]
pub(super) struct WebhookQuery {
    #[serde(default)]
    status: String,
}

pub(super) async fn webhooks(
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
                a href="/admin/webhooks" { "all" } " \u{2022} "
                @for s in ["pending", "delivered", "dead", "no_endpoint"] { a href=(format!("/admin/webhooks?status={s}")) { (s) } " \u{2022} " }
            }
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
                                td { a href=(format!("/admin/payments/{payment}")) { "open" } }
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

pub(super) async fn redeliver(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Action { staff, note }: Action,
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

// ---------- API keys ----------

#[derive(Debug, Deserialize)]
pub(super) struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// When each API key was last used (recorded at most once a minute), by key id.
async fn last_used(store: &crate::store::Store) -> std::collections::HashMap<String, i64> {
    let rows = store.query("SELECT id, last_used_at FROM api_keys WHERE last_used_at IS NOT NULL", vec![]).await;
    rows.unwrap_or_default().iter().filter_map(|r| Some((r.first()?.text(), r.get(1)?.opt_int()?))).collect()
}

fn keys_page(
    staff: &Staff,
    keys: &[crate::store::ApiKey],
    last_used: &std::collections::HashMap<String, i64>,
    shown_once: Option<Markup>,
    headers: &HeaderMap,
) -> Response {
    let csrf = &staff.session.csrf;
    layout(
        Some(staff),
        "API keys",
        "/admin/keys",
        html! {
            (flash_markup(headers))
            h1 { "API keys" }
            // Secrets are shown in the answer to the form that made them, never carried in a
            // cookie or a redirect.
            @if let Some(shown) = shown_once { div class="flash" role="status" { (shown) } }
            div class="scroll" {
                table {
                    thead { tr { th { "Name" } th { "Key starts" } th { "Created" } th { "Last used" } th { "State" } th {} } }
                    tbody {
                        @for k in keys {
                            tr {
                                td { (k.name) }
                                td { code { (k.prefix) "\u{2026}" } }
                                td { (nairobi(k.created_at)) }
                                td { (last_used.get(&k.id).map_or_else(|| "never".to_owned(), |t| nairobi(*t))) }
                                td { @if let Some(r) = k.revoked_at { "revoked " (nairobi(r)) } @else { "live" } }
                                td {
                                    @if staff.is_admin() && k.revoked_at.is_none() {
                                        form method="post" action=(format!("/admin/keys/{}/rotate", k.id)) class="inline" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" class="secondary" { "New webhook secret" }
                                        }
                                        form method="post" action=(format!("/admin/keys/{}/revoke", k.id)) class="inline" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" class="danger" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if staff.is_admin() {
                h2 { "New key" }
                form method="post" action="/admin/keys" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="keyname" { "Name (who uses it)" }
                    input id="keyname" name="name" required maxlength="60";
                    button type="submit" { "Create key" }
                }
            }
        },
    )
}

pub(super) async fn keys(State(gateway): State<Gateway>, staff: Staff, headers: HeaderMap) -> Response {
    match gateway.store().api_keys().await {
        Ok(keys) => keys_page(&staff, &keys, &last_used(gateway.store()).await, None, &headers),
        Err(e) => store_down(&e),
    }
}

pub(super) async fn create_key(
    State(gateway): State<Gateway>,
    staff: Staff,
    headers: HeaderMap,
    form: Result<Form<KeyForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return (StatusCode::BAD_REQUEST, "Missing form fields.").into_response() };
    if let Err(refused) = staff.may_act(&form.csrf) {
        return refused.into_response();
    }
    let name = form.name.trim();
    if name.is_empty() || name.len() > 60 {
        return back_with("/admin/keys", "Give the key a name of up to 60 characters.");
    }
    let store = gateway.store();
    let created = crate::keys::create(store, name, gateway.now()).await;
    let (key, secret) = match created {
        Ok(k) => k,
        Err(e) => return store_down(&e),
    };
    let webhook_secret = match crate::keys::webhook_secret(store, &key).await {
        Ok(s) => s,
        Err(e) => return store_down(&e),
    };
    let _ = store.audit(staff.name(), "create_key", &key.id, name, gateway.now()).await;
    match store.api_keys().await {
        Ok(keys) => {
            let shown = html! {
                p { "Key " strong { (name) } " created. Copy both values now: they are not shown again." }
                p { "API key: " code { (secret) } }
                p { "Webhook secret: " code { (webhook_secret) } }
            };
            keys_page(&staff, &keys, &last_used(store).await, Some(shown), &headers)
        }
        Err(e) => store_down(&e),
    }
}

pub(super) async fn revoke_key(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Action { staff, .. }: Action,
) -> Response {
    match gateway.store().revoke_api_key(&id, gateway.now()).await {
        Ok(true) => {
            let _ = gateway.store().audit(staff.name(), "revoke_key", &id, "", gateway.now()).await;
            back_with("/admin/keys", "Key revoked: requests with it are refused from now on.")
        }
        Ok(false) => back_with("/admin/keys", "No such live key."),
        Err(e) => store_down(&e),
    }
}

pub(super) async fn rotate_key(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Action { staff, .. }: Action,
) -> Response {
    let secret = crate::keys::new_secret();
    let store = gateway.store();
    match store.set_webhook_secret(&id, &secret).await {
        Ok(true) => {
            let _ = store.audit(staff.name(), "rotate_webhook_secret", &id, "", gateway.now()).await;
            let shown = html! {
                p { "New webhook secret for " code { (id) } ", shown once: " code { (secret) } }
                p { "Events are signed with it from now on; give it to the shop's webhook handler." }
            };
            match store.api_keys().await {
                Ok(keys) => keys_page(&staff, &keys, &last_used(store).await, Some(shown), &headers),
                Err(e) => store_down(&e),
            }
        }
        Ok(false) => back_with("/admin/keys", "No such live key."),
        Err(e) => store_down(&e),
    }
}

// ---------- settings ----------

pub(super) async fn settings(State(gateway): State<Gateway>, staff: Staff) -> Response {
    let s = gateway.settings();
    let findings = s.check();
    let shown = s.shown();
    layout(
        Some(&staff),
        "Settings",
        "/admin/settings",
        html! {
            h1 { "Settings" }
            h2 { "Configuration check" }
            @if findings.is_empty() { p { "No findings." } }
            ul { @for f in &findings { li class=(if f.error { "error" } else { "warning" }) { (f.to_string()) } } }
            h2 { "In effect" }
            p class="muted" { "Secrets are never shown; in addresses, passwords and the values after ? are replaced by ***." }
            div class="scroll" {
                table {
                    thead { tr { th { "Setting" } th { "Value" } } }
                    tbody { @for (name, value) in &shown { tr { td { code { (name) } } td { (value) } } } }
                }
            }
        },
    )
}
