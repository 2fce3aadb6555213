//! STK push throughput with callbacks delivered at zero delay:
//! `cargo bench -p daraja-sim --bench push` (optionally `-- <pushes> <connections>`).
//!
//! One process runs the simulator, a callback receiver and the load generator on loopback,
//! so the figure is a lower bound of what the simulator alone sustains.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let pushes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let connections: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(pushes, connections));
}

async fn run(pushes: u64, connections: u64) {
    let sim = daraja_sim::spawn(daraja_sim::SimConfig::default()).await.unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let receiver = axum::Router::new().route(
        "/callbacks/stk/{token}",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                r#"{"ResultCode":0,"ResultDesc":"Accepted"}"#
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback_url = format!("http://{}/callbacks/stk/bench", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let http = reqwest::Client::builder().pool_max_idle_per_host(connections as usize).build().unwrap();
    let token: serde_json::Value = http
        .get(format!("{}/oauth/v1/generate?grant_type=client_credentials", sim.base_url()))
        .basic_auth(sim.consumer_key(), Some(sim.consumer_secret()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let ts = "20260101120000";
    let password =
        base64::engine::general_purpose::STANDARD.encode(format!("174379{}{ts}", daraja_sim::SANDBOX_PASSKEY));
    let url = format!("{}/mpesa/stkpush/v1/processrequest", sim.base_url());
    let body = move |i: u64| {
        let phone = 254_710_000_000 + i;
        format!(
            r#"{{"BusinessShortCode":174379,"Password":"{password}","Timestamp":"{ts}","TransactionType":"CustomerPayBillOnline","Amount":1,"PartyA":{phone},"PartyB":174379,"PhoneNumber":{phone},"CallBackURL":"{callback_url}","AccountReference":"BENCH","TransactionDesc":"bench"}}"#
        )
    };
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (http, url, token, next, accepted) =
                (http.clone(), url.clone(), token.clone(), next.clone(), accepted.clone());
            let body = body.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= pushes {
                        break;
                    }
                    let resp = http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body(i))
                        .send()
                        .await
                        .unwrap();
                    if resp.status().is_success() {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = resp.bytes().await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let push_elapsed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < pushes && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_elapsed = started.elapsed();
    let accepted = accepted.load(Ordering::Relaxed);
    let received = received.load(Ordering::Relaxed);
    println!("pushes sent         {pushes} over {connections} connections");
    println!("accepted            {accepted}");
    println!(
        "push throughput     {:.0} pushes/s ({:.2} s)",
        accepted as f64 / push_elapsed.as_secs_f64(),
        push_elapsed.as_secs_f64()
    );
    println!("callbacks received  {received}");
    println!(
        "end-to-end          {:.0} push+callback/s ({:.2} s)",
        received as f64 / all_elapsed.as_secs_f64(),
        all_elapsed.as_secs_f64()
    );
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM"))
    {
        println!("peak RSS (all three parts) {}", line.trim_start_matches("VmHWM:").trim());
    }
}
