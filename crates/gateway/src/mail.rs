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

/// A transport to `server` (see [`crate::smtp`]).
pub fn transport(server: &crate::smtp::Server) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    use crate::smtp::Security;
    let host = server.host.as_str();
    let builder = match server.security {
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
        Security::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)),
    }
    .map_err(|e| format!("SMTP server {host:?}: {e}"))?
    .port(server.port)
    .timeout(Some(Duration::from_secs(15)));
    let builder = match &server.credentials {
        Some((user, password)) => builder.credentials(Credentials::new(user.clone(), password.clone())),
        None => builder,
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
        Ok(Some(Self { transport: transport(&crate::smtp::parse(url)?)?, from }))
    }
}

/// The receipt for a paid payment: subject, plain text, HTML.
pub fn receipt(business: &str, payment: &Payment) -> (String, String, String) {
    let amount = kes(payment.amount.shillings());
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
    let html =
        letter(&subject, "Thank you. We received your M-PESA payment.", &rows, "Keep this email as your receipt.");
    (subject, text, html)
}

/// The notice of a succeeded refund: subject, plain text, HTML.
pub fn refund_notice(business: &str, payment: &Payment, refund: &crate::refund::Refund) -> (String, String, String) {
    let amount = kes(u32::try_from(refund.amount).unwrap_or(u32::MAX));
    let when = nairobi(refund.settled_at.unwrap_or(refund.updated_at));
    let reversal = refund.receipt.as_deref().unwrap_or("sent to you by M-PESA SMS");
    let original = payment.receipt.as_deref().unwrap_or("");
    let subject = format!("Refund: {amount} returned to you by {business}");
    let text = format!(
        "{business} has refunded your M-PESA payment. The money is back in your M-PESA account.\n\n\
         Refunded by:       {business}\n\
         Amount:            {amount}\n\
         Refund receipt:    {reversal}\n\
         Original receipt:  {original}\n\
         Date and time:     {when}\n\
         Reference:         {reference}\n\
         Reason:            {reason}\n\n\
         Keep this email as the record of your refund.\n",
        reference = payment.account_reference,
        reason = refund.reason,
    );
    let rows = [
        ("Refunded by", business),
        ("Amount", amount.as_str()),
        ("Refund receipt", reversal),
        ("Original receipt", original),
        ("Date and time", when.as_str()),
        ("Reference", payment.account_reference.as_str()),
        ("Reason", refund.reason.as_str()),
    ];
    let heading = format!("{business} has refunded your M-PESA payment.");
    let html = letter(
        &subject,
        &heading,
        &rows,
        "The money is back in your M-PESA account. Keep this email as the record of your refund.",
    );
    (subject, text, html)
}

/// An email's HTML: a heading, a table of label and value, a closing line.
fn letter(subject: &str, heading: &str, rows: &[(&str, &str)], closing: &str) -> String {
    maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (subject) } }
            body style="font-family:system-ui,sans-serif;color:#1a1a1a;max-width:32rem;margin:auto;padding:1rem" {
                h1 style="font-size:1.25rem" { (heading) }
                table style="border-collapse:collapse;width:100%" {
                    @for (label, value) in rows {
                        tr {
                            th scope="row" style="text-align:left;padding:.4rem .8rem .4rem 0;color:#555;font-weight:normal" { (label) }
                            td style="padding:.4rem 0;font-weight:600" { (value) }
                        }
                    }
                }
                p style="color:#555" { (closing) }
            }
        }
    }
    .into_string()
}

/// The receipt-email worker: the gateway, and the sender its settings describe.
#[derive(Debug)]
pub struct Worker {
    gateway: Gateway,
    /// `Ok(None)`: no SMTP server configured; `Err`: the mail settings are not usable.
    mailer: Result<Option<Mailer>, String>,
}

impl Worker {
    /// The worker for `gateway`'s mail settings.
    pub fn new(gateway: Gateway) -> Self {
        let mailer = Mailer::from_settings(&gateway.settings().mail).inspect_err(|e| {
            tracing::error!(error = %e, "receipt emails are off: the mail settings are not usable");
        });
        Self { gateway, mailer }
    }

    /// Sends the due emails (at most `batch`); returns how many were handled.
    pub async fn step(&self, batch: u32) -> Result<usize, StoreError> {
        step(&self.gateway, self.mailer.as_ref().map(Option::as_ref), batch).await
    }

    /// Runs [`Self::step`] until `shutdown` is set, pausing when idle.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        crate::worker::repeat("email", Duration::from_millis(500), shutdown, || async {
            self.step(20).await.map(|n| n > 0)
        })
        .await;
    }
}

async fn step(gateway: &Gateway, mailer: Result<Option<&Mailer>, &String>, batch: u32) -> Result<usize, StoreError> {
    let now = gateway.now();
    let jobs = gateway.store().claim_due_emails(now, now + 120_000, batch).await?;
    let count = jobs.len();
    for job in jobs {
        let next = send(gateway, mailer, &job).await?;
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

async fn send(
    gateway: &Gateway,
    mailer: Result<Option<&Mailer>, &String>,
    job: &EmailJob,
) -> Result<EmailNext, StoreError> {
    let mailer = match mailer {
        Ok(Some(mailer)) => mailer,
        Ok(None) => return Ok(EmailNext::Skipped("no SMTP server configured (SMTP_URL)".into())),
        Err(reason) => return Ok(EmailNext::Skipped(reason.clone())),
    };
    let Some(payment) = gateway.store().payment(&job.payment_id, None).await? else {
        return Ok(EmailNext::Dead("the payment is gone".into()));
    };
    let failed = |error: String| {
        let now = gateway.now();
        if now - job.created_at >= ms(gateway.settings().mail.max_age) {
            EmailNext::Dead(error)
        } else {
            EmailNext::RetryAt(now + ms(crate::worker::backoff(job.attempts)), error)
        }
    };
    let to = match job.recipient.parse::<Mailbox>() {
        Ok(to) => to,
        Err(e) => return Ok(EmailNext::Dead(format!("{:?} is not an email address: {e}", job.recipient))),
    };
    let business =
        crate::keys::merchant_name(gateway.store(), &payment.api_key_id, &gateway.settings().business_name).await?;
    let business = &business;
    let (subject, text, html) = match &job.refund_id {
        None => receipt(business, &payment),
        Some(id) => match gateway.store().refund(id, None).await? {
            Some(refund) => refund_notice(business, &payment, &refund),
            None => return Ok(EmailNext::Dead("the refund is gone".into())),
        },
    };
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
