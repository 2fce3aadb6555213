//! The HTTP client: environment, credentials, transport, and the token-refresh-once rule.
//!
//! Every API call goes through [`Client::call`]: take a cached token, send, and if Daraja
//! answers `404.001.03 Invalid Access Token`, drop that token, fetch a new one and retry once.
//! Never more than once, so a persistent credential problem fails fast instead of looping.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tracing::Instrument as _;

use crate::error::{ApiError, ApiErrorKind, Error};
use crate::secret::Secret;
use crate::timestamp::{SharedClock, SystemClock};
use crate::token::{GrantedToken, TokenCache};
use crate::validation::InvalidField;

/// Which Daraja to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Environment {
    /// `https://sandbox.safaricom.co.ke`
    Sandbox,
    /// `https://api.safaricom.co.ke`
    Production,
    /// Any other base URL: a simulator, a test server, an egress proxy. Plain-http callback URLs
    /// are allowed here only.
    Custom(url::Url),
}

impl Environment {
    /// The base URL API paths are appended to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        match self {
            Self::Sandbox => "https://sandbox.safaricom.co.ke",
            Self::Production => "https://api.safaricom.co.ke",
            Self::Custom(url) => url.as_str().trim_end_matches('/'),
        }
    }

    /// Whether Safaricom requires https callback URLs here.
    pub fn requires_https_callbacks(&self) -> bool {
        !matches!(self, Self::Custom(_))
    }
}

/// The consumer key and secret of a Daraja app. Both are secrets.
#[derive(Clone)]
pub struct Credentials {
    consumer_key: Secret,
    consumer_secret: Secret,
}

impl Credentials {
    /// Both values are required; blank ones are refused rather than sent.
    pub fn new(consumer_key: impl Into<Secret>, consumer_secret: impl Into<Secret>) -> Result<Self, InvalidField> {
        let consumer_key = consumer_key.into();
        let consumer_secret = consumer_secret.into();
        if consumer_key.is_blank() {
            return Err(InvalidField::new("ConsumerKey", "is empty; copy it from your Daraja app's Keys page"));
        }
        if consumer_secret.is_blank() {
            return Err(InvalidField::new("ConsumerSecret", "is empty; copy it from your Daraja app's Keys page"));
        }
        Ok(Self { consumer_key, consumer_secret })
    }

    fn basic_auth(&self) -> Secret {
        let raw = format!("{}:{}", self.consumer_key.expose(), self.consumer_secret.expose());
        Secret::new(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { consumer_key: [redacted], consumer_secret: [redacted] }")
    }
}

/// How long an HTTP client should keep an idle connection for its next request. Shorter than
/// the keep-alive limit of common servers and proxies (5 s and up, the gateway's 10 s), so no
/// request is written into a connection the far end is closing at that moment: for a push,
/// such a failure leaves its outcome unknown. Every Lipa HTTP client uses it.
pub const IDLE_CONNECTION_KEPT: Duration = Duration::from_secs(4);

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    environment: Environment,
    credentials: Credentials,
    clock: SharedClock,
    connect_timeout: Duration,
    request_timeout: Duration,
    token_refresh_margin: Duration,
    user_agent: String,
}

impl ClientBuilder {
    /// Uses another clock (tests use a fixed one).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// TCP/TLS connect timeout (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whole-request timeout (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long before expiry a token is refreshed (default 5 min).
    pub fn token_refresh_margin(mut self, margin: Duration) -> Self {
        self.token_refresh_margin = margin;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Builds the client (rustls, no system proxy surprises).
    pub fn build(self) -> Result<Client, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(IDLE_CONNECTION_KEPT)
            .timeout(self.request_timeout)
            .user_agent(self.user_agent)
            .build()
            .map_err(|source| Error::Transport {
                operation: "build",
                may_have_reached_safaricom: false,
                timed_out: false,
                source,
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                base: self.environment.base_url().to_owned(),
                environment: self.environment,
                credentials: self.credentials,
                clock: self.clock,
                tokens: TokenCache::new(self.token_refresh_margin),
                http,
            }),
        })
    }
}

