//! The admin dashboard under `/admin`: overview with charts, payments (search, filters, CSV),
//! payment detail with its whole timeline and actions, review queue, webhooks, API keys and
//! settings. Server-rendered (maud), no external assets, usable on a phone. Every page needs a
//! session; every action needs an admin, the session's CSRF token, and is written to the audit
//! log.

pub mod auth;
mod charts;
mod pages;
pub mod rollups;

use axum::Router;
use axum::routing::{get, post};

use crate::service::Gateway;

/// The dashboard's routes, on any state the gateway and the sign-in throttle can be taken
/// from (see [`crate::startup::AppState`]).
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Gateway: axum::extract::FromRef<S>,
    std::sync::Arc<auth::Throttle>: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/admin", get(pages::overview))
        // Anyone can send the sign-in form: its body is small or refused.
        .route(
            "/admin/login",
            get(pages::login_form).post(pages::login).layer(axum::extract::DefaultBodyLimit::max(4096)),
        )
        .route("/admin/logout", post(pages::logout))
        .route("/admin/payments", get(pages::payments))
        .route("/admin/payments.csv", get(pages::payments_csv))
        .route("/admin/payments/{id}", get(pages::payment))
        .route("/admin/payments/{id}/query", post(pages::query_now))
        .route("/admin/payments/{id}/resolve", post(pages::resolve_payment))
        .route("/admin/payments/{id}/refund", post(pages::refund))
        .route("/admin/payments/{id}/check-receipt", post(pages::check_receipt))
        .route("/admin/refunds/{id}/{outcome}", post(pages::resolve_refund))
        .route("/admin/callbacks/{id}/resolve", post(pages::resolve_callback))
        .route("/admin/review", get(pages::review))
        .route("/admin/c2b", get(pages::c2b))
        .route("/admin/c2b/{trans_id}/assign", post(pages::assign_c2b))
        .route("/admin/c2b/{trans_id}/refunded", post(pages::c2b_refunded))
        .route("/admin/webhooks", get(pages::webhooks))
        .route("/admin/webhook-events/{id}/redeliver", post(pages::redeliver))
        .route("/admin/keys", get(pages::keys).post(pages::create_key))
        .route("/admin/keys/{id}/revoke", post(pages::revoke_key))
        .route("/admin/keys/{id}/rotate", post(pages::rotate_key))
        .route("/admin/settings", get(pages::settings))
        .route("/assets/admin.css", get(|| async { pages::css() }))
        .layer(axum::middleware::map_response(hardened))
}

/// Every answer of the dashboard, redirects and refusals included: no content sniffing, and
/// no address of a dashboard page in the `Referer` of a link to elsewhere.
async fn hardened(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// Creates the first admin user from `LIPA_ADMIN_PASSWORD` when there is none yet.
pub async fn bootstrap(gateway: &Gateway, password: Option<&str>) -> Result<bool, auth::UserError> {
    let Some(password) = password.filter(|p| !p.is_empty()) else { return Ok(false) };
    if gateway.store().admin_user_count().await? > 0 {
        return Ok(false);
    }
    auth::create_user(gateway.store(), "admin", password, crate::store::admin::Role::Admin, gateway.now()).await?;
    Ok(true)
}
