//! `GET /`: a page for people who open the gateway's address: what it is, where the API
//! reference, health and the admin dashboard are, and every operation of the API.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, html};

use crate::service::Gateway;

/// Every operation of the API as (method, path, summary), merchants' first, then Daraja's
/// callbacks, then the rest: read from the OpenAPI document once per process.
fn operations() -> &'static [(String, String, String)] {
    static OPERATIONS: std::sync::OnceLock<Vec<(String, String, String)>> = std::sync::OnceLock::new();
    OPERATIONS.get_or_init(|| {
        let document = super::openapi::document();
        let mut operations = Vec::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let summary = op["summary"].as_str().unwrap_or_default().to_owned();
                operations.push((method.to_ascii_uppercase(), path.clone(), summary));
            }
        }
        operations
            .sort_by_key(|(_, path, _)| (!path.starts_with("/v1/"), path.starts_with("/callbacks/"), path.clone()));
        operations
    })
}

pub(super) async fn home(State(gateway): State<Gateway>) -> Response {
    let operations = operations();
    let name = &gateway.settings().business_name;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Lipa gateway \u{2014} " (name) }
                link rel="stylesheet" href="/assets/admin.css";
            }
            body {
                main {
                    h1 { "Lipa gateway" }
                    p { "The M-PESA payment gateway of " strong { (name) } ". Its merchant API takes payments, refunds and checkout sessions; people use the pages below." }
                    ul {
                        li { a href="/admin" { "Admin dashboard" } " \u{2014} payments, refunds, review, webhooks, API keys" }
                        li { a href="/openapi.json" { "OpenAPI document" } " \u{2014} the API below, for code generators and tools" }
                        li { a href="/healthz" { "Health" } " \u{b7} " a href="/readyz" { "Readiness" } " \u{b7} " a href="/metrics" { "Metrics" } }
                    }
                    h2 { "API reference" }
                    p class="muted" { "Send your API key as " code { "Authorization: Bearer lipa_sk_\u{2026}" } ". Errors are JSON: " code { "{\"error\": {\"code\", \"message\", \"field\"}}" } "." }
                    div class="scroll" {
                        table {
                            thead { tr { th { "Method" } th { "Path" } th { "What it does" } } }
                            tbody {
                                @for (method, path, summary) in operations {
                                    tr { td { code { (method) } } td { code { (path) } } td { (summary) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ([(header::CACHE_CONTROL, "no-cache")], Html(page.into_string())).into_response()
}
