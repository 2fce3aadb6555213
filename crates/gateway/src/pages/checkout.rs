//! The hosted checkout: phone entry → waiting (live) → success or failure (with "send again").

use std::convert::Infallible;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt as _};
use maud::{Markup, html};
use serde::Deserialize;

use super::i18n::{Lang, Texts};
use super::{Page, fill};
use crate::checkout::{Checkout, return_url};
use crate::payment::{FailureReason, Payment, Status};
use crate::service::{CreateError, Gateway};
use crate::time_fmt::{kes, local_phone, ms, nairobi};

#[derive(Debug, Deserialize)]
pub(super) struct LangQuery {
    lang: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct StartForm {
    phone: String,
}

/// `07•• ••• 678` from 12 digits.
fn masked(phone: &str) -> String {
    let local = phone.strip_prefix("254").map_or_else(|| phone.to_owned(), |rest| format!("0{rest}"));
    let tail = local.get(local.len().saturating_sub(3)..).unwrap_or_default();
    let head = local.get(..2).unwrap_or_default();
    format!("{head}\u{2022}\u{2022} \u{2022}\u{2022}\u{2022} {tail}")
}

fn not_found(lang: Lang, remember: bool, id: &str) -> Response {
    let t = lang.t();
    Page {
        lang,
        remember_lang: remember,
        title: t.not_found_title,
        refresh: None,
        switch_href: format!("/checkout/{id}?lang={}", lang.other().code()),
        status: StatusCode::NOT_FOUND,
    }
    .render(html! { h1 { (t.not_found_title) } p { (t.not_found) } })
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "3")],
        "Temporarily unavailable; this page will work again shortly.",
    )
        .into_response()
}

pub(super) async fn show(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let (lang, remember) = Lang::negotiate(query.lang.as_deref(), &headers);
    match gateway.checkout(&id).await {
        Ok(Some(checkout)) => {
            let business = merchant_name(&gateway, &checkout).await;
            render(&gateway, &checkout, &business, lang, remember, None, StatusCode::OK)
        }
        Ok(None) => not_found(lang, remember, &id),
        Err(e) => {
            tracing::error!(error = %e, "checkout page unavailable");
            unavailable()
        }
    }
}

/// The form's POST: start a payment attempt, then show the page again (303), or the same page
/// with the reason it was refused.
pub(super) async fn start(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    Query(query): Query<LangQuery>,
    headers: HeaderMap,
    form: Result<Form<StartForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (lang, remember) = Lang::negotiate(query.lang.as_deref(), &headers);
    let t = lang.t();
    let checkout = match gateway.checkout(&id).await {
        Ok(Some(c)) => c,
        Ok(None) => return not_found(lang, remember, &id),
        Err(e) => {
            tracing::error!(error = %e, "checkout unavailable");
            return unavailable();
        }
    };
    let phone = form.map(|Form(f)| f.phone).unwrap_or_default();
    let back = || (StatusCode::SEE_OTHER, [(header::LOCATION, format!("/checkout/{id}"))]).into_response();
    let refused = match gateway.start_checkout_payment(&checkout, &phone).await {
        // A paid checkout (a form sent twice, a back button) shows its receipt.
        Ok(_) | Err(CreateError::AlreadyPaid) => return back(),
        Err(CreateError::Invalid { field: "phone", .. }) => t.phone_invalid,
        Err(CreateError::PhoneBusy(_)) => t.prompt_still_open,
        Err(CreateError::RateLimited(..)) => t.too_many,
        Err(e) => {
            tracing::warn!(error = %e, "checkout payment not started");
            t.try_later
        }
    };
    // Show the refusal on the page the customer was on, with what they typed.
    let checkout = match gateway.checkout(&id).await {
        Ok(Some(c)) => c,
        _ => checkout,
    };
    let typed = Some((phone.as_str(), refused));
    let business = merchant_name(&gateway, &checkout).await;
    render(&gateway, &checkout, &business, lang, remember, typed, StatusCode::UNPROCESSABLE_ENTITY)
}

/// The name the customer sees: the merchant's display name, else the business name.
async fn merchant_name(gateway: &Gateway, checkout: &Checkout) -> String {
    let fallback = &gateway.settings().business_name;
    crate::keys::merchant_name(gateway.store(), &checkout.session.api_key_id, fallback).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "merchant name unavailable; the business name is shown");
        fallback.clone()
    })
}

