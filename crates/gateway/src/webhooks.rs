//! Merchant webhooks: the delivery worker for the outbox the stores write in the same
//! transaction as each payment change.
//!
//! Each event is POSTed with `Lipa-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>` and `Lipa-Event-Id`, signed with the API key's webhook secret. Non-2xx
//! answers and timeouts are retried with exponential backoff and jitter until the event is
//! older than the maximum age, then it is dead-lettered. Every attempt is recorded. Events are
//! leased, so several workers never send one attempt twice.
//!
//! One endpoint cannot hold up another's events: the worker never waits for a whole batch,
//! each endpoint (a URL's origin, so one server's URLs share it whatever their path or query)
//! has its own slots ([`PER_ENDPOINT`] deliveries at once, each with its own timeout), a claim
//! takes at most that many events of one URL, and none of an endpoint whose slots are all in
//! use.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};

use crate::ids;
use crate::service::Gateway;
use crate::store::{StoreError, WebhookAttempt, WebhookJob, WebhookNext};
use crate::time_fmt::ms;

/// `Lipa-Signature` for `body` at unix time `t`: `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    format!("t={t},v1={}", ids::hex(&hmac(secret, &format!("{t}.{body}"))))
}

pub(crate) fn hmac(secret: &str, message: &str) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Checks a `Lipa-Signature` header: the signature matches and `t` is within `tolerance` of
/// `now` (both unix seconds). What merchants do on their side.
pub fn verify(secret: &str, header: &str, body: &str, now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance {
        return false;
    }
    let expected = ids::hex(&hmac(secret, &format!("{t}.{body}")));
    v1.iter().any(|candidate| ids::constant_time_eq(candidate, &expected))
}

/// Deliveries to one endpoint at once.
pub const PER_ENDPOINT: u32 = 4;
/// Deliveries at once in one worker, all endpoints together.
pub const AT_ONCE: usize = 64;

/// Leases the due events a claim may take (see [`crate::store::Store::claim_due_webhooks`]).
async fn claim(gateway: &Gateway, limit: u32, busy: Vec<String>) -> Result<Vec<WebhookJob>, StoreError> {
    let now = gateway.now();
    // Each delivery is bounded by the webhook timeout; the lease outlives it.
    let timeout = i64::try_from(gateway.settings().webhooks.timeout.as_millis()).unwrap_or(i64::MAX);
    let lease = timeout.saturating_mul(2).max(120_000);
    gateway.store().claim_due_webhooks(now, now.saturating_add(lease), limit, PER_ENDPOINT, busy).await
}

fn log_failure(result: Result<Result<(), StoreError>, tokio::task::JoinError>) {
    match result {
        Ok(Err(e)) => tracing::error!(error = %e, "could not record a webhook attempt"),
        Err(e) => tracing::error!(error = %e, "webhook delivery task failed"),
        Ok(Ok(())) => {}
    }
}

/// Delivers the due events (at most `batch`) and waits for them; returns how many were
/// attempted. For tests and tools; the worker ([`run`]) does not wait for a batch.
#[tracing::instrument(skip_all)]
pub async fn step(gateway: &Gateway, batch: u32) -> Result<usize, StoreError> {
    let jobs = claim(gateway, batch, Vec::new()).await?;
    let count = jobs.len();
    let deliveries: Vec<_> = jobs.into_iter().map(|job| tokio::spawn(deliver(gateway.clone(), job))).collect();
    for d in deliveries {
        log_failure(d.await);
    }
    Ok(count)
}

/// What a delivery counts against: its URL's origin (`https://host:port`), so that URLs of one
/// server that differ in path or query (`?order=…`) share its slots; `""` for the default URL.
fn endpoint(url: Option<&str>) -> String {
    url.map_or_else(String::new, |raw| match url::Url::parse(raw).map(|u| u.origin()) {
        Ok(origin @ url::Origin::Tuple(..)) => origin.ascii_serialization(),
        _ => raw.to_owned(),
    })
}

