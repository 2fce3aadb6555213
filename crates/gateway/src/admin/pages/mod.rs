//! The dashboard's pages and actions, one module a page; the layout and what pages share here.

mod c2b;
mod keys;
mod login;
mod overview;
mod payment;
mod payments;
mod refund;
mod review;
mod settings;
mod timeline;
mod webhooks;

pub(super) use self::{
    c2b::*, keys::*, login::*, overview::*, payment::*, payments::*, refund::*, review::*, settings::*, webhooks::*,
};

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

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

const CSS: &str = include_str!("../admin.css");

pub(super) fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS)
        .into_response()
}

const NAV: [(&str, &str); 7] = [
    ("/admin", "Overview"),
    ("/admin/payments", "Payments"),
    ("/admin/c2b", "Paybill"),
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
