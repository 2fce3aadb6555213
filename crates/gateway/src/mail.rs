//! Receipt emails. When a payment with a `customer_email` becomes `paid`, the store writes an
//! email row in the same transaction (see `announce`); this worker sends it over SMTP, retries
//! failures with backoff until `mail.max_age`, and puts every attempt on the payment's timeline.
//! The payment itself never depends on the email.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::payment::Payment;
use crate::service::Gateway;
use crate::store::{EmailJob, EmailNext, StoreError};
use crate::time_fmt::ms;
use crate::time_fmt::{kes, nairobi};

/// An SMTP transport from `SMTP_URL`:
/// - `smtps://user:password@host:465`: TLS from the first byte;
/// - `smtp://user:password@host:587`: STARTTLS, required (no credentials ever sent in clear);
/// - `smtp://host:port?tls=none`: no encryption, for a relay on this machine or network.
///
/// The error says what is wrong with the URL, without its password.
pub fn transport(raw: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let shown = crate::redact::url(raw);
    let url =
        url::Url::parse(raw).map_err(|e| format!("{shown:?} is not a URL ({e}); use smtp://user:password@host:587"))?;
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{shown:?} has no host"))?;
    let plain = url.query_pairs().any(|(k, v)| k == "tls" && v == "none");
    let builder = match (url.scheme(), plain) {
        ("smtps", _) => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map(|b| b.port(url.port().unwrap_or(465))),
        ("smtp", false) => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map(|b| b.port(url.port().unwrap_or(587)))
        }
        ("smtp", true) => {
            Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(url.port().unwrap_or(25)))
        }
        (other, _) => return Err(format!("{shown:?}: scheme {other:?} is not smtp or smtps")),
    }
    .map_err(|e| format!("{shown:?}: {e}"))?;
    let builder = builder.timeout(Some(Duration::from_secs(15)));
    let builder = if url.username().is_empty() {
        builder
    } else {
        let decode =
            |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).map(|(_, v)| v.into_owned()).next();
        let user = decode(url.username()).unwrap_or_default();
        let password = decode(url.password().unwrap_or_default()).unwrap_or_default();
        builder.credentials(Credentials::new(user, password))
    };
    Ok(builder.build())
}

/// A configured mail sender.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl Mailer {
    /// From the settings: `Ok(None)` when no SMTP server is configured.
    pub fn from_settings(settings: &crate::config::MailSettings) -> Result<Option<Self>, String> {
        let Some(url) = &settings.smtp_url else { return Ok(None) };
        let from = settings.from.as_deref().unwrap_or_default();
        let from = from.parse::<Mailbox>().map_err(|e| format!("MAIL_FROM {from:?} is not an address: {e}"))?;
        Ok(Some(Self { transport: transport(url)?, from }))
    }
}

/// The receipt for a paid payment: subject, plain text, HTML.
pub fn receipt(business: &str, payment: &Payment) -> (String, String, String) {
    let amount = kes(payment.amount);
    let when = nairobi(payment.transaction_date.or(payment.settled_at).unwrap_or(payment.updated_at));
    let receipt = payment.receipt.as_deref().unwrap_or("sent to you by M-PESA SMS");
    let subject = format!("Receipt: {amount} paid to {business}");
    let text = format!(
        "Thank you. We received your M-PESA payment.\n\n\
         Paid to:        {business}\n\
         Amount:         {amount}\n\
         M-PESA receipt: {receipt}\n\
         Date and time:  {when}\n\
         Reference:      {reference}\n\
         For:            {description}\n\n\
         Keep this email as your receipt.\n",
        reference = payment.account_reference,
        description = payment.description,
    );
    let rows = [
        ("Paid to", business),
        ("Amount", amount.as_str()),
        ("M-PESA receipt", receipt),
        ("Date and time", when.as_str()),
        ("Reference", payment.account_reference.as_str()),
        ("For", payment.description.as_str()),
    ];
    let html = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (subject) } }
            body style="font-family:system-ui,sans-serif;color:#1a1a1a;max-width:32rem;margin:auto;padding:1rem" {
                h1 style="font-size:1.25rem" { "Thank you. We received your M-PESA payment." }
                table style="border-collapse:collapse;width:100%" {
                    @for (label, value) in rows {
                        tr {
                            th scope="row" style="text-align:left;padding:.4rem .8rem .4rem 0;color:#555;font-weight:normal" { (label) }
                            td style="padding:.4rem 0;font-weight:600" { (value) }
                        }
                    }
                }
                p style="color:#555" { "Keep this email as your receipt." }
            }
        }
    }
    .into_string();
    (subject, text, html)
}

/// Sends the due emails (at most `batch`); returns how many were handled.
pub async fn step(gateway: &Gateway, batch: u32) -> Result<usize, StoreError> {
    let now = gateway.now();
    let jobs = gateway.store().claim_due_emails(now, now + 120_000, batch).await?;
    let count = jobs.len();
    for job in jobs {
        let next = send(gateway, &job).await?;
        match &next {
            EmailNext::Sent => tracing::info!(payment_id = %job.payment_id, "receipt email sent"),
            EmailNext::Skipped(reason) => {
                tracing::debug!(payment_id = %job.payment_id, reason, "receipt email skipped")
            }
            EmailNext::RetryAt(_, error) | EmailNext::Dead(error) => {
                tracing::warn!(payment_id = %job.payment_id, error, "receipt email failed");
            }
        }
        gateway.store().finish_email(&job, next, gateway.now()).await?;
    }
    Ok(count)
}

async fn send(gateway: &Gateway, job: &EmailJob) -> Result<EmailNext, StoreError> {
    let mailer = match gateway.mailer() {
        Ok(Some(mailer)) => mailer,
        Ok(None) => return Ok(EmailNext::Skipped("no SMTP server configured (SMTP_URL)".into())),
        Err(reason) => return Ok(EmailNext::Skipped(reason.to_owned())),
    };
    let Some(payment) = gateway.store().payment(&job.payment_id, None).await? else {
        return Ok(EmailNext::Dead("the payment is gone".into()));
    };
    let failed = |error: String| {
        let now = gateway.now();
        if now - job.created_at >= ms(gateway.settings().mail.max_age) {
            EmailNext::Dead(error)
        } else {
            EmailNext::RetryAt(now + ms(crate::webhooks::backoff(job.attempts)), error)
        }
    };
    let to = match job.recipient.parse::<Mailbox>() {
        Ok(to) => to,
        Err(e) => return Ok(EmailNext::Dead(format!("{:?} is not an email address: {e}", job.recipient))),
    };
    let (subject, text, html) = receipt(&gateway.settings().business_name, &payment);
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(text, html));
    let message = match message {
        Ok(m) => m,
        Err(e) => return Ok(EmailNext::Dead(format!("the email could not be built: {e}"))),
    };
    Ok(match mailer.transport.send(message).await {
        Ok(_) => EmailNext::Sent,
        Err(e) => failed(e.to_string()),
    })
}

/// Runs [`step`] until `shutdown` is set, pausing when idle.
pub async fn run(gateway: Gateway, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let idle = match step(&gateway, 20).await {
            Ok(n) => n == 0,
            Err(e) => {
                tracing::error!(error = %e, "email step failed");
                true
            }
        };
        if idle {
            tokio::select! {
                _ = shutdown.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
