//! The admin dashboard over HTTP: sessions, CSRF, roles, throttling, expiry, the pages'
//! contents, resolving a review item, CSV export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, spawn_app_with};
use daraja_sim::SimConfig;
use lipa_gateway::admin::auth::create_user;
use lipa_gateway::store::admin::Role;

const PASSWORD: &str = "correct horse battery";

struct Admin {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn app() -> TestApp {
    let app = spawn_app_with(SimConfig::default(), |_| {}).await;
    let now = app.gateway.now();
    create_user(app.gateway.store(), "amina", PASSWORD, Role::Admin, now).await.unwrap();
    create_user(app.gateway.store(), "otieno", PASSWORD, Role::Viewer, now).await.unwrap();
    app
}

/// The sign-in form as a browser gets it: its token, and the cookie that must come back with it.
async fn login_form(app: &TestApp) -> (String, String) {
    let r = client().get(format!("{}/admin/login", app.base)).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = r.text().await.unwrap();
    let token = html.split("name=\"form_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    (cookie, token)
}

async fn login(app: &TestApp, name: &str, password: &str) -> (u16, Option<Admin>) {
    let r = post_login(app, name, password).await;
    let http = client();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("lipa_admin="));
    let admin = cookie.filter(|_| status == 303).map(|c| Admin {
        http,
        base: app.base.clone(),
        cookie: c.split(';').next().unwrap().to_owned(),
    });
    (status, admin)
}

/// Sends the sign-in form, from a browser that loaded it first.
async fn post_login(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    let (cookie, token) = login_form(app).await;
    client()
        .post(format!("{}/admin/login", app.base))
        .header("Cookie", cookie)
        .form(&[("name", name), ("password", password), ("form_token", &token)])
        .send()
        .await
        .unwrap()
}

impl Admin {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(format!("{}{path}", self.base)).header("Cookie", &self.cookie).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn csrf(&self) -> String {
        let (_, html) = self.get("/admin").await;
        html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

#[tokio::test]
async fn nothing_is_shown_or_done_without_a_session() {
    let app = app().await;
    let http = client();
    for path in ["/admin", "/admin/payments", "/admin/review", "/admin/keys", "/admin/settings", "/admin/payments.csv"]
    {
        let r = http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/admin/login");
    }
    let forged = format!("{}={}", lipa_gateway::admin::auth::COOKIE, "a".repeat(64));
    let r = http.get(format!("{}/admin", app.base)).header("Cookie", forged).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "an unknown session is no session");
    let r = http.post(format!("{}/admin/keys", app.base)).form(&[("name", "x")]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(app.gateway.store().api_keys().await.unwrap().len() == 1, "no key was created");
}

#[tokio::test]
async fn signing_in_sets_a_strict_session_cookie_and_wrong_passwords_are_refused() {
    let app = app().await;
    assert_eq!(login(&app, "amina", "wrong password!").await.0, 401);
    assert_eq!(login(&app, "nobody", PASSWORD).await.0, 401);
    let refused = post_login(&app, "amina", "wrong again!").await.text().await.unwrap();
    assert!(refused.contains("value=\"amina\""), "the user name is kept after a wrong password: {refused}");
    let r = post_login(&app, "amina", PASSWORD).await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let (_, admin) = login(&app, "amina", PASSWORD).await;
    let (status, html) = admin.unwrap().get("/admin").await;
    assert_eq!(status, 200);
    assert!(html.contains("Overview") && html.contains("amina"));
    let log = app.gateway.store().audit_log(None, 10).await.unwrap();
    assert!(log.iter().any(|a| a.action == "login_failed" && a.actor == "amina"));
    assert!(log.iter().any(|a| a.action == "login" && a.actor == "amina"));
}

#[tokio::test]
async fn repeated_failures_throttle_the_user_even_with_the_right_password() {
    let app = app().await;
    for _ in 0..5 {
        assert_eq!(login(&app, "amina", "not the password").await.0, 401);
    }
    assert_eq!(login(&app, "amina", PASSWORD).await.0, 429);
    assert_eq!(login(&app, "otieno", PASSWORD).await.0, 303, "other users are not locked out");
}

/// The dashboard's answers are never sniffed as another type and leak no address in `Referer`;
/// a new webhook secret is shown in the answer to the form, never carried in a cookie.
#[tokio::test]
async fn dashboard_answers_carry_hardening_headers_and_secrets_no_cookie() {
    let app = app().await;
    let (_, admin) = login(&app, "amina", PASSWORD).await;
    let admin = admin.unwrap();
    for path in ["/admin/login", "/admin", "/admin/keys", "/assets/admin.css"] {
        let r = admin.http.get(format!("{}{path}", app.base)).header("Cookie", &admin.cookie).send().await.unwrap();
        assert_eq!(r.headers().get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
        assert!(r.headers().contains_key("referrer-policy"), "{path}");
    }
    let key_id = app.gateway.store().api_keys().await.unwrap()[0].id.clone();
    let csrf = admin.csrf().await;
    let r = admin
        .http
        .post(format!("{}/admin/keys/{key_id}/rotate", app.base))
        .header("Cookie", &admin.cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(cookies.iter().all(|c| !c.contains("whsec_")), "{cookies:?}");
    let page = r.text().await.unwrap();
    let secret = page.split("whsec_").nth(1).map(|rest| format!("whsec_{}", &rest[..48])).unwrap();
    assert_eq!(app.gateway.store().webhook_secret(&key_id).await.unwrap().as_deref(), Some(secret.as_str()));
}

/// Login CSRF: a form posted from another site carries no token of this site's cookie, so
/// it cannot sign a visitor in to an account of the attacker's choosing.
#[tokio::test]
async fn the_sign_in_form_needs_its_own_token() {
    let app = app().await;
    let form = [("name", "amina"), ("password", PASSWORD)];
    let bare = client().post(format!("{}/admin/login", app.base)).form(&form).send().await.unwrap();
    assert_eq!(bare.status().as_u16(), 403);
    let (cookie, token) = login_form(&app).await;
    let wrong = client()
        .post(format!("{}/admin/login", app.base))
        .header("Cookie", &cookie)
        .form(&[("name", "amina"), ("password", PASSWORD), ("form_token", &"0".repeat(32))])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 403);
    let without_cookie = client()
        .post(format!("{}/admin/login", app.base))
        .form(&[("name", "amina"), ("password", PASSWORD), ("form_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(without_cookie.status().as_u16(), 403);
    assert!(without_cookie.text().await.unwrap().contains("expired"));
    assert_eq!(login(&app, "amina", PASSWORD).await.0, 303);
}

/// Attempts are reserved before their password is checked: many wrong passwords sent at once
/// try at most the limit, for the user and for the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_attempts_cannot_pass_the_limit_together() {
    let app = app().await;
    let forms: Vec<_> = futures_util::future::join_all((0..12).map(|_| login_form(&app))).await;
    let attempts = forms.into_iter().map(|(cookie, token)| {
        let url = format!("{}/admin/login", app.base);
        async move {
            let r = client()
                .post(url)
                .header("Cookie", cookie)
                .form(&[("name", "amina"), ("password", "not the password"), ("form_token", &token)])
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let tried = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(tried, 5, "passwords tried: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 7, "{statuses:?}");
    let failed = app.gateway.store().audit_log(None, 100).await.unwrap();
    assert_eq!(failed.iter().filter(|a| a.action == "login_failed").count(), 5, "throttled attempts are not logged");
}

/// The throttle lives in the store: a restart (or another replica) does not reset it.
#[tokio::test]
async fn the_throttle_is_shared_through_the_store() {
    let app = app().await;
    for _ in 0..5 {
        assert_eq!(login(&app, "amina", "not the password").await.0, 401);
    }
    // What a second process on the same database sees: a throttle of its own, the same store.
    let other = lipa_gateway::admin::auth::Throttle::default();
    let address = lipa_gateway::admin::auth::address_key("127.0.0.1".parse().unwrap());
    let now = app.gateway.now();
    assert!(!other.reserve(app.gateway.store(), Some("amina"), &address, now).await.unwrap());
    assert!(other.reserve(app.gateway.store(), Some("otieno"), &address, now).await.unwrap());
    // Failures from one address do not lock the user out for the others.
    let elsewhere = lipa_gateway::admin::auth::address_key("203.0.113.9".parse().unwrap());
    assert!(other.reserve(app.gateway.store(), Some("amina"), &elsewhere, now).await.unwrap());
    // The window ends.
    let later = now + lipa_gateway::admin::auth::THROTTLE_WINDOW_MS + 1;
    assert!(other.reserve(app.gateway.store(), Some("amina"), &address, later).await.unwrap());
}

/// From an address that is already throttled, long distinct user names cost nothing: no row
/// for any of them, no audit line, nothing kept in memory per name.
#[tokio::test]
async fn a_throttled_address_sending_long_distinct_names_leaves_nothing_behind() {
    let app = app().await;
    for i in 0..20 {
        let name = format!("nobody{i}");
        assert_eq!(login(&app, &name, "not the password").await.0, 401);
    }
    let rows = |app: &TestApp| {
        let store = app.gateway.store().clone();
        async move {
            let rows = store.query("SELECT COUNT(*) FROM login_attempts", vec![]).await.unwrap();
            rows[0][0].int()
        }
    };
    let audit = |app: &TestApp| {
        let store = app.gateway.store().clone();
        async move { store.audit_log(None, 1000).await.unwrap().len() }
    };
    let (rows_before, audit_before) = (rows(&app).await, audit(&app).await);
    for i in 0..50 {
        let name = format!("{i}{}", "x".repeat(3_000));
        let r = post_login(&app, &name, "p").await;
        assert_eq!(r.status().as_u16(), 429);
    }
    assert_eq!(rows(&app).await, rows_before, "rows of login_attempts");
    assert_eq!(audit(&app).await, audit_before, "audit lines");
    // A name against the rule is refused without a password check or a name in the audit log.
    let long = "y".repeat(60_000);
    let r = post_login(&app, &long, "p").await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let log = app.gateway.store().audit_log(None, 1000).await.unwrap();
    assert!(log.iter().all(|a| a.actor.len() <= 40), "an audit actor longer than a user name");
}

#[tokio::test]
async fn sessions_end_after_idling_and_on_sign_out() {
    let app = app().await;
    let admin = login(&app, "amina", PASSWORD).await.1.unwrap();
    app.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(admin.get("/admin").await.0, 200);
    app.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(admin.get("/admin").await.0, 303, "idle for 31 minutes");

    let admin = login(&app, "amina", PASSWORD).await.1.unwrap();
    let csrf = admin.csrf().await;
    assert_eq!(admin.post("/admin/logout", &[("csrf", &csrf)]).await.0, 303);
    assert_eq!(admin.get("/admin").await.0, 303);
}

#[tokio::test]
async fn actions_need_the_csrf_token_and_an_admin() {
    let app = app().await;
    let admin = login(&app, "amina", PASSWORD).await.1.unwrap();
    assert_eq!(admin.post("/admin/keys", &[("name", "pos")]).await.0, 403, "no token");
    assert_eq!(admin.post("/admin/keys", &[("name", "pos"), ("csrf", "0123")]).await.0, 403, "wrong token");
    let csrf = admin.csrf().await;
    let (status, html) = admin.post("/admin/keys", &[("name", "pos"), ("csrf", &csrf)]).await;
    assert_eq!(status, 200);
    assert!(html.contains("lipa_sk_") && html.contains("whsec_"), "shown once");

    let (_, keys) = admin.get("/admin/keys").await;
    assert!(keys.contains("never"), "the new key was never used");
    app.create("0712345678", 45).await;
    // The key's last use is written in the background.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, keys) = admin.get("/admin/keys").await;
        if keys.contains("EAT</td><td>live") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the test key's last use is shown: {keys}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let viewer = login(&app, "otieno", PASSWORD).await.1.unwrap();
    let (_, keys) = viewer.get("/admin/keys").await;
    assert!(!keys.contains("Create key"), "a viewer sees no actions");
    let viewer_csrf = viewer.csrf().await;
    let (status, body) = viewer.post("/admin/keys", &[("name", "sneaky"), ("csrf", &viewer_csrf)]).await;
    assert_eq!(status, 403);
    assert!(body.contains("view but not change"));
    let names: Vec<String> = app.gateway.store().api_keys().await.unwrap().into_iter().map(|k| k.name).collect();
    assert!(names.contains(&"pos".to_owned()) && !names.contains(&"sneaky".to_owned()), "{names:?}");
}

#[tokio::test]
async fn a_payment_is_found_by_the_phone_as_typed_and_its_review_flag_resolved_with_a_note() {
    let app = app().await;
    let created = app.create("0712345678", 45).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.settled(&id).await;
    // A second callback for the payment with another amount: stored and flagged, not applied.
    let checkout = created["checkout_request_id"].as_str().unwrap();
    let url = app.sim.sim().transaction(checkout).unwrap().callback_url;
    let forged = serde_json::json!({"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":checkout,"ResultCode":0,"ResultDesc":"ok",
        "CallbackMetadata":{"Item":[{"Name":"Amount","Value":4500},{"Name":"MpesaReceiptNumber","Value":"UZZZZZZZZZ"},{"Name":"TransactionDate","Value":20261130120000_u64},{"Name":"PhoneNumber","Value":254712345678_u64}]}}}});
    app.http.post(&url).json(&forged).send().await.unwrap();
    assert_eq!(app.payment(&id).await["needs_review"], true);

    let admin = login(&app, "amina", PASSWORD).await.1.unwrap();
    let (_, list) = admin.get("/admin/payments?q=0712+345+678").await;
    assert!(list.contains(&format!("/admin/payments/{id}")), "{list}");
    let (_, none) = admin.get("/admin/payments?q=0799+999+999").await;
    assert!(none.contains("No payments match"));
    // Receipts, references and ids are found however they are typed.
    let receipt = app.payment(&id).await["receipt"].as_str().unwrap().to_owned();
    for typed in [receipt.to_lowercase(), "ticket-42".to_owned(), " Ticket-42 ".to_owned(), id.to_uppercase()] {
        let (_, found) = admin.get(&format!("/admin/payments?q={}", typed.replace(' ', "+"))).await;
        assert!(found.contains(&format!("/admin/payments/{id}")), "{typed}: {found}");
    }
    let (_, review) = admin.get("/admin/review").await;
    assert!(review.contains(&format!("/admin/payments/{id}")));
    let (_, detail) = admin.get(&format!("/admin/payments/{id}")).await;
    assert!(detail.contains("mismatch") && detail.contains("UZZZZZZZZZ"), "the raw callback is shown");
    // The timeline in words, to the second, its JSON behind a click.
    assert!(
        detail.contains("<strong>Daraja&#39;s callback applied</strong>")
            || detail.contains("<strong>Daraja's callback applied</strong>"),
        "{detail}"
    );
    assert!(
        regex::Regex::new(r"<time>\d{1,2} \w{3} \d{4}, \d\d:\d\d:\d\d EAT</time>").unwrap().is_match(&detail),
        "{detail}"
    );
    assert!(detail.contains("<summary>Details</summary>"));

    let csrf = admin.csrf().await;
    let (status, _) = admin.post(&format!("/admin/payments/{id}/resolve"), &[("csrf", &csrf), ("note", "")]).await;
    assert_eq!(status, 303);
    assert_eq!(app.payment(&id).await["needs_review"], true, "a note is required");
    admin
        .post(&format!("/admin/payments/{id}/resolve"), &[("csrf", &csrf), ("note", "forged amount; kept KES 45")])
        .await;
    assert_eq!(app.payment(&id).await["needs_review"], false);
    assert!(app.timeline(&id).await.contains(&"review_resolved".to_owned()));
    let (_, review) = admin.get("/admin/review").await;
    assert!(!review.contains(&format!("/admin/payments/{id}")));
    let log = app.gateway.store().audit_log(Some(&id), 10).await.unwrap();
    assert_eq!(log[0].action, "resolve_review");
    assert_eq!(log[0].detail, "forged amount; kept KES 45");
}

#[tokio::test]
async fn the_csv_export_holds_the_filtered_payments() {
    let app = app().await;
    for phone in ["0712345601", "0712345602", "0700001032"] {
        let p = app.create(phone, 45).await;
        app.settled(p["id"].as_str().unwrap()).await;
    }
    let admin = login(&app, "amina", PASSWORD).await.1.unwrap();
    let (status, csv) = admin.get("/admin/payments.csv").await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("id,created_at,status,amount"));
    // Nairobi time with its offset, and the phone as the customer writes it.
    assert!(lines[1].contains("+03:00,"), "{csv}");
    assert!(csv.contains("\"0712 345 601\""), "{csv}");
    let (_, paid) = admin.get("/admin/payments.csv?status=paid").await;
    assert_eq!(paid.lines().count(), 3);
    let (_, overview) = admin.get("/admin").await;
    assert!(overview.contains("0 payments"), "the rollups are not computed yet: {overview}");
    lipa_gateway::admin::rollups::fill(&app.gateway).await.unwrap();
    let (_, overview) = admin.get("/admin").await;
    assert!(overview.contains("3 payments"), "{overview}");
    assert!(overview.contains("<svg"));
}

#[tokio::test]
async fn the_settings_page_shows_findings_and_no_secrets() {
    let app = spawn_app_with(SimConfig::default(), |s| {
        s.mail.smtp_url = Some("smtp://mailer:smtp-pw-2718@mail.example:587".into());
    })
    .await;
    create_user(app.gateway.store(), "amina", PASSWORD, Role::Admin, app.gateway.now()).await.unwrap();
    let admin = login(&app, "amina", PASSWORD).await.1.unwrap();
    let (status, html) = admin.get("/admin/settings").await;
    assert_eq!(status, 200);
    assert!(html.contains("MAIL_FROM"), "the check's finding is shown: {html}");
    assert!(!html.contains("smtp-pw-2718"));
    assert!(html.contains("<table") && html.contains("DATABASE_URL"), "a table of settings: {html}");
    assert!(!html.contains("Settings {"), "not a Debug dump: {html}");
}

/// Webhook URLs carry tokens (in their user info, their query, their fragment): wherever the
/// gateway shows one (the settings page, the payment's page, the API), the one redaction rule
/// hides them.
#[tokio::test]
async fn webhook_urls_are_shown_without_their_tokens() {
    let app = spawn_app_with(SimConfig::default(), |s| {
        s.webhooks.default_url = Some("https://hooks:hook-pw-1618@shop.example/lipa?token=tok-3141#sig-2718".into());
    })
    .await;
    create_user(app.gateway.store(), "amina", PASSWORD, Role::Admin, app.gateway.now()).await.unwrap();
    let mut body = common::payment_body("0712345678", 45);
    body["webhook_url"] = "https://user:pay-pw-1414@merchant.example/hook?key=key-1732".into();
    let (status, created) = app.post_payment(&body, None).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    app.settled(&id).await;
    lipa_gateway::webhooks::step(&app.gateway, 10).await.unwrap();

    let admin = login(&app, "amina", PASSWORD).await.1.unwrap();
    let mut shown = vec![created.to_string()];
    for path in ["/admin/settings".to_owned(), format!("/admin/payments/{id}")] {
        let (status, html) = admin.get(&path).await;
        assert_eq!(status, 200, "{path}");
        shown.push(html);
    }
    for path in [format!("/v1/payments/{id}"), format!("/v1/payments/{id}/webhooks")] {
        shown.push(app.get(&path).await.1.to_string());
    }
    let events = app.get(&format!("/v1/payments/{id}/webhooks")).await.1;
    assert!(
        events["events"][0]["attempts"][0]["url"].as_str().unwrap().starts_with("https://***@merchant.example/hook")
    );
    for text in &shown {
        for secret in ["hook-pw-1618", "tok-3141", "sig-2718", "pay-pw-1414", "key-1732"] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }
}

#[tokio::test]
async fn an_unmatched_paybill_payment_is_assigned_or_marked_refunded_by_an_admin_with_an_audit_line() {
    let app = app().await;
    let created = app.create("254700001037", 60).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(app.settled(&id).await["status"], "failed");
    let pay = |account: &str| daraja_sim::ManualPayment {
        shortcode: app.sim.shortcode(),
        account: account.into(),
        amount: 60,
        phone: "0712345678".into(),
        pin: None,
        faults: None,
    };
    let mistyped = app.sim.sim().c2b_pay(pay("WRONG12")).await.unwrap().trans_id;
    let stranger = app.sim.sim().c2b_pay(pay("")).await;
    assert!(stranger.is_err(), "a paybill needs an account number");
    let stranger = app.sim.sim().c2b_pay(pay("NOBODY9")).await.unwrap().trans_id;

    let admin = login(&app, "amina", PASSWORD).await.1.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let listed = loop {
        let (_, page) = admin.get("/admin/c2b?status=unmatched").await;
        if page.contains(&mistyped) && page.contains(&stranger) {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(listed.contains("WRONG12") && listed.contains("Assign"), "{listed}");

    let viewer = login(&app, "otieno", PASSWORD).await.1.unwrap();
    let (_, viewed) = viewer.get("/admin/c2b?status=unmatched").await;
    assert!(!viewed.contains("Assign"), "a viewer sees no actions");
    let viewer_csrf = viewer.csrf().await;
    let path = format!("/admin/c2b/{mistyped}/assign");
    let (status, _) = viewer.post(&path, &[("csrf", &viewer_csrf), ("payment_id", &id), ("note", "x")]).await;
    assert_eq!(status, 403);

    let csrf = admin.csrf().await;
    let (status, _) = admin.post(&path, &[("csrf", &csrf), ("payment_id", &id), ("note", "")]).await;
    assert_eq!(status, 303);
    assert_eq!(app.payment(&id).await["status"], "failed", "a reason is required");
    admin.post(&path, &[("csrf", &csrf), ("payment_id", &id), ("note", "customer typed 2 for Z; phoned")]).await;
    let paid = app.payment(&id).await;
    assert_eq!((paid["status"].as_str(), paid["settled_by"].as_str()), (Some("paid"), Some("c2b")), "{paid}");
    assert_eq!(paid["receipt"], mistyped.as_str());
    assert!(app.timeline(&id).await.contains(&"assignment_applied".to_owned()));
    let log = app.gateway.store().audit_log(Some(&mistyped), 10).await.unwrap();
    assert_eq!((log[0].action.as_str(), log[0].actor.as_str()), ("assign_c2b", "amina"));

    // Assigned once: a second try says so, and a paid payment takes no more.
    let again = admin.post(&path, &[("csrf", &csrf), ("payment_id", &id), ("note", "again")]).await;
    assert_eq!(again.0, 303);
    let to_paid = format!("/admin/c2b/{stranger}/assign");
    admin.post(&to_paid, &[("csrf", &csrf), ("payment_id", &id), ("note", "wrong idea")]).await;
    assert_eq!(app.payment(&id).await["amount_received"], 60, "a paid payment took nothing more");

    let refunded = format!("/admin/c2b/{stranger}/refunded");
    admin.post(&refunded, &[("csrf", &csrf), ("note", "sent back by B2C from the portal")]).await;
    let (_, all) = admin.get("/admin/c2b?status=refunded_outside").await;
    assert!(all.contains(&stranger) && all.contains("sent back by B2C"), "{all}");
    let (_, left) = admin.get("/admin/c2b?status=unmatched").await;
    assert!(!left.contains(&stranger) && !left.contains(&mistyped), "{left}");
}

#[tokio::test]
async fn an_admin_refunds_a_payment_after_confirming_and_a_viewer_cannot() {
    let app = app().await;
    let p = app.create("0700000000", 45).await;
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(app.settled(&id).await["status"], "paid");
    let page = format!("/admin/payments/{id}");
    let action = format!("/admin/payments/{id}/refund");

    let viewer = login(&app, "otieno", PASSWORD).await.1.unwrap();
    let (_, viewed) = viewer.get(&page).await;
    assert!(!viewed.contains("Refund KES"), "a viewer sees no refund action");
    let viewer_csrf = viewer.csrf().await;
    let (status, _) = viewer.post(&action, &[("csrf", &viewer_csrf), ("note", "x"), ("confirm", "yes")]).await;
    assert_eq!(status, 403);

    let admin = login(&app, "amina", PASSWORD).await.1.unwrap();
    let (_, shown) = admin.get(&page).await;
    assert!(shown.contains("Refund KES 45"), "{shown}");
    let csrf = admin.csrf().await;
    let (status, confirm) = admin.post(&action, &[("csrf", &csrf), ("note", "Screening cancelled")]).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("Refund KES 45 to") && confirm.contains("cannot be undone"), "{confirm}");
    assert!(confirm.contains("name=\"confirm\" value=\"yes\""), "{confirm}");
    assert!(app.sim.sim().initiator_requests().is_empty(), "nothing sent before the confirmation");

    let (status, _) =
        admin.post(&action, &[("csrf", &csrf), ("note", "Screening cancelled"), ("confirm", "yes")]).await;
    assert_eq!(status, 303);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.payment(&id).await["refunded_amount"] != 45 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let refunds = app.payment(&id).await["refunds"].clone();
    assert_eq!(refunds[0]["requested_by"], "admin:amina");
    let log = app.gateway.store().audit_log(Some(&id), 10).await.unwrap();
    assert!(log.iter().any(|a| a.action == "refund" && a.actor == "amina" && a.detail.contains("Screening cancelled")));
    let (_, after) = admin.get(&page).await;
    assert!(after.contains("succeeded") && !after.contains("Refund KES 45\u{2026}"), "{after}");
    let (_, csv) = admin.get("/admin/payments.csv").await;
    assert!(csv.lines().next().unwrap().ends_with(",refunded_amount"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().ends_with(",45"), "{csv}");

    // The payment's receipt checked with M-PESA: asked, answered, listed.
    let receipt = app.payment(&id).await["receipt"].as_str().unwrap().to_owned();
    assert!(after.contains(&format!("Check receipt {receipt} with M-PESA")), "{after}");
    let (status, _) =
        admin.post(&format!("/admin/payments/{id}/check-receipt"), &[("csrf", &csrf), ("note", &receipt)]).await;
    assert_eq!(status, 303);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, page) = admin.get(&page).await;
        if page.contains("Daraja knows it") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let log = app.gateway.store().audit_log(Some(&id), 10).await.unwrap();
    assert!(log.iter().any(|a| a.action == "check_receipt" && a.detail.contains(&receipt)));

    // A second refund is refused with the reason.
    let (status, _) = admin.post(&action, &[("csrf", &csrf), ("note", "again"), ("confirm", "yes")]).await;
    assert_eq!(status, 303);
    assert_eq!(app.payment(&id).await["refunds"].as_array().unwrap().len(), 1);
}
