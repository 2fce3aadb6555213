//! Receipt emails over real SMTP (a receiver on loopback): content, retries, and that the
//! payment never depends on them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::smtp::SmtpServer;
use common::{TestApp, spawn_app_with};
use daraja_sim::SimConfig;
use lipa_gateway::mail;

async fn app_with_mail(smtp: Option<&SmtpServer>) -> TestApp {
    let url = smtp.map(SmtpServer::url);
    spawn_app_with(SimConfig::default(), move |s| {
        s.mail.smtp_url = url;
        s.mail.from = Some("Lipa Cinema <tickets@cinema.test>".into());
        s.business_name = "Lipa Cinema".into();
    })
    .await
}

async fn paid_with_email(app: &TestApp, email: Option<&str>) -> serde_json::Value {
    let mut body = common::payment_body("0712345678", 1250);
    if let Some(email) = email {
        body["customer_email"] = email.into();
    }
    let (status, p) = app.post_payment(&body, None).await;
    assert_eq!(status, 201, "{p}");
    let p = app.settled(p["id"].as_str().unwrap()).await;
    assert_eq!(p["status"], "paid");
    p
}

async fn step(app: &TestApp) -> usize {
    mail::Worker::new(app.gateway.clone()).step(10).await.unwrap()
}

#[tokio::test]
async fn a_paid_payment_sends_the_customer_a_receipt_with_its_details() {
    let smtp = SmtpServer::start().await;
    let app = app_with_mail(Some(&smtp)).await;
    let p = paid_with_email(&app, Some("wanjiku@example.com")).await;
    assert_eq!(step(&app).await, 1);

    let got = smtp.messages();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.from, "<tickets@cinema.test>");
    assert_eq!(m.to, ["<wanjiku@example.com>"]);
    let receipt = p["receipt"].as_str().unwrap();
    for expected in
        ["Subject: Receipt: KES 1,250 paid to Lipa Cinema", receipt, "KES 1,250", "TICKET-42", "EAT", "text/html"]
    {
        assert!(m.data.contains(expected), "{expected:?} missing from:\n{}", m.data);
    }
    let id = p["id"].as_str().unwrap();
    assert!(app.timeline(id).await.contains(&"email_sent".to_owned()));
    assert_eq!(step(&app).await, 0, "sent once");
}

#[tokio::test]
async fn an_smtp_outage_is_retried_later_and_never_touches_the_payment() {
    let smtp = SmtpServer::start().await;
    smtp.set_down(true);
    let app = app_with_mail(Some(&smtp)).await;
    let p = paid_with_email(&app, Some("wanjiku@example.com")).await;
    let id = p["id"].as_str().unwrap();

    assert_eq!(step(&app).await, 1);
    assert!(smtp.messages().is_empty());
    assert!(app.timeline(id).await.contains(&"email_failed".to_owned()));
    assert_eq!(app.payment(id).await["status"], "paid", "the payment is unaffected");
    assert_eq!(step(&app).await, 0, "not retried before its backoff");

    smtp.set_down(false);
    app.clock.advance(Duration::from_secs(3600));
    assert_eq!(step(&app).await, 1);
    assert_eq!(smtp.messages().len(), 1);
    let timeline = app.timeline(id).await;
    assert!(timeline.contains(&"email_sent".to_owned()), "{timeline:?}");
}

#[tokio::test]
async fn an_email_that_cannot_be_sent_for_its_whole_max_age_is_given_up_visibly() {
    let smtp = SmtpServer::start().await;
    smtp.set_down(true);
    let app = app_with_mail(Some(&smtp)).await;
    let p = paid_with_email(&app, Some("wanjiku@example.com")).await;
    app.clock.advance(Duration::from_secs(73 * 3600));
    assert_eq!(step(&app).await, 1);
    assert!(app.timeline(p["id"].as_str().unwrap()).await.contains(&"email_dead".to_owned()));
    app.clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(step(&app).await, 0, "dead letters are not retried");
}

#[tokio::test]
async fn without_smtp_configured_the_receipt_is_recorded_as_skipped() {
    let app = app_with_mail(None).await;
    let p = paid_with_email(&app, Some("wanjiku@example.com")).await;
    assert_eq!(step(&app).await, 1);
    assert!(app.timeline(p["id"].as_str().unwrap()).await.contains(&"email_skipped".to_owned()));
    assert_eq!(step(&app).await, 0);
}

#[tokio::test]
async fn payments_without_an_address_send_nothing_and_bad_addresses_are_refused_up_front() {
    let smtp = SmtpServer::start().await;
    let app = app_with_mail(Some(&smtp)).await;
    paid_with_email(&app, None).await;
    assert_eq!(step(&app).await, 0);

    let mut body = common::payment_body("0712345679", 45);
    body["customer_email"] = "not an address".into();
    let (status, err) = app.post_payment(&body, None).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["field"], "customer_email");
}

#[tokio::test]
async fn a_succeeded_refund_sends_the_customer_its_notice() {
    let smtp = SmtpServer::start().await;
    let app = app_with_mail(Some(&smtp)).await;
    let p = paid_with_email(&app, Some("wanjiku@example.com")).await;
    let id = p["id"].as_str().unwrap();
    assert_eq!(step(&app).await, 1, "the receipt");
    let answer = app
        .http
        .post(format!("{}/v1/payments/{id}/refunds", app.base))
        .bearer_auth(&app.key)
        .json(&serde_json::json!({"reason": "Screening cancelled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 201);
    let refund: serde_json::Value = answer.json().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let refund = loop {
        let (_, r) = app.get(&format!("/v1/refunds/{}", refund["id"].as_str().unwrap())).await;
        if r["status"] == "succeeded" {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(step(&app).await, 1, "the refund notice");
    let got = smtp.messages();
    assert_eq!(got.len(), 2);
    let m = &got[1];
    for expected in [
        "Subject: Refund: KES 1,250 returned to you by Lipa Cinema",
        refund["receipt"].as_str().unwrap(),
        p["receipt"].as_str().unwrap(),
        "Screening cancelled",
        "back in your M-PESA account",
    ] {
        assert!(m.data.contains(expected), "{expected:?} missing from:\n{}", m.data);
    }
    assert_eq!(step(&app).await, 0, "sent once");
}

#[tokio::test]
async fn a_receipt_names_the_merchant_by_its_keys_display_name() {
    let smtp = SmtpServer::start().await;
    let app = app_with_mail(Some(&smtp)).await;
    let key = lipa_gateway::keys::authenticate(app.gateway.store(), &app.key).await.unwrap().unwrap();
    app.gateway.store().set_display_name(&key.id, Some("Sinema Yetu")).await.unwrap();
    paid_with_email(&app, Some("wanjiku@example.com")).await;
    assert_eq!(step(&app).await, 1);
    let m = &smtp.messages()[0];
    assert!(m.data.contains("Subject: Receipt: KES 1,250 paid to Sinema Yetu"), "{}", m.data);
    // The sender is the installation's (LIPA_MAIL_FROM); the words are the merchant's.
    let body: Vec<&str> = m.data.lines().filter(|l| !l.starts_with("From:")).collect();
    assert!(!body.iter().any(|l| l.contains("Lipa Cinema")), "{}", body.join("\n"));
}
