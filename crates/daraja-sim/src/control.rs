//! The control API under `/sim/`: what tests and tools use to script outcomes, resolve
//! prompts, inject faults and read every push, callback attempt and acknowledgement.
//! Each route calls the same [`Sim`] method an in-process test would.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

use crate::config::{DefaultAnswer, Faults};
use crate::records::Scripted;
use crate::rules::{Answer, MAGIC_NUMBERS};
use crate::sim::Sim;

pub(crate) fn routes() -> axum::Router<Sim> {
    axum::Router::new()
        .route("/sim/transactions", get(transactions))
        .route("/sim/transactions/{id}", get(transaction))
        .route("/sim/transactions/{id}/resolve", post(resolve))
        .route("/sim/requests", get(|State(sim): State<Sim>| async move { Json(sim.requests()) }))
        .route("/sim/callbacks", get(|State(sim): State<Sim>| async move { Json(sim.callback_attempts()) }))
        .route("/sim/phones/{msisdn}", get(phone))
        .route("/sim/phones/{msisdn}/script", post(script))
        .route("/sim/phones/{msisdn}/balance", put(balance))
        .route("/sim/faults", put(faults))
        .route("/sim/default-answer", put(default_answer))
        .route(
            "/sim/reset",
            post(|State(sim): State<Sim>| async move {
                sim.reset();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/sim/expire-tokens",
            post(|State(sim): State<Sim>| async move {
                sim.expire_tokens();
                StatusCode::NO_CONTENT
            }),
        )
        .route("/sim/magic-numbers", get(magic_numbers))
        .route("/sim/inject", post(inject))
}

/// A control-API refusal: a status and a message saying what to fix.
struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    Problem(status, message.into()).into_response()
}

fn phone_number(raw: &str) -> Result<u64, Problem> {
    crate::normalize_msisdn(raw).ok_or_else(|| {
        Problem(
            StatusCode::BAD_REQUEST,
            format!("{raw:?} is not a Kenyan mobile number such as 0712345678 or 254712345678"),
        )
    })
}

async fn transactions(State(sim): State<Sim>) -> impl IntoResponse {
    Json(sim.transactions())
}

async fn transaction(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.transaction(&id) {
        Some(t) => Json(t).into_response(),
        None => problem(StatusCode::NOT_FOUND, format!("no transaction {id}")),
    }
}

#[derive(Deserialize)]
struct ResolveBody {
    result: Answer,
}

async fn resolve(State(sim): State<Sim>, Path(id): Path<String>, Json(body): Json<ResolveBody>) -> Response {
    if sim.transaction(&id).is_none() {
        return problem(StatusCode::NOT_FOUND, format!("no transaction {id}"));
    }
    if sim.resolve(&id, body.result) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        problem(StatusCode::CONFLICT, format!("transaction {id} has already ended"))
    }
}

async fn phone(State(sim): State<Sim>, Path(raw): Path<String>) -> Result<impl IntoResponse, Problem> {
    Ok(Json(sim.phone(phone_number(&raw)?)))
}

async fn script(
    State(sim): State<Sim>,
    Path(raw): Path<String>,
    Json(body): Json<Scripted>,
) -> Result<StatusCode, Problem> {
    sim.script(phone_number(&raw)?, body);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct BalanceBody {
    balance: u64,
}

async fn balance(
    State(sim): State<Sim>,
    Path(raw): Path<String>,
    Json(body): Json<BalanceBody>,
) -> Result<StatusCode, Problem> {
    sim.set_balance(phone_number(&raw)?, body.balance);
    Ok(StatusCode::NO_CONTENT)
}

async fn faults(State(sim): State<Sim>, Json(body): Json<Faults>) -> StatusCode {
    sim.set_faults(body);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct DefaultAnswerBody {
    answer: DefaultAnswer,
}

async fn default_answer(State(sim): State<Sim>, Json(body): Json<DefaultAnswerBody>) -> StatusCode {
    sim.set_default_answer(body.answer);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct InjectBody {
    endpoint: crate::sim::Endpoint,
    error: String,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

async fn inject(State(sim): State<Sim>, Json(body): Json<InjectBody>) -> Result<StatusCode, Problem> {
    let error = crate::envelope::DarajaError::by_name(&body.error).ok_or_else(|| {
        Problem(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown error {:?}; use system_busy, spike_arrest, quota, internal, invalid_token, wrong_credentials, merchant_unknown or subscriber_locked",
                body.error
            ),
        )
    })?;
    sim.inject_error(body.endpoint, error, body.count);
    Ok(StatusCode::NO_CONTENT)
}

async fn magic_numbers() -> impl IntoResponse {
    let rows: Vec<_> = MAGIC_NUMBERS
        .iter()
        .map(|m| json!({"msisdn": m.msisdn, "result_code": m.result_code, "behaviour": m.behaviour}))
        .collect();
    Json(rows)
}
