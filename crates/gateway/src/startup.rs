//! Building the application: open the store, bind the listener, wire the gateway. The result
//! has `port()` and `run_until_stopped(shutdown)`; tests bind port 0 and drive workers
//! themselves, `lipa serve` also starts the workers.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{DarajaConnection, Settings};
use crate::service::Gateway;
use crate::store::{Store, StoreError};

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source} (set LIPA_LISTEN or --listen to a free address)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Daraja client could not be built.
    #[error("could not set up the Daraja client: {0}")]
    Daraja(#[from] daraja::Error),
}

/// A bound, wired gateway, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    gateway: Gateway,
    addr: SocketAddr,
}

impl Application {
    /// Opens the store, binds `settings.listen`, and wires the gateway to Daraja.
    pub async fn build(
        settings: Settings,
        connection: DarajaConnection,
        clock: daraja::SharedClock,
    ) -> Result<Self, StartError> {
        let store = Store::open(&settings.database_url).await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| StartError::Bind { addr: settings.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: settings.listen, source })?;
        let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let gateway = Gateway::new(store, settings, connection, public_url, clock)?;
        gateway.load_c2b_path().await?;
        if gateway.settings().mpesa.environment == crate::config::MpesaEnvironment::Simulator {
            // The simulator forgets registrations when it stops: register at every start.
            if let Err(e) = gateway.register_c2b_urls().await {
                tracing::warn!(error = %e, "could not register the C2B URLs with the simulator");
            }
            let nominated = daraja::Msisdn::parse("0712345678").map_err(daraja::Error::from)?;
            if let Err(e) = gateway.register_pull(nominated).await {
                tracing::warn!(error = %e, "could not register for Pull Transactions with the simulator");
            }
        }
        Ok(Self { listener, gateway, addr })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gateway (for workers and tests).
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Serves until `shutdown` completes; in-flight requests (callbacks above all) finish first.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let limits = self.gateway.settings().header_timeout;
        // Behind a proxy every connection comes from the proxy: its own limits apply.
        let callbacks = &self.gateway.settings().callbacks;
        let per_peer = callbacks
            .trusted_proxy_header
            .is_none()
            .then(|| PerPeer { limit: MAX_PER_PEER, exempt: callbacks.allowlist.clone() });
        let gateway = self.gateway.clone();
        let shutdown = async move {
            shutdown.await;
            gateway.stop_streams();
        };
        let app =
            app(self.gateway).layer(axum::middleware::from_fn_with_state(limits.saturating_mul(6), request_deadline));
        serve(self.listener, app, limits, per_peer, shutdown).await;
        Ok(())
    }
}

/// What the handlers share, each part taken by those that need it (axum's `FromRef`): the
/// gateway by all, the sign-in throttle by the dashboard's sign-in alone.
#[derive(Debug, Clone)]
pub struct AppState {
    gateway: Gateway,
    sign_in: std::sync::Arc<crate::admin::auth::Throttle>,
}

impl axum::extract::FromRef<AppState> for Gateway {
    fn from_ref(state: &AppState) -> Self {
        state.gateway.clone()
    }
}

impl axum::extract::FromRef<AppState> for std::sync::Arc<crate::admin::auth::Throttle> {
    fn from_ref(state: &AppState) -> Self {
        state.sign_in.clone()
    }
}

/// Every route of the gateway: the API and callbacks, the checkout pages and the dashboard,
/// each request in its span, bodies no larger than the largest callback.
pub fn app(gateway: Gateway) -> axum::Router {
    let state = AppState { gateway, sign_in: std::sync::Arc::default() };
    crate::api::routes()
        .merge(crate::pages::router())
        .merge(crate::admin::router())
        .fallback(crate::api::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(daraja::callback::MAX_CALLBACK_BYTES))
        .layer(axum::middleware::from_fn(crate::api::request_span))
        .with_state(state)
}

/// Cuts a request whose handler (reading the body included) takes longer than `deadline`:
/// a client dripping its body cannot hold a connection. Response bodies (server-sent events,
/// CSV exports) stream after this and are not cut.
async fn request_deadline(
    axum::extract::State(deadline): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => crate::api::ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request was not received in time; send it again",
        )
        .into_response(),
    }
}

/// Connections served at once; further ones wait in the listen backlog until one closes, so a
/// flood of connections costs bounded memory.
pub const MAX_CONNECTIONS: usize = 2048;

/// Connections served at once from one address (an IPv6 /64), when clients connect directly:
/// further ones are closed at once, so one client cannot take every connection (Safaricom's
/// callbacks included) with event streams or idle connections. The callback allowlist's
/// addresses are exempt: a burst of Safaricom's callbacks is never cut.
pub const MAX_PER_PEER: usize = 256;

/// The share of connections one client may hold, and the addresses without a share.
struct PerPeer {
    limit: usize,
    exempt: Vec<std::net::IpAddr>,
}

impl PerPeer {
    fn limit_for(&self, peer: std::net::IpAddr) -> Option<usize> {
        (!self.exempt.contains(&peer.to_canonical())).then_some(self.limit)
    }
}

/// HTTP/1.1 over `listener` with the headers of every request due within `header_timeout`
/// (hyper closes the connection otherwise, idle keep-alive connections included), and the
/// client's address given to handlers as `ConnectInfo`; at most [`MAX_CONNECTIONS`] at once,
/// and `per_peer`'s share from one address. On `shutdown`, stops accepting and lets open connections
/// finish their requests.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    per_peer: Option<PerPeer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let peers = crate::tally::Tally::default();
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let limit = per_peer.as_ref().and_then(|p| p.limit_for(peer.ip()));
        let Some(peer_slot) = peers.take(crate::api::client_network(peer.ip()), limit) else {
            drop(stream);
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), request)
        });
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let _slots = (slot, peer_slot);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closed.wait_for(|closing| *closing) => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    let _ = closing.send(true);
    drop(closed);
    // Wait for the connections still open to finish their requests (each holds a receiver),
    // but not for ever: an event stream only ends when its payment does.
    let _ = tokio::time::timeout(Duration::from_secs(10), closing.closed()).await;
}
