//! Callback delivery faults: copies, drop, retries, delay, concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Receiver, client, eventually, merchant, push, sim};
use daraja_sim::{Answer, Faults, Scripted, SimConfig, Status};

#[tokio::test]
async fn with_n_copies_exactly_n_deliveries_are_recorded() {
    for concurrent in [false, true] {
        let faults = Faults { copies: 4, concurrent, ..Faults::default() };
        let sim = sim(SimConfig { faults, ..SimConfig::default() }).await;
        let mut receiver = Receiver::start().await;
        let accepted = client(&sim).stk_push(&merchant(&sim), &push("0712345678", 5, &receiver.url)).await.unwrap();
        let mut bodies = Vec::new();
        for _ in 0..4 {
            bodies.push(receiver.next().await);
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "copies are identical");
        let id = accepted.checkout_request_id.as_str().to_owned();
        eventually("4 attempts recorded", || sim.sim().callback_attempts_for(&id).len() == 4).await;
        let mut copies: Vec<u32> = sim.sim().callback_attempts_for(&id).iter().map(|a| a.copy).collect();
        copies.sort_unstable();
        assert_eq!(copies, [1, 2, 3, 4], "concurrent={concurrent}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(receiver.bodies.try_recv().is_err(), "no fifth delivery");
        assert_eq!(sim.sim().callback_attempts_for(&id).len(), 4);
    }
}

#[tokio::test]
async fn a_dropped_callback_is_never_delivered_but_the_query_knows() {
    let sim = sim(SimConfig { faults: Faults { drop: true, ..Faults::default() }, ..SimConfig::default() }).await;
    let mut receiver = Receiver::start().await;
    let accepted = client(&sim).stk_push(&merchant(&sim), &push("0712345678", 5, &receiver.url)).await.unwrap();
    let id = accepted.checkout_request_id.as_str().to_owned();
    eventually("completed", || sim.sim().transaction(&id).is_some_and(|t| t.status == Status::Completed)).await;
    // Long enough for a delivery to a loopback receiver to have been made and recorded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sim.sim().callback_attempts().is_empty());
    assert!(receiver.bodies.try_recv().is_err());
    let outcome = client(&sim).stk_query(&merchant(&sim), &accepted.checkout_request_id).await.unwrap();
    assert!(matches!(outcome, daraja::QueryOutcome::Completed(r) if r.result_code.is_success()));
}

#[tokio::test]
async fn retries_stop_after_the_first_acknowledgement() {
    let faults = Faults { retries: 5, retry_backoff: Duration::from_millis(20), ..Faults::default() };
    let sim = sim(SimConfig { faults, ..SimConfig::default() }).await;
    let mut receiver = Receiver::start().await;
    receiver.answer_with(&[503, 500]);
    let accepted = client(&sim).stk_push(&merchant(&sim), &push("0712345678", 5, &receiver.url)).await.unwrap();
    for _ in 0..3 {
        receiver.next().await;
    }
    let id = accepted.checkout_request_id.as_str().to_owned();
    eventually("3 attempts", || sim.sim().callback_attempts_for(&id).len() == 3).await;
    let attempts = sim.sim().callback_attempts_for(&id);
    let seen: Vec<_> = attempts.iter().map(|a| (a.attempt, a.status)).collect();
    assert_eq!(seen, [(1, Some(503)), (2, Some(500)), (3, Some(200))]);
    assert!(attempts[1].at - attempts[0].at >= time::Duration::milliseconds(20), "backoff between attempts");
    tokio::time::sleep(Duration::from_millis(300)).await; // past the next backoff (80 ms)
    assert!(receiver.bodies.try_recv().is_err(), "nothing after the 200");
    assert_eq!(sim.sim().callback_attempts_for(&id).len(), 3);
}

#[tokio::test]
async fn retries_give_up_after_the_configured_count() {
    let faults = Faults { retries: 2, retry_backoff: Duration::from_millis(5), ..Faults::default() };
    let sim = sim(SimConfig { faults, ..SimConfig::default() }).await;
    let mut receiver = Receiver::start().await;
    receiver.answer_with(&[500, 500, 500, 500]);
    let accepted = client(&sim).stk_push(&merchant(&sim), &push("0712345678", 5, &receiver.url)).await.unwrap();
    for _ in 0..3 {
        receiver.next().await;
    }
    let id = accepted.checkout_request_id.as_str().to_owned();
    eventually("3 attempts", || sim.sim().callback_attempts_for(&id).len() == 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // past the next backoff (20 ms)
    let attempts = sim.sim().callback_attempts_for(&id);
    assert_eq!(attempts.len(), 3, "1 attempt + 2 retries, then it gives up");
    assert!(attempts.iter().all(|a| !a.acknowledged()));
}

#[tokio::test]
async fn an_unreachable_receiver_is_recorded_as_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/callbacks/stk/x", listener.local_addr().unwrap());
    drop(listener);
    let sim = sim(SimConfig::default()).await;
    let accepted = client(&sim).stk_push(&merchant(&sim), &push("0712345678", 5, &url)).await.unwrap();
    let id = accepted.checkout_request_id.as_str().to_owned();
    eventually("attempt recorded", || !sim.sim().callback_attempts_for(&id).is_empty()).await;
    let attempt = &sim.sim().callback_attempts_for(&id)[0];
    assert_eq!(attempt.status, None);
    assert!(attempt.error.is_some());
}

#[tokio::test]
async fn per_push_faults_override_the_global_ones() {
    let sim = sim(SimConfig::default()).await;
    let mut receiver = Receiver::start().await;
    let faults = Faults { copies: 2, delay: Duration::from_millis(50), ..Faults::default() };
    sim.sim().script(
        254712345678,
        Scripted { result: Answer::Fail("1032".into()), after_ms: Some(10), faults: Some(faults) },
    );
    client(&sim).stk_push(&merchant(&sim), &push("0712345678", 5, &receiver.url)).await.unwrap();
    let a = receiver.next().await;
    let b = receiver.next().await;
    assert_eq!(a, b);
    assert_eq!(a["Body"]["stkCallback"]["ResultCode"], 1032);
    assert!(a["Body"]["stkCallback"].get("CallbackMetadata").is_none());
}

#[tokio::test]
async fn jitter_delivers_callbacks_of_many_pushes_out_of_order() {
    let faults = Faults { jitter: Duration::from_millis(300), ..Faults::default() };
    let sim = sim(SimConfig { faults, ..SimConfig::default() }).await;
    let mut receiver = Receiver::start().await;
    let client = client(&sim);
    let mut pushed = Vec::new();
    for i in 0..20 {
        let accepted =
            client.stk_push(&merchant(&sim), &push(&format!("07123456{i:02}"), 5, &receiver.url)).await.unwrap();
        pushed.push(accepted.checkout_request_id.as_str().to_owned());
    }
    let mut arrived = Vec::new();
    for _ in 0..20 {
        arrived.push(receiver.next().await["Body"]["stkCallback"]["CheckoutRequestID"].as_str().unwrap().to_owned());
    }
    let mut sorted = arrived.clone();
    sorted.sort();
    let mut expected = pushed.clone();
    expected.sort();
    assert_eq!(sorted, expected, "every callback arrives once");
    assert_ne!(arrived, pushed, "20 callbacks with 300 ms of jitter do not arrive in push order");
}
