//! A scriptable stand-in for Daraja on 127.0.0.1:0, for the client's tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use daraja::{Client, Clock, Credentials, Environment, Merchant, Secret, ShortCode};
use time::OffsetDateTime;

pub const PASSKEY: &str = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919";
pub const CONSUMER_SECRET: &str = "consumer-secret-value-42";

#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub authorization: String,
    pub content_type: String,
    pub body: serde_json::Value,
}

#[derive(Default)]
pub struct MockState {
    pub oauth_calls: AtomicUsize,
    /// When set, the OAuth answer body (status 200); otherwise a numbered token with `"3599"`.
    pub oauth_body: Mutex<Option<String>>,
    pub oauth_delay_ms: AtomicU64,
    /// HTTP status of OAuth answers; 0 means 200.
    pub oauth_status: AtomicU64,
    pub api_delay_ms: AtomicU64,
    pub calls: Mutex<Vec<Call>>,
    /// Answers for API calls, in order; when empty, `default_answer`.
    pub answers: Mutex<VecDeque<(u16, String)>>,
    pub default_answer: Mutex<Option<(u16, String)>>,
    /// Bearer tokens answered with 404.001.03.
    pub rejected_tokens: Mutex<Vec<String>>,
}

pub struct MockDaraja {
    pub url: String,
    pub state: Arc<MockState>,
}

impl MockDaraja {
    pub async fn start() -> Self {
        let state = Arc::new(MockState::default());
        let app = Router::new()
            .route("/oauth/v1/generate", axum::routing::get(oauth))
            .fallback(api)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    pub fn answer(&self, status: u16, body: impl Into<String>) {
        self.state.answers.lock().unwrap().push_back((status, body.into()));
    }

    pub fn default_answer(&self, status: u16, body: impl Into<String>) {
        *self.state.default_answer.lock().unwrap() = Some((status, body.into()));
    }

    pub fn envelope(&self, status: u16, code: &str, message: &str) {
        self.answer(status, envelope_json(code, message));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    pub fn oauth_calls(&self) -> usize {
        self.state.oauth_calls.load(Ordering::SeqCst)
    }

    pub fn client(&self) -> Client {
        self.client_with(|b| b)
    }

    pub fn client_with(&self, f: impl FnOnce(daraja::ClientBuilder) -> daraja::ClientBuilder) -> Client {
        let env = Environment::Custom(url::Url::parse(&self.url).unwrap());
        let builder = Client::builder(env, Credentials::new("consumer-key", CONSUMER_SECRET).unwrap());
        f(builder).build().unwrap()
    }
}

pub fn envelope_json(code: &str, message: &str) -> String {
    serde_json::json!({"requestId": "1234-5678-1", "errorCode": code, "errorMessage": message}).to_string()
}

pub fn sandbox_merchant() -> Merchant {
    Merchant::paybill(ShortCode::parse("174379").unwrap(), Secret::new(PASSKEY))
}

async fn oauth(State(state): State<Arc<MockState>>) -> impl IntoResponse {
    let n = state.oauth_calls.fetch_add(1, Ordering::SeqCst) + 1;
    let delay = state.oauth_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let body = state
        .oauth_body
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| format!(r#"{{"access_token":"token-{n}","expires_in":"3599"}}"#));
    let status = match state.oauth_status.load(Ordering::SeqCst) {
        0 => StatusCode::OK,
        s => StatusCode::from_u16(s as u16).unwrap(),
    };
    (status, [("content-type", "application/json")], body)
}

async fn api(State(state): State<Arc<MockState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let authorization = header("authorization");
    state.calls.lock().unwrap().push(Call {
        path: uri.path().to_owned(),
        authorization: authorization.clone(),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    let delay = state.api_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let token = authorization.strip_prefix("Bearer ").unwrap_or("").to_owned();
    let (status, body) = if state.rejected_tokens.lock().unwrap().contains(&token) {
        (404, envelope_json("404.001.03", "Invalid Access Token"))
    } else {
        let next = state.answers.lock().unwrap().pop_front();
        next.or_else(|| state.default_answer.lock().unwrap().clone()).unwrap_or((200, "{}".into()))
    };
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body)
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct TestClock(pub Mutex<OffsetDateTime>);

impl TestClock {
    pub fn at(t: OffsetDateTime) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t)))
    }
    pub fn advance(&self, secs: i64) {
        let mut t = self.0.lock().unwrap();
        *t += time::Duration::seconds(secs);
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}
