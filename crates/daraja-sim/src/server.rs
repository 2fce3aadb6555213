//! The HTTP server: Daraja's paths, the control API, the virtual phone, and a way to run it
//! in-process for tests ([`spawn`]) or as `lipa sim`.

use std::future::Future;
use std::net::SocketAddr;

use axum::response::{Html, IntoResponse};
use axum::routing::{any, get};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;

use crate::config::SimConfig;
use crate::envelope::DarajaError;
use crate::phone::escape;
use crate::rules::MAGIC_NUMBERS;
use crate::sim::Sim;
use crate::{c2b, control, phone, stk};

fn router(sim: Sim) -> axum::Router {
    axum::Router::new()
        .route("/oauth/v1/generate", any(stk::oauth))
        .route("/mpesa/stkpush/v1/processrequest", any(stk::push))
        .route("/mpesa/stkpushquery/v1/query", any(stk::query))
        .route("/", get(index))
        .merge(c2b::routes())
        .merge(crate::initiator::routes())
        .merge(control::routes())
        .merge(phone::routes())
        .fallback(|| async { DarajaError::not_found() })
        .with_state(sim)
}

async fn index(axum::extract::State(sim): axum::extract::State<Sim>) -> impl IntoResponse {
    let rows: String = MAGIC_NUMBERS
        .iter()
        .map(|m| format!("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", m.msisdn, m.result_code, escape(m.behaviour)))
        .collect();
    let shortcodes: String =
        sim.config().merchants.iter().map(|m| format!("<li>{} ({})</li>", m.shortcode, escape(&m.name))).collect();
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Daraja simulator</title>
<style>body{{font-family:system-ui,sans-serif;max-width:760px;margin:24px auto;padding:0 12px}}td,th{{padding:4px 10px;text-align:left}}</style></head>
<body><h1>Daraja simulator</h1><p><a href="/phone">Virtual phones</a></p>
<p>Daraja paths: <code>GET /oauth/v1/generate</code>, <code>POST /mpesa/stkpush/v1/processrequest</code>, <code>POST /mpesa/stkpushquery/v1/query</code>. Control API under <code>/sim/</code>.</p>
<h2>Shortcodes</h2><ul>{shortcodes}</ul><h2>Magic test numbers</h2><table><tr><th>Phone</th><th>Result</th><th>Behaviour</th></tr>{rows}</table></body></html>"#
    ))
}

/// A bound simulator, not yet serving.
#[derive(Debug)]
pub struct SimServer {
    sim: Sim,
    listener: TcpListener,
    addr: SocketAddr,
}

impl SimServer {
    /// Binds the listener (use port 0 in tests).
    pub async fn bind(config: SimConfig, addr: impl ToSocketAddrs) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { sim: Sim::new(config), listener, addr })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://<addr>`: the base URL to give a Daraja client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulator's state and control methods.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        axum::serve(self.listener, router(self.sim)).with_graceful_shutdown(shutdown).await
    }
}

/// A simulator running in the background on 127.0.0.1, stopped when the handle is dropped.
#[derive(Debug)]
pub struct SimHandle {
    sim: Sim,
    base_url: String,
    port: u16,
    stop: Option<oneshot::Sender<()>>,
}

/// Starts a simulator on 127.0.0.1 with a free port.
pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
    let server = SimServer::bind(config, "127.0.0.1:0").await?;
    let (stop, stopped) = oneshot::channel();
    let handle =
        SimHandle { sim: server.sim.clone(), base_url: server.base_url(), port: server.port(), stop: Some(stop) };
    tokio::spawn(async move {
        if let Err(e) = server.run_until_stopped(async { drop(stopped.await) }).await {
            tracing::error!(error = %e, "simulator stopped with an error");
        }
    });
    Ok(handle)
}

impl SimHandle {
    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// State and control: script outcomes, resolve prompts, read records.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The first app's consumer key.
    pub fn consumer_key(&self) -> &str {
        self.sim.config().primary_app().map_or("", |a| a.consumer_key.as_str())
    }

    /// The first app's consumer secret.
    pub fn consumer_secret(&self) -> &str {
        self.sim.config().primary_app().map_or("", |a| a.consumer_secret.as_str())
    }

    /// The first merchant's shortcode.
    pub fn shortcode(&self) -> u32 {
        self.sim.config().primary_merchant().map_or(0, |m| m.shortcode)
    }

    /// The first merchant's passkey.
    pub fn passkey(&self) -> &str {
        self.sim.config().primary_merchant().map_or("", |m| m.passkey.as_str())
    }

    /// The virtual phone page of a number.
    pub fn phone_url(&self, msisdn: u64) -> String {
        format!("{}/phone/{msisdn}", self.base_url)
    }

    /// Stops serving.
    pub fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
