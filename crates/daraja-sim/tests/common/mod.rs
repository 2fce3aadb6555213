//! Helpers for the simulator's tests: a callback receiver, a daraja client wired to the
//! simulator, and a bounded wait for conditions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use daraja::{
    AccountReference, Amount, CallbackUrl, Client, Credentials, Environment, Merchant, Msisdn, Secret, ShortCode,
    StkPush, TransactionDesc,
};
use daraja_sim::{SimConfig, SimHandle};
use tokio::sync::mpsc;

/// A merchant's callback endpoint on 127.0.0.1:0 that records bodies and answers with
/// scripted statuses (200 once the script runs out).
pub struct Receiver {
    pub url: String,
    pub bodies: mpsc::UnboundedReceiver<Vec<u8>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

#[derive(Clone)]
struct ReceiverState {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let (tx, bodies) = mpsc::unbounded_channel();
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let state = ReceiverState { tx, statuses: statuses.clone() };
        let app = axum::Router::new().route("/callbacks/stk/{token}", axum::routing::post(receive)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/callbacks/stk/tok123", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, bodies, statuses }
    }

    /// The next statuses to answer with, in order.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend(statuses);
    }

    /// The next callback body, waiting at most 5 s.
    pub async fn next(&mut self) -> serde_json::Value {
        let body = tokio::time::timeout(Duration::from_secs(5), self.bodies.recv())
            .await
            .expect("no callback within 5 s")
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// The next callback's raw bytes.
    pub async fn next_raw(&mut self) -> Vec<u8> {
        tokio::time::timeout(Duration::from_secs(5), self.bodies.recv()).await.expect("no callback within 5 s").unwrap()
    }
}

async fn receive(State(state): State<ReceiverState>, body: Bytes) -> (StatusCode, &'static str) {
    state.tx.send(body.to_vec()).ok();
    let status = state.statuses.lock().unwrap().pop_front().unwrap_or(200);
    (StatusCode::from_u16(status).unwrap(), r#"{"ResultCode":0,"ResultDesc":"Accepted"}"#)
}

pub async fn sim(config: SimConfig) -> SimHandle {
    daraja_sim::spawn(config).await.unwrap()
}

pub fn client(sim: &SimHandle) -> Client {
    let env = Environment::Custom(url::Url::parse(sim.base_url()).unwrap());
    Client::builder(env, Credentials::new(sim.consumer_key(), sim.consumer_secret()).unwrap()).build().unwrap()
}

pub fn merchant(sim: &SimHandle) -> Merchant {
    Merchant::paybill(ShortCode::parse(&sim.shortcode().to_string()).unwrap(), Secret::new(sim.passkey()))
}

pub fn push(phone: &str, amount: u64, callback_url: &str) -> StkPush {
    StkPush {
        phone: Msisdn::parse(phone).unwrap(),
        amount: Amount::new(amount).unwrap(),
        account_reference: AccountReference::parse("TICKET-42").unwrap(),
        description: TransactionDesc::parse("Movie ticket").unwrap(),
        callback_url: CallbackUrl::parse(callback_url).unwrap(),
    }
}

/// Waits (at most 5 s) until `cond` holds, checking every 10 ms.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw OAuth token for requests built by hand.
pub async fn token(sim: &SimHandle) -> String {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/oauth/v1/generate?grant_type=client_credentials", sim.base_url()))
        .basic_auth(sim.consumer_key(), Some(sim.consumer_secret()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}
