//! The world for shop tests: the Daraja simulator, a Lipa gateway with its webhook worker, and
//! the shop, each on 127.0.0.1:0, talking real HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cinema::{Shop, ShopConfig};
use daraja_sim::{SimConfig, SimHandle};
use lipa_gateway::config::{DarajaConnection, Settings};
use lipa_gateway::startup::Application;

pub struct World {
    pub sim: SimHandle,
    pub lipa: String,
    pub key: String,
    pub secret: String,
    pub shop: String,
    pub db: cinema::Db,
    pub http: reqwest::Client,
    dir: std::path::PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn world(sim_config: SimConfig) -> World {
    let dir = std::env::temp_dir().join(format!("cinema-test-{}", lipa_gateway::ids::random_hex(6)));
    std::fs::create_dir_all(&dir).unwrap();
    let sim = daraja_sim::spawn(sim_config).await.unwrap();
    let connection = DarajaConnection::custom(
        sim.base_url(),
        sim.consumer_key(),
        sim.consumer_secret(),
        sim.shortcode(),
        sim.passkey(),
    )
    .unwrap();
    let who = sim.sim().config().initiators[0].clone();
    let connection =
        connection.with_initiator_from(&who.name, &who.password, daraja_sim::CERTIFICATE_PEM.as_bytes()).unwrap();
    let mut settings = Settings::load(None, &|_| None).unwrap();
    settings.listen = "127.0.0.1:0".parse().unwrap();
    settings.database_url = format!("sqlite:{}", dir.join("lipa.db").display());
    settings.business_name = "Lipa Cinema".into();
    // The shop's webhook endpoint listens on loopback beside the gateway.
    settings.webhooks.allow_private = true;
    let app = Application::build(settings, connection, Arc::new(daraja::SystemClock)).await.unwrap();
    let lipa = format!("http://{}", app.addr());
    let gateway = app.gateway().clone();
    let (key_row, key) = lipa_gateway::keys::create(gateway.store(), "cinema", gateway.now()).await.unwrap();
    let secret = lipa_gateway::keys::webhook_secret(gateway.store(), &key_row).await.unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    std::mem::forget(_stop);
    tokio::spawn(lipa_gateway::webhooks::run(gateway.clone(), stopped));
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let shop = Shop::bind(ShopConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: None,
        lipa_url: lipa.clone(),
        api_key: key.clone(),
        webhook_secret: secret.clone(),
        database: dir.join("cinema.db"),
        name: "Lipa Cinema".into(),
    })
    .await
    .unwrap();
    let shop_url = format!("http://{}", shop.addr());
    let db = shop.db().clone();
    tokio::spawn(shop.run_until_stopped(std::future::pending()));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    World { sim, lipa, key, secret, shop: shop_url, db, http, dir }
}

impl World {
    /// Books; returns the HTTP status and the Location header.
    pub async fn book(&self, movie: i64, phone: &str, quantity: u32) -> (u16, Option<String>) {
        let r = self
            .http
            .post(format!("{}/movies/{movie}", self.shop))
            .form(&[("name", "Wanjiku"), ("phone", phone), ("quantity", &quantity.to_string())])
            .send()
            .await
            .unwrap();
        let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), location)
    }

    /// The ticket page a checkout session returns to.
    pub async fn ticket_url(&self, checkout_url: &str) -> String {
        let session_id = checkout_url.rsplit('/').next().unwrap();
        let session: serde_json::Value = self
            .http
            .get(format!("{}/v1/checkout-sessions/{session_id}", self.lipa))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        session["success_url"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, url: &str) -> String {
        self.http.get(url).send().await.unwrap().text().await.unwrap()
    }

    /// Waits (10 s at most) until the page at `url` contains `needle`.
    pub async fn wait_for(&self, url: &str, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let html = self.get(url).await;
            if html.contains(needle) {
                return html;
            }
            assert!(std::time::Instant::now() < deadline, "{needle:?} never appeared on {url}:\n{html}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Submits the phone on Lipa's checkout page.
    pub async fn pay(&self, checkout_url: &str, phone: &str) {
        let r = self.http.post(checkout_url).form(&[("phone", phone)]).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "{}", r.text().await.unwrap());
    }
}
