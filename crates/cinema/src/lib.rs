//! The demo cinema shop: the movie-ticket booking example, built as a real merchant of Lipa.
//!
//! Movies with show times, prices and a seat limit; a ticket is created `pending` (its seats
//! reserved) before the customer is sent to Lipa's hosted checkout; Lipa's signed webhook marks
//! it `paid` with the M-Pesa receipt, or `failed` (seats released). The shop has its own SQLite
//! database and talks to Lipa only through the public API and webhooks.

pub mod db;
pub mod lipa;
mod pages;
mod posters;
pub mod refunds;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use db::Db;
pub use lipa::Lipa;

/// How the shop is set up.
#[derive(Clone)]
pub struct ShopConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The shop's own public base URL (for return links and its webhook), or `None` for
    /// `http://<bound address>`.
    pub public_url: Option<String>,
    /// Lipa's base URL.
    pub lipa_url: String,
    /// The shop's Lipa API key.
    pub api_key: String,
    /// The API key's webhook signing secret.
    pub webhook_secret: String,
    /// The shop's SQLite file.
    pub database: PathBuf,
    /// The shop's name.
    pub name: String,
}

impl std::fmt::Debug for ShopConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopConfig")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("lipa_url", &self.lipa_url)
            .field("database", &self.database)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// The database.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The address.
    #[error("could not listen on {0}: {1} (use --shop-port)")]
    Bind(SocketAddr, std::io::Error),
}

pub(crate) struct State {
    pub db: Db,
    pub lipa: Lipa,
    pub webhook_secret: String,
    pub public_url: String,
    pub name: String,
}

/// A bound shop, not yet serving.
#[derive(Debug)]
pub struct Shop {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<State>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("public_url", &self.public_url).finish_non_exhaustive()
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl Shop {
    /// Opens the database (seeding the programme the first time) and binds.
    pub async fn bind(config: ShopConfig) -> Result<Self, ShopError> {
        let db = Db::open(&config.database, now_ms())?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| ShopError::Bind(config.listen, e))?;
        let addr = listener.local_addr().map_err(|e| ShopError::Bind(config.listen, e))?;
        let public_url = config.public_url.unwrap_or_else(|| format!("http://{addr}"));
        let state = State {
            db,
            lipa: Lipa::new(&config.lipa_url, &config.api_key),
            webhook_secret: config.webhook_secret,
            public_url: public_url.trim_end_matches('/').to_owned(),
            name: config.name,
        };
        Ok(Self { listener, addr, state: Arc::new(state) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shop's database (tests add movies to it).
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// Serves until `shutdown` completes. Every minute, seats of bookings abandoned for over an
    /// hour (Lipa's checkout sessions last one) go back on sale.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let db = self.state.db.clone();
        let sweeper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                let now = now_ms();
                if let Err(e) = db.release_abandoned(now - 65 * 60_000, now).await {
                    tracing::warn!(error = %e, "could not release abandoned bookings");
                }
            }
        });
        let served = axum::serve(self.listener, pages::router(self.state)).with_graceful_shutdown(shutdown).await;
        sweeper.abort();
        served
    }
}