async fn deliver(gateway: Gateway, job: WebhookJob) -> Result<(), StoreError> {
    let store = gateway.store();
    let settings = &gateway.settings().webhooks;
    let Some(url) = job.url.clone().or_else(|| settings.default_url.clone()) else {
        return store.finish_webhook_attempt(None, &job.id, job.lease, WebhookNext::NoEndpoint).await;
    };
    let secret = crate::keys::webhook_secret_of(store, &job.api_key_id).await?;
    let at = gateway.now();
    let started = Instant::now();
    // A host that is not a public address by its text is refused here; a name, when the
    // client resolves it (see `crate::outbound`).
    let allowed = url::Url::parse(&url)
        .map_err(|e| format!("not a URL: {e}"))
        .and_then(|u| crate::outbound::check_url(&u, settings.allow_private));
    let (status, response, error) = match allowed {
        Err(refused) => (None, String::new(), Some(refused)),
        Ok(()) => {
            let sent = gateway
                .webhook_client()
                .post(&url)
                .header("content-type", "application/json")
                .header("lipa-event-id", &job.id)
                .header("lipa-signature", signature(&secret, at.div_euclid(1000), &job.payload))
                .body(job.payload.clone())
                .send()
                .await;
            match sent {
                Ok(r) => (Some(r.status().as_u16()), excerpt(r).await, None),
                Err(e) => (None, String::new(), Some(error_chain(&e.without_url()))),
            }
        }
    };
    let delivered = status.is_some_and(|s| (200..300).contains(&s));
    let attempt = WebhookAttempt {
        event_id: job.id.clone(),
        at,
        url,
        status,
        latency_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        error,
        response,
    };
    let now = gateway.now();
    let next = if delivered {
        WebhookNext::Delivered
    } else if now - job.created_at >= ms(settings.max_age) {
        tracing::warn!(event_id = %job.id, "webhook dead-lettered after its maximum age");
        WebhookNext::Dead
    } else {
        WebhookNext::RetryAt(now + ms(crate::worker::backoff(job.attempts)))
    };
    gateway.metrics().webhook(if delivered { "delivered" } else { "failed" });
    store.finish_webhook_attempt(Some(attempt), &job.id, job.lease, next).await
}

/// An error with its causes ("error sending request: … : resolves to 127.0.0.1 only: …").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let words = cause.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        source = cause.source();
    }
    text
}

/// The start of a response body, for the attempt log: at most 4 KiB are read from the merchant,
/// at most 500 characters kept.
async fn excerpt(mut response: reqwest::Response) -> String {
    const READ_AT_MOST: usize = 4096;
    let mut body = Vec::new();
    while body.len() < READ_AT_MOST {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(READ_AT_MOST);
    String::from_utf8_lossy(&body).chars().take(500).collect()
}

/// Delivers due events until `shutdown` is set: claims what the free slots allow, starts
/// each delivery on its own, and claims again as soon as one ends (or every half second),
/// never waiting for a batch. On shutdown, lets the deliveries in flight finish.
pub async fn run(gateway: Gateway, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // Deliveries in flight, by endpoint (see `endpoint`).
    let in_flight = crate::tally::Tally::default();
    let mut deliveries = tokio::task::JoinSet::new();
    loop {
        let free = AT_ONCE.saturating_sub(in_flight.total());
        let busy = in_flight.holding_at_least(PER_ENDPOINT as usize);
        let claimed = if free == 0 {
            0
        } else {
            match claim(&gateway, u32::try_from(free.min(50)).unwrap_or(50), busy).await {
                Ok(jobs) => {
                    let count = jobs.len();
                    for job in jobs {
                        let slot = in_flight.take(endpoint(job.url.as_deref()), None);
                        let gateway = gateway.clone();
                        deliveries.spawn(async move {
                            let _slot = slot;
                            deliver(gateway, job).await
                        });
                    }
                    count
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not claim webhook events");
                    0
                }
            }
        };
        if claimed == 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                Some(done) = deliveries.join_next(), if !deliveries.is_empty() => log_failure(done),
                changed = shutdown.changed() => {
                    // The sender is gone: nobody can stop this worker any more, so stop now.
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        while let Some(done) = deliveries.try_join_next() {
            log_failure(done);
        }
        if *shutdown.borrow() {
            break;
        }
    }
    while let Some(done) = deliveries.join_next().await {
        log_failure(done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_vector_and_round_trip() {
        // RFC 4231 test case 2.
        let mac = hmac("Jefe", "what do ya want for nothing?");
        assert_eq!(ids::hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let header = signature("whsec_test", 1_700_000_000, "{\"id\":1}");
        assert!(verify("whsec_test", &header, "{\"id\":1}", 1_700_000_100, 300));
        assert!(!verify("whsec_test", &header, "{\"id\":2}", 1_700_000_100, 300), "body changed");
        assert!(!verify("whsec_other", &header, "{\"id\":1}", 1_700_000_100, 300), "other secret");
        assert!(!verify("whsec_test", &header, "{\"id\":1}", 1_700_001_000, 300), "outside the replay window");
        assert!(!verify("whsec_test", "garbage", "{\"id\":1}", 1_700_000_000, 300));
    }

    #[test]
    fn an_endpoint_is_a_urls_origin() {
        assert_eq!(endpoint(Some("http://127.0.0.1:8000/hooks?order=1")), "http://127.0.0.1:8000");
        assert_eq!(endpoint(Some("https://shop.example/lipa/webhook#x")), "https://shop.example");
        assert_eq!(endpoint(None), "", "the default URL");
    }
}
