//! Customer-facing pages, rendered on the server (maud: checked, escaped templates). No
//! external CDNs: the stylesheet and the small script are served by this binary. Every page
//! works without JavaScript.

mod checkout;
pub mod i18n;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::service::Gateway;
use i18n::Lang;

const CSS: &str = include_str!("assets/lipa.css");
const JS: &str = include_str!("assets/checkout.js");

/// The pages' routes.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Gateway: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/checkout/{id}", get(checkout::show).post(checkout::start))
        .route("/checkout/{id}/events", get(checkout::events))
        .route("/assets/lipa.css", get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route("/assets/checkout.js", get(|| async { asset("text/javascript; charset=utf-8", JS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// A whole page: the layout around `body`, with the language switch.
pub(crate) struct Page<'a> {
    pub lang: Lang,
    pub remember_lang: bool,
    pub title: &'a str,
    /// Seconds between automatic reloads when JavaScript is off.
    pub refresh: Option<u32>,
    pub switch_href: String,
    pub status: StatusCode,
}

impl Page<'_> {
    pub(crate) fn render(self, body: Markup) -> Response {
        let t = self.lang.t();
        let markup = html! {
            (DOCTYPE)
            html lang=(self.lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="no-referrer";
                    title { (self.title) }
                    link rel="stylesheet" href="/assets/lipa.css";
                    @if let Some(secs) = self.refresh {
                        noscript { meta http-equiv="refresh" content=(secs); }
                    }
                    script src="/assets/checkout.js" defer {}
                }
                body {
                    main class="card" {
                        nav class="lang" { a href=(self.switch_href) lang=(self.lang.other().code()) { (t.switch_to) } }
                        (body)
                    }
                }
            }
        };
        let mut response = (self.status, axum::response::Html(markup.into_string())).into_response();
        let headers = response.headers_mut();
        // The session id in the address is the customer's credential: no caching, no referrer,
        // no framing, and only this server's own script and styles.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'"),
        );
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if self.remember_lang
            && let Ok(cookie) = HeaderValue::from_str(&format!(
                "lipa_lang={}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly",
                self.lang.code()
            ))
        {
            headers.insert(header::SET_COOKIE, cookie);
        }
        response
    }
}

/// `text` with `{name}` placeholders filled, each value escaped, as markup.
pub(crate) fn fill(text: &str, values: &[(&str, Markup)]) -> Markup {
    let mut out = maud::html! { (text) }.into_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), &value.0);
    }
    PreEscaped(out)
}
