//! A small WebDriver client (the W3C protocol is plain JSON over HTTP) driving Debian's
//! `chromium` through `chromedriver`, headless. Without chromedriver the browser suites are
//! skipped, or fail when `LIPA_REQUIRE_ALL=1` (CI).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    /// Ends the session first, so chromedriver closes Chromium: killed alone, it leaves the
    /// browser's processes running (a dozen per test).
    fn drop(&mut self) {
        end_session(&self.session);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `DELETE {session}` over a plain socket: `drop` cannot wait on the async client.
fn end_session(session: &str) {
    use std::io::{Read as _, Write as _};
    let Some((host, path)) = session.strip_prefix("http://").and_then(|rest| rest.split_once('/')) else {
        return;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_ok() {
        // The answer comes once the browser has quit.
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| PathBuf::from(dir).join(name)).find(|p| p.is_file())
}

impl Browser {
    /// A headless Chromium with a phone-sized window (390 × 844); `None` (test skipped) if there is none.
    pub async fn start(javascript: bool) -> Option<Self> {
        let (Some(driver), Some(chromium)) = (find_binary("chromedriver"), find_binary("chromium")) else {
            assert!(
                std::env::var("LIPA_REQUIRE_ALL").as_deref() != Ok("1"),
                "LIPA_REQUIRE_ALL=1 but chromium/chromedriver are not installed (apt-get install chromium chromium-driver)"
            );
            // Straight to stderr: the test harness captures eprintln!, and a skip must show.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: browser test needs chromium and chromedriver (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!("lipa-chromium-{}", lipa_gateway::ids::random_hex(6)));
        let mut prefs = json!({});
        if !javascript {
            prefs["profile.managed_default_content_settings.javascript"] = 2.into();
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--window-size=390,844",
                         format!("--user-data-dir={}", profile.display())],
                "prefs": prefs
            }
        }}});
        let created: Value =
            http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
        let browser = Self { http, session: format!("{base}/session/{id}"), driver: child, profile };
        // Chromium widens a window narrower than 500 px given on its command line; resized
        // afterwards, it keeps a phone's width.
        browser.resize(390, 844).await;
        Some(browser)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    async fn element(&self, css: &str) -> Option<String> {
        let v =
            self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        v[ELEMENT].as_str().map(str::to_owned)
    }

    async fn must(&self, css: &str) -> String {
        match self.element(css).await {
            Some(e) => e,
            None => panic!("no element {css:?} on {}:\n{}", self.current_url().await, self.page_text().await),
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.must(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/clear"), Some(json!({}))).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/value"), Some(json!({"text": text}))).await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.must(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{e}/click"), Some(json!({}))).await;
    }

    /// Clicks `css` and waits (up to `secs`) until the browser has left the page it was on
    /// (that page's elements are stale): a form post's answer has loaded, not just a script's
    /// rewrite of the old page.
    pub async fn click_and_wait_for_next_page(&self, css: &str, secs: u64) {
        let old = self.must("html").await;
        self.click(css).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while self.call(reqwest::Method::GET, &format!("/element/{old}/name"), None).await["error"].is_null() {
            assert!(std::time::Instant::now() < deadline, "no new page after clicking {css:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to `secs`) until the current URL contains `part`.
    pub async fn wait_for_url(&self, part: &str, secs: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let url = self.current_url().await;
            if url.contains(part) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the URL never contained {part:?}: {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let e = self.must(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{e}/attribute/{name}"), None)
            .await
            .as_str()
            .map(str::to_owned)
    }

    pub async fn text_of(&self, css: &str) -> String {
        let e = self.must(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn page_text(&self) -> String {
        // A page that reloads itself between finding its body and reading it leaves a stale
        // element: read the new page's body then.
        for _ in 0..5 {
            let Some(e) = self.element("body").await else { return String::new() };
            if let Some(text) = self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None).await.as_str() {
                return text.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        String::new()
    }

    /// Waits (up to `secs`) until the page's text contains `needle`, without reloading it.
    pub async fn wait_for_text(&self, needle: &str, secs: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let text = self.page_text().await;
            if text.contains(needle) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{needle:?} did not appear; the page says:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn execute(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Whether the element is shown (not `display: none`, not hidden).
    pub async fn displayed(&self, css: &str) -> bool {
        let e = self.must(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{e}/displayed"), None).await.as_bool().unwrap_or(false)
    }

    /// Resizes the window, e.g. to a desktop's width for screenshots.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// Saves the page as `docs/screenshots/{name}.png` (phone, 390 px) and
    /// `{name}-desktop.png` (1280 px) when `LIPA_SCREENSHOTS=1`.
    pub async fn screenshot(&self, name: &str) {
        if std::env::var("LIPA_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let width = self.execute("return window.innerWidth;").await;
        assert!(width.as_u64().is_some_and(|w| w <= 390), "a phone-sized page, not {width}");
        self.save_png(name).await;
        self.resize(1280, 900).await;
        self.save_png(&format!("{name}-desktop")).await;
        self.resize(390, 844).await;
    }

    async fn save_png(&self, name: &str) {
        use base64::Engine as _;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}
