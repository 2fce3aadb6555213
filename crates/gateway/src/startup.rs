//! Building the application: open the store, bind the listener, wire the gateway. The result
//! has `port()` and `run_until_stopped(shutdown)`; tests bind port 0 and drive workers
//! themselves, `lipa serve` also starts the workers.

use std::future::Future;
use std::net::SocketAddr;

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
        let app = crate::api::router(self.gateway).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await
    }
}
