//! The shop's pages and its webhook endpoint.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::db::{BookError, Booked, Movie, Outcome, Ticket, TicketStatus};
use crate::lipa::SessionRequest;
use crate::{State, now_ms};

type St = AxumState<Arc<State>>;

const CSS: &str = include_str!("shop.css");
const JS: &str = include_str!("shop.js");

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(programme))
        .route("/movies/{id}", get(booking_form).post(book))
        .route("/tickets/{id}", get(ticket_page))
        .route("/tickets/{id}/retry", post(retry))
        .route("/tickets/{id}/cancel", post(crate::refunds::cancel))
        .route("/webhooks/lipa", post(webhook))
        .route("/posters/{file}", get(poster))
        .route("/assets/shop.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }))
        .route("/assets/shop.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS) }))
        .with_state(state)
}

/// `KES 1,350`, with a no-break space so the amount never wraps apart from its currency.
fn kes(amount: u32) -> String {
    let digits = amount.to_string();
    let mut out = String::from("KES\u{a0}");
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Nairobi wall-clock time: `Tue 1 Dec, 18:30`.
fn nairobi(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short] [day padding:none] [month repr:short], [hour]:[minute]"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(|t| t.to_offset(time::macros::offset!(+3)))
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

fn page(name: &str, title: &str, refresh: bool, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " \u{2014} " (name) }
                    link rel="stylesheet" href="/assets/shop.css";
                    @if refresh { meta http-equiv="refresh" content="3"; }
                    script src="/assets/shop.js" defer {}
                }
                body {
                    header { a href="/" class="brand" { (name) } }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

fn error_page(state: &State, status: StatusCode, message: &str) -> Response {
    (
        status,
        page(
            &state.name,
            "Sorry",
            false,
            html! { h1 { "Sorry" } p { (message) } p { a href="/" { "Back to the movies" } } },
        ),
    )
        .into_response()
}

fn db_down(state: &State, e: &crate::db::DbError) -> Response {
    tracing::error!(error = %e, "shop database");
    error_page(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "The shop is having trouble right now. Please try again in a moment.",
    )
}

async fn programme(AxumState(state): St) -> Response {
    let movies = match state.db.movies().await {
        Ok(m) => m,
        Err(e) => return db_down(&state, &e),
    };
    page(
        &state.name,
        "Now showing",
        false,
        html! {
            h1 { "Now showing" }
            ul class="movies" {
                @for m in &movies {
                    li class="movie" {
                        img src=(format!("/posters/{}.svg", m.id)) alt="" width="100" height="150";
                        div {
                            h2 { (m.title) }
                            p { (m.description) }
                            p class="meta" { (nairobi(m.show_time)) " \u{2022} " (kes(m.price)) }
                            @if m.seats_left() == 0 {
                                p class="soldout" { "Sold out" }
                            } @else {
                                p class="meta" { (m.seats_left()) " seats left" }
                                a class="button" href=(format!("/movies/{}", m.id)) { "Book" }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct BookingForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    quantity: String,
    /// The form's own id (a hidden field): a form sent twice (a double click, a reload) books
    /// once.
    #[serde(default)]
    booking: String,
}

/// A booking form id as the shop makes them (`random_id`): 20 lower-case hex digits.
fn valid_booking_id(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn booking_view(state: &State, m: &Movie, form: &BookingForm, errors: &[(&str, String)]) -> Html<String> {
    let error = |field: &str| errors.iter().find(|(f, _)| *f == field).map(|(_, e)| e.clone());
    let max = m.seats_left().min(10);
    let chosen: u32 = form.quantity.parse().unwrap_or(1);
    page(
        &state.name,
        &m.title,
        false,
        html! {
            div class="movie" {
                img src=(format!("/posters/{}.svg", m.id)) alt="" width="100" height="150";
                div {
                    h1 { (m.title) }
                    p class="meta" { (nairobi(m.show_time)) " \u{2022} " (kes(m.price)) " per seat \u{2022} " (m.seats_left()) " seats left" }
                }
            }
            @if let Some(e) = error("movie") { p class="error" role="alert" { (e) } }
            form method="post" action=(format!("/movies/{}", m.id)) {
                input type="hidden" name="booking"
                    value=(if valid_booking_id(&form.booking) { form.booking.clone() } else { random_id() });
                label for="name" { "Your name" }
                input id="name" name="name" autocomplete="name" required maxlength="60" value=(form.name);
                @if let Some(e) = error("name") { p class="error" { (e) } }
                label for="phone" { "M-PESA phone number" }
                input id="phone" name="phone" type="tel" inputmode="tel" autocomplete="tel" required placeholder="0712 345 678" value=(form.phone);
                @if let Some(e) = error("phone") { p class="error" { (e) } }
                label for="quantity" { "Seats" }
                select id="quantity" name="quantity" data-price=(m.price) {
                    @for q in 1..=max {
                        option value=(q) selected[q == chosen] { (q) }
                    }
                }
                @if let Some(e) = error("quantity") { p class="error" { (e) } }
                p class="total" { "Total: " output id="total" for="quantity" { (kes(m.price.saturating_mul(chosen.clamp(1, max.max(1))))) } }
                noscript { p class="small" { (kes(m.price)) " per seat; the total for the seats you choose is shown on the payment page." } }
                button type="submit" { "Pay with M-PESA" }
            }
        },
    )
}

async fn booking_form(AxumState(state): St, Path(id): Path<i64>) -> Response {
    match state.db.movie(id).await {
        Ok(Some(m)) if m.seats_left() > 0 => booking_view(&state, &m, &BookingForm::default(), &[]).into_response(),
        Ok(Some(_)) => error_page(&state, StatusCode::CONFLICT, "This show is sold out."),
        Ok(None) => error_page(&state, StatusCode::NOT_FOUND, "There is no such movie."),
        Err(e) => db_down(&state, &e),
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 10];
    // The OS random source failing is not survivable for ids; a time-based fallback keeps the
    // shop up (ids are still unique, only less secret).
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&now_ms().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn book(
    AxumState(state): St,
    Path(id): Path<i64>,
    form: Result<Form<BookingForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let movie = match state.db.movie(id).await {
        Ok(Some(m)) => m,
        Ok(None) => return error_page(&state, StatusCode::NOT_FOUND, "There is no such movie."),
        Err(e) => return db_down(&state, &e),
    };
    let mut errors = Vec::new();
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 60 {
        errors.push(("name", "Enter your name (up to 60 characters).".to_owned()));
    }
    let phone = daraja::Msisdn::parse(&form.phone);
    if let Err(e) = &phone {
        // Customers get one short sentence; the precise rule is for developers (and the logs).
        tracing::debug!(reason = %e.reason, "booking phone refused");
        errors.push(("phone", "Enter your M-PESA number, like 0712\u{a0}345\u{a0}678.".to_owned()));
    }
    let quantity = form.quantity.trim().parse::<u32>().ok().filter(|q| (1..=10).contains(q));
    if quantity.is_none() {
        errors.push(("quantity", "Choose between 1 and 10 seats.".to_owned()));
    }
    let (Ok(phone), Some(quantity), true) = (phone, quantity, errors.is_empty()) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, booking_view(&state, &movie, &form, &errors)).into_response();
    };
    let book = |booking: String| {
        state.db.book(format!("tk_{booking}"), id, name.to_owned(), phone.to_string(), quantity, now_ms())
    };
    let mut booked = book(if valid_booking_id(&form.booking) { form.booking.clone() } else { random_id() }).await;
    // The same form id with other details (sent again after going back and changing it): a
    // booking of its own.
    if let Ok(Ok(Booked::Conflict)) = booked {
        booked = book(random_id()).await;
    }
    let ticket = match booked {
        Ok(Ok(Booked::New(t))) => t,
        // The same form again: where the first one led.
        Ok(Ok(Booked::Again(t))) => {
            return match (&t.status, &t.checkout_url) {
                (TicketStatus::Pending, Some(url)) => Redirect::to(url).into_response(),
                // Its session is still being made: asking again gets the same one.
                (TicketStatus::Pending, None) => checkout(&state, &t).await,
                _ => Redirect::to(&format!("/tickets/{}", t.id)).into_response(),
            };
        }
        // A fresh random id taken as well (practically never): ask for the form again.
        Ok(Ok(Booked::Conflict)) => return error_page(&state, StatusCode::CONFLICT, "Please send the form again."),
        Ok(Err(BookError::SoldOut(left))) => {
            let message = if left == 0 {
                "Sorry, this show has just sold out.".to_owned()
            } else {
                format!("Only {left} seats are left; choose fewer.")
            };
            let movie = state.db.movie(id).await.ok().flatten().unwrap_or(movie);
            if movie.seats_left() == 0 {
                return error_page(&state, StatusCode::CONFLICT, &message);
            }
            return (StatusCode::CONFLICT, booking_view(&state, &movie, &form, &[("quantity", message)]))
                .into_response();
        }
        Ok(Err(BookError::NoMovie)) => return error_page(&state, StatusCode::NOT_FOUND, "There is no such movie."),
        Err(e) => return db_down(&state, &e),
    };
    checkout(&state, &ticket).await
}

/// Asks Lipa for a checkout session for the ticket's next attempt and sends the customer there.
async fn checkout(state: &State, ticket: &Ticket) -> Response {
    let attempt = ticket.attempts + 1;
    let reference = format!("TKT{}", ticket.id.trim_start_matches("tk_").get(..8).unwrap_or_default().to_uppercase());
    let request = SessionRequest {
        idempotency_key: &format!("{}-{attempt}", ticket.id),
        amount: ticket.total,
        account_reference: &reference,
        description: "Movie tickets",
        phone: &ticket.phone,
        return_url: &format!("{}/tickets/{}", state.public_url, ticket.id),
        webhook_url: &format!("{}/webhooks/lipa", state.public_url),
        ticket_id: &ticket.id,
    };
    match state.lipa.create_session(&request).await {
        Ok((session_id, url)) => match state.db.set_session(ticket.id.clone(), session_id, url.clone(), now_ms()).await
        {
            Ok(true) => Redirect::to(&url).into_response(),
            // Paid (or failed) meanwhile by an earlier attempt: the ticket page says which.
            Ok(false) => Redirect::to(&format!("/tickets/{}", ticket.id)).into_response(),
            Err(e) => db_down(state, &e),
        },
        Err(e) => {
            tracing::error!(error = %e, ticket = %ticket.id, "no checkout session");
            let failed = Outcome::Failed {
                ticket_id: ticket.id.clone(),
                payment_id: String::new(),
                session_id: None,
                reason: "The payment service could not be reached. Please try again.".into(),
            };
            let _ = state.db.apply(None, failed, now_ms()).await;
            Redirect::to(&format!("/tickets/{}", ticket.id)).into_response()
        }
    }
}

async fn retry(AxumState(state): St, Path(id): Path<String>) -> Response {
    // The customer may have tried again on Lipa's page after the failure: while that payment
    // is under way, a new session would only be refused (one prompt per phone) or, once it
    // is paid, charge twice. Go to that attempt instead.
    if let Ok(Some(ticket)) = state.db.ticket(id.clone()).await
        && ticket.status == TicketStatus::Failed
        && let Some(session) = &ticket.lipa_session_id
        && let Ok(Some(payment)) = state.lipa.session_payment(session).await
    {
        match payment["status"].as_str() {
            Some("pending") if let Some(url) = &ticket.checkout_url => return Redirect::to(url).into_response(),
            Some("paid") => {
                if let Some(paid) = outcome(&ticket.id, &payment)
                    && let Err(e) = state.db.apply(None, paid, now_ms()).await
                {
                    return db_down(&state, &e);
                }
                return Redirect::to(&format!("/tickets/{}", ticket.id)).into_response();
            }
            _ => {}
        }
    }
    match state.db.rebook(id, now_ms()).await {
        Ok(Ok(t)) if t.status == TicketStatus::Paid => Redirect::to(&format!("/tickets/{}", t.id)).into_response(),
        // A second "Try again" while the first one's checkout is open goes to that checkout.
        Ok(Ok(Ticket { status: TicketStatus::Pending, checkout_url: Some(url), .. })) => {
            Redirect::to(&url).into_response()
        }
        Ok(Ok(t)) => checkout(&state, &t).await,
        Ok(Err(BookError::SoldOut(_))) => {
            error_page(&state, StatusCode::CONFLICT, "Sorry, the seats were taken meanwhile; the show is now sold out.")
        }
        Ok(Err(BookError::NoMovie)) => error_page(&state, StatusCode::NOT_FOUND, "There is no such booking."),
        Err(e) => db_down(&state, &e),
    }
}

/// What a Lipa payment (as the API and webhooks show it) means for a ticket.
fn outcome(ticket_id: &str, payment: &Value) -> Option<Outcome> {
    let payment_id = payment["id"].as_str().unwrap_or_default().to_owned();
    let session_id = payment["metadata"]["checkout_session"].as_str().map(str::to_owned);
    match payment["status"].as_str()? {
        "paid" => Some(Outcome::Paid {
            ticket_id: ticket_id.to_owned(),
            payment_id,
            receipt: payment["receipt"].as_str().map(str::to_owned),
            transaction_date: payment["transaction_date"].as_str().and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
            }),
        }),
        "failed" => Some(Outcome::Failed {
            ticket_id: ticket_id.to_owned(),
            payment_id,
            session_id,
            reason: daraja::ResultCode::from_wire(payment["result_code"].as_str().unwrap_or_default())
                .customer_message_en()
                .to_owned(),
        }),
        "expired" => Some(Outcome::Failed {
            ticket_id: ticket_id.to_owned(),
            payment_id,
            session_id,
            reason: "No answer came from your phone in time.".to_owned(),
        }),
        _ => None,
    }
}

async fn ticket_page(AxumState(state): St, Path(id): Path<String>) -> Response {
    let mut ticket = match state.db.ticket(id.clone()).await {
        Ok(Some(t)) => t,
        Ok(None) => return error_page(&state, StatusCode::NOT_FOUND, "There is no such booking."),
        Err(e) => return db_down(&state, &e),
    };
    // Webhooks are the main way the shop learns outcomes; a customer back from the checkout
    // before the webhook arrived gets the answer from Lipa's API instead. A failed ticket asks
    // too, as the customer may have paid on a later try on Lipa's page (a payment applies to
    // any ticket, a failure only to a pending one).
    if ticket.status != TicketStatus::Paid
        && let Some(session) = &ticket.lipa_session_id
        && let Ok(Some(payment)) = state.lipa.session_payment(session).await
        && let Some(outcome) = outcome(&ticket.id, &payment)
        && state.db.apply(None, outcome, now_ms()).await.is_ok()
        && let Ok(Some(t)) = state.db.ticket(id).await
    {
        ticket = t;
    }
    let movie = match state.db.movie(ticket.movie_id).await {
        Ok(Some(m)) => m,
        Ok(None) => return error_page(&state, StatusCode::NOT_FOUND, "There is no such movie."),
        Err(e) => return db_down(&state, &e),
    };
    // One list, so the booking's and the payment's rows line up.
    let details = |more: Markup| {
        html! {
            dl class="summary" {
                dt { "Movie" } dd { (movie.title) }
                dt { "Show" } dd { (nairobi(movie.show_time)) }
                dt { "Seats" } dd { (ticket.quantity) }
                dt { "Name" } dd { (ticket.customer_name) }
                dt { "Total" } dd { (kes(ticket.total)) }
                (more)
            }
        }
    };
    let body = match ticket.status {
        TicketStatus::Paid => html! {
            @if ticket.refund_status == Some(crate::refunds::RefundState::Succeeded) {
                h1 { "Booking cancelled" }
            } @else {
                h1 class="ok" { "Your tickets" }
                p { "Paid. Show this page (or the M-PESA SMS) at the door." }
            }
            (details(html! {
                dt { "M-PESA receipt" } dd class="receipt" { (ticket.receipt.as_deref().unwrap_or("on its way by SMS")) }
                @if let Some(at) = ticket.transaction_date { dt { "Paid at" } dd { (nairobi(at)) } }
                dt { "Status" } dd class="status" { "Paid" }
            }))
            (crate::refunds::section(&ticket, movie.show_time, &kes(ticket.total)))
            p { a class="secondary" href="/" { "Back to the movies" } }
        },
        TicketStatus::Failed => html! {
            h1 class="bad" { "Payment failed" }
            p { (ticket.failure.as_deref().unwrap_or("The payment did not go through.")) }
            (details(html! { dt { "Status" } dd class="status" { "Failed: your seats were released" } }))
            form method="post" action=(format!("/tickets/{}/retry", ticket.id)) {
                button type="submit" { "Try again" }
            }
            p { a class="secondary" href="/" { "Back to the movies" } }
        },
        TicketStatus::Pending => html! {
            h1 { "Waiting for your payment" }
            p { "Your seats are held while you pay. This page refreshes itself." }
            (details(html! { dt { "Status" } dd class="status" { "Pending" } }))
            @if let Some(url) = &ticket.checkout_url { a class="button" href=(url) { "Continue to payment" } }
        },
    };
    let refresh =
        ticket.status == TicketStatus::Pending || ticket.refund_status == Some(crate::refunds::RefundState::Pending);
    page(&state.name, "Your booking", refresh, body).into_response()
}

/// `POST /webhooks/lipa`: verified (signature and a 5-minute replay window), applied once per
/// event id, in the same transaction that records the id.
async fn webhook(AxumState(state): St, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers.get("lipa-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Err(e) = crate::lipa::verify(&state.webhook_secret, signature, &body, now_ms() / 1000, 300) {
        tracing::warn!(error = %e, "webhook refused");
        return (StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let (Some(event_id), Some(kind)) = (event["id"].as_str(), event["type"].as_str()) else {
        return (StatusCode::BAD_REQUEST, "no event id or type").into_response();
    };
    let data = &event["data"];
    if let Some(end) = crate::refunds::refund_event(kind, data) {
        return match state.db.refund_ended(event_id.to_owned(), end, now_ms()).await {
            Ok(true) => (StatusCode::OK, "applied").into_response(),
            Ok(false) => (StatusCode::OK, "already applied").into_response(),
            Err(e) => {
                tracing::error!(error = %e, "refund webhook not applied");
                (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
            }
        };
    }
    let Some(ticket_id) = data["metadata"]["ticket_id"].as_str() else {
        return (StatusCode::OK, "not about a ticket").into_response();
    };
    let relevant = matches!(kind, "payment.paid" | "payment.receipt_added" | "payment.failed" | "payment.expired");
    let Some(outcome) = relevant.then(|| outcome(ticket_id, data)).flatten() else {
        return (StatusCode::OK, "ignored").into_response();
    };
    if let Outcome::Failed { payment_id, session_id: Some(session_id), .. } = &outcome {
        match latest_payment_is(&state, session_id, payment_id).await {
            Ok(true) => {}
            Ok(false) => return (StatusCode::OK, "superseded by a later attempt").into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "webhook not applied: cannot ask Lipa about the session");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
            }
        }
    }
    match state.db.apply(Some(event_id.to_owned()), outcome, now_ms()).await {
        Ok(true) => (StatusCode::OK, "applied").into_response(),
        Ok(false) => (StatusCode::OK, "already applied").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "webhook not applied");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

/// Whether `payment_id` is the latest payment of checkout session `session_id`. The customer can
/// try again on Lipa's checkout page after a failure; the failure of the earlier attempt, told
/// late, must not fail the ticket while the new attempt is under way.
async fn latest_payment_is(state: &State, session_id: &str, payment_id: &str) -> Result<bool, crate::lipa::LipaError> {
    Ok(state.lipa.session_payment_id(session_id).await?.as_deref() == Some(payment_id))
}

async fn poster(AxumState(state): St, Path(file): Path<String>) -> Response {
    let id = file.strip_suffix(".svg").and_then(|id| id.parse::<i64>().ok());
    match id {
        Some(id) => match state.db.movie(id).await {
            Ok(Some(m)) => {
                ([(header::CONTENT_TYPE, "image/svg+xml")], crate::posters::svg(&m.title, &m.colour)).into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        },
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