/// A Daraja client. Cheap to clone; clones share one token cache.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: String,
    environment: Environment,
    credentials: Credentials,
    clock: SharedClock,
    tokens: TokenCache,
}

/// A raw HTTP answer: status and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "requestId", default)]
    request_id: Option<String>,
    #[serde(rename = "errorCode")]
    error_code: String,
    #[serde(rename = "errorMessage", default)]
    error_message: String,
}

impl Answer {
    /// Daraja's error envelope in this answer, if it is one.
    pub(crate) fn envelope(&self, operation: &'static str) -> Option<ApiError> {
        let env: Envelope = serde_json::from_slice(&self.body).ok()?;
        Some(ApiError {
            operation,
            status: self.status,
            kind: ApiErrorKind::classify(&env.error_code, &env.error_message),
            request_id: env.request_id.unwrap_or_default(),
            code: env.error_code,
            message: env.error_message,
        })
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Client {
    /// Starts a builder. Credentials are required; nothing is defaulted.
    pub fn builder(environment: Environment, credentials: Credentials) -> ClientBuilder {
        ClientBuilder {
            environment,
            credentials,
            clock: Arc::new(SystemClock),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            token_refresh_margin: Duration::from_secs(300),
            user_agent: concat!("lipa-daraja/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The environment this client talks to.
    pub fn environment(&self) -> &Environment {
        &self.inner.environment
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// A valid access token, from the cache or a fresh OAuth call (one at a time).
    /// Useful to check credentials at start-up.
    pub async fn access_token(&self) -> Result<Secret, Error> {
        let now = self.inner.clock.now();
        self.inner.tokens.get(now, || self.fetch_token()).await
    }

    async fn fetch_token(&self) -> Result<GrantedToken, Error> {
        const OP: &str = "oauth";
        let url = self.url("oauth/v1/generate?grant_type=client_credentials");
        let request = self
            .inner
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, self.inner.credentials.basic_auth().expose());
        let answer = self.exchange(OP, request).instrument(tracing::debug_span!("daraja.oauth")).await?;
        if !answer.is_success() {
            return Err(answer
                .envelope(OP)
                .map_or_else(|| Error::decode(OP, answer.status, "not an error envelope", &answer.body), Error::Api));
        }
        // The body holds the access token: never copy it into an error.
        GrantedToken::parse(&answer.body)
            .map_err(|reason| Error::decode(OP, answer.status, reason, b"<OAuth answer withheld: it may hold a token>"))
    }

    /// POSTs `body` to `path` with a bearer token, refreshing the token and retrying once if
    /// Daraja says it is invalid.
    pub(crate) async fn call(&self, operation: &'static str, path: &str, body: Vec<u8>) -> Result<Answer, Error> {
        let token = self.access_token().await?;
        let answer = self.post(operation, path, &token, body.clone()).await?;
        let rejected =
            !answer.is_success() && answer.envelope(operation).is_some_and(|e| e.kind == ApiErrorKind::InvalidToken);
        if !rejected {
            return Ok(answer);
        }
        tracing::info!(operation, "Daraja rejected the access token; refreshing once and retrying");
        self.inner.tokens.invalidate(&token).await;
        let token = self.access_token().await?;
        self.post(operation, path, &token, body).await
    }

    async fn post(&self, operation: &'static str, path: &str, token: &Secret, body: Vec<u8>) -> Result<Answer, Error> {
        let request = self
            .inner
            .http
            .post(self.url(path))
            .bearer_auth(token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.exchange(operation, request).await
    }

    async fn exchange(&self, operation: &'static str, request: reqwest::RequestBuilder) -> Result<Answer, Error> {
        let transport = |source: reqwest::Error| Error::Transport {
            operation,
            may_have_reached_safaricom: !(source.is_connect() || source.is_builder()),
            timed_out: source.is_timeout(),
            source: source.without_url(),
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        // Daraja's answers are small; a body past this is read no further.
        const MAX_ANSWER: usize = 256 * 1024;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER - body.len())]);
            if body.len() >= MAX_ANSWER {
                break;
            }
        }
        tracing::debug!(operation, status, "Daraja answered");
        Ok(Answer { status, body })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.inner.base)
    }
}