/// `GET /checkout/{id}/events`: `status` events with the latest attempt's status, ending when
/// it is final. The page reloads itself when the status differs from the one it shows.
pub(super) async fn events(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, StatusCode> {
    let checkout = gateway.checkout(&id).await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let payment = checkout.and_then(|c| c.payment).ok_or(StatusCode::NOT_FOUND)?;
    let stream = crate::follow::payment(gateway, payment)
        .map(|p: Payment| Ok(Event::default().event("status").data(p.status.as_str())));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn render(
    gateway: &Gateway,
    checkout: &Checkout,
    business: &str,
    lang: Lang,
    remember: bool,
    refused: Option<(&str, &str)>,
    status: StatusCode,
) -> Response {
    let t = lang.t();
    let session = &checkout.session;
    // Plain text: maud escapes it where it is written.
    let heading = t.pay_to.replace("{business}", business);
    let back = return_url(&session.cancel_url, &session.id);
    let page = |title, refresh| Page {
        lang,
        remember_lang: remember,
        title,
        refresh,
        switch_href: format!("/checkout/{}?lang={}", session.id, lang.other().code()),
        status,
    };
    let body = match &checkout.payment {
        None => return page(&heading, None).render(pay_form(t, checkout, &heading, refused)),
        Some(p) => p,
    };
    match body.status {
        Status::Pending => {
            let lifetime = gateway.settings().payments.prompt_lifetime;
            let deadline = body.created_at.saturating_add(ms(lifetime));
            let left = ((deadline - gateway.now()).max(0) / 1000).to_string();
            let message = fill(
                t.check_phone,
                &[
                    ("phone", html! { strong { (masked(&body.phone.to_string())) } }),
                    ("amount", html! { strong class="nowrap" { (kes(body.amount.shillings())) } }),
                    ("business", html! { (business) }),
                ],
            );
            page(t.check_phone_title, Some(3)).render(html! {
                h1 { (t.check_phone_title) }
                p { (message) }
                p class="status" role="status" aria-live="polite"
                    data-events=(format!("/checkout/{}/events", session.id)) data-status="pending" data-stale=(t.stale) {
                    (t.waiting)
                }
                p { (t.expires_in) " " span class="countdown" data-deadline=(left) { (left) } (t.seconds) }
                @if let Some((_, reason)) = refused { p class="error" role="alert" { (reason) } }
                details {
                    summary { (t.no_prompt_title) }
                    ol { @for step in t.no_prompt_steps { li { (step) } } }
                    (paybill_box(t, body, false))
                }
                noscript { p class="small" { (t.refresh_note) } }
                a class="secondary" href=(back) { (t.back_to_shop) }
            })
        }
        Status::Paid => page(t.paid_title, None).render(html! {
            h1 { (t.paid_title) }
            p class="status" role="status" { span class="nowrap" { (kes(body.amount.shillings())) } " \u{2192} " (business) }
            dl class="summary" {
                dt { (t.receipt) } dd { (body.receipt.as_deref().unwrap_or("\u{2014}")) }
                dt { (t.amount) } dd { (kes(body.amount.shillings())) }
                dt { (t.date) } dd { (nairobi(body.transaction_date.or(body.settled_at).unwrap_or(body.updated_at))) }
                dt { (t.reference) } dd { (body.account_reference) }
            }
            a class="button" href=(return_url(&session.success_url, &session.id)) { (t.return_to_shop) }
        }),
        Status::Failed | Status::Expired => {
            let reason = failure_reason(lang, body, gateway.settings().payments.prompt_lifetime);
            let by_hand = body.paybill.is_some();
            page(t.failed_title, by_hand.then_some(5)).render(html! {
                h1 { (t.failed_title) }
                p class="status bad" role="status" { (reason) }
                dl class="summary" {
                    dt { (t.business) } dd { (business) }
                    dt { (t.amount) } dd class="nowrap" { (kes(body.amount.shillings())) }
                    dt { (t.reference) } dd { (body.account_reference) }
                }
                @if by_hand {
                    div data-events=(format!("/checkout/{}/events", session.id)) data-status="failed" data-stale=(t.stale) {
                        (paybill_box(t, body, true))
                    }
                }
                // The number can be changed: a mistyped or unreachable phone is a common cause.
                form method="post" action=(format!("/checkout/{}", session.id)) novalidate {
                    @let typed = refused.map_or_else(|| local_phone(&body.phone.to_string()), |(typed, _)| typed.to_owned());
                    (phone_field(t, false, &typed, refused.map(|(_, reason)| reason)))
                    button type="submit" { (t.send_again) }
                }
                a class="secondary" href=(back) { (t.back_to_shop) }
            })
        }
    }
}

/// How to pay by hand (M-PESA menu, Pay Bill), while the payment can be paid that way: the
/// business and account numbers, and what is still due.
fn paybill_box(t: &Texts, p: &Payment, open: bool) -> Markup {
    let Some(paybill) = &p.paybill else { return html! {} };
    let due = u64::from(p.amount.shillings()).saturating_sub(p.amount_received);
    let due = kes(u32::try_from(due).unwrap_or(u32::MAX));
    html! {
        section class="paybill" aria-labelledby="paybill-title" {
            @if open { h2 id="paybill-title" { (t.paybill_title) } } @else { h3 id="paybill-title" { (t.paybill_title) } }
            p { (t.paybill_intro) }
            p { (t.paybill_menu) }
            dl class="summary" {
                dt { (t.business_number) } dd class="code" { (paybill.business_number) }
                dt { (t.account_number) } dd class="code" { (paybill.account_number) }
                dt { (t.amount) } dd class="amount" { (due) }
            }
            @if p.amount_received > 0 {
                p class="status" {
                    (fill(t.paybill_received, &[
                        ("received", html! { strong { (kes(u32::try_from(p.amount_received).unwrap_or(u32::MAX))) } }),
                        ("left", html! { strong { (due) } }),
                    ]))
                }
            }
            p class="small" { (t.paybill_done) }
        }
    }
}

/// The customer's words for why a payment failed, from the result-code catalogue. A 1037
/// ("cannot be reached") that came when the prompt's time was running out most likely means
/// the prompt was shown and not answered: that is said instead of "check your signal".
fn failure_reason(lang: Lang, p: &Payment, prompt_lifetime: std::time::Duration) -> &'static str {
    let t = lang.t();
    let code = daraja::ResultCode::from_wire(p.result_code.as_deref().unwrap_or_default());
    let answered_after = p.settled_at.unwrap_or(p.updated_at) - p.created_at;
    let half_lifetime = ms(prompt_lifetime) / 2;
    match (p.status, p.failure_reason) {
        (Status::Expired, _) => t.expired_reason,
        (_, Some(FailureReason::RejectedByDaraja)) => t.refused_reason,
        _ if code == daraja::ResultCode::Unreachable && answered_after >= half_lifetime => t.unanswered_reason,
        _ => match lang {
            Lang::En => code.customer_message_en(),
            Lang::Sw => code.customer_message_sw(),
        },
    }
}

/// The phone input with its label, optional hint and error line (checked as it is typed by
/// the page's script, which reads `data-invalid`).
fn phone_field(t: &Texts, hint: bool, value: &str, error: Option<&str>) -> Markup {
    let described = if hint { "phone-hint phone-error" } else { "phone-error" };
    html! {
        label for="phone" { (t.phone_label) }
        @if hint { p class="hint" id="phone-hint" { (t.phone_hint) } }
        input type="tel" id="phone" name="phone" inputmode="tel" autocomplete="tel" required
            value=(value) data-invalid=(t.phone_invalid)
            aria-describedby=(described) aria-invalid=(if error.is_some() { "true" } else { "false" });
        p class="error" id="phone-error" role="alert" { (error.unwrap_or_default()) }
    }
}

fn pay_form(t: &Texts, checkout: &Checkout, heading: &str, refused: Option<(&str, &str)>) -> Markup {
    let session = &checkout.session;
    let typed = refused.map(|(typed, _)| typed.to_owned()).or_else(|| session.phone.as_deref().map(local_phone));
    let error = refused.map(|(_, reason)| reason);
    html! {
        h1 { (heading) }
        dl class="summary" {
            dt { (t.for_) } dd { (session.description) }
            dt { (t.reference) } dd { (session.account_reference) }
            dt { (t.amount) } dd class="amount nowrap" { (kes(session.amount)) }
        }
        form method="post" action=(format!("/checkout/{}", session.id)) novalidate {
            (phone_field(t, true, &typed.unwrap_or_default(), error))
            button type="submit" { (t.send_prompt) " \u{2022} " span class="nowrap" { (kes(session.amount)) } }
        }
        a class="secondary" href=(return_url(&session.cancel_url, &session.id)) { (t.back_to_shop) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn phones_are_masked_and_shown_in_local_phone() {
        assert_eq!(super::masked("254712345678"), "07\u{2022}\u{2022} \u{2022}\u{2022}\u{2022} 678");
        assert_eq!(crate::time_fmt::local_phone("254712345678"), "0712 345 678");
    }
}
