//! The cinema shop as a merchant of Lipa: booking, paying through the hosted checkout, webhook
//! handling, seat accounting under concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use daraja_sim::{Answer, Scripted, SimConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[tokio::test]
async fn a_booking_is_paid_through_lipa_and_shows_the_receipt() {
    let w = common::world(SimConfig::default()).await;
    let programme = w.get(&w.shop).await;
    assert!(programme.contains("Nairobi Half Life") && programme.contains("40 seats left"), "{programme}");

    let (status, checkout) = w.book(1, "0712 345 678", 3).await;
    assert_eq!(status, 303);
    let checkout = checkout.unwrap();
    assert!(checkout.starts_with(&format!("{}/checkout/cs_", w.lipa)), "{checkout}");
    let ticket = w.ticket_url(&checkout).await;
    assert!(w.get(&ticket).await.contains(">Pending<"));
    assert!(w.get(&w.shop).await.contains("37 seats left"), "seats are held while paying");

    let page = w.get(&checkout).await;
    assert!(page.contains("KES 1,350"), "3 × 450 computed by the shop: {page}");
    w.pay(&checkout, "0712345678").await;
    // Nobody looks at the ticket page meanwhile: Lipa's signed webhook alone marks it paid.
    let ticket_id = ticket.rsplit('/').next().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while w.db.ticket(ticket_id.clone()).await.unwrap().unwrap().status != cinema::db::TicketStatus::Paid {
        assert!(std::time::Instant::now() < deadline, "the webhook never came");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let html = w.get(&ticket).await;
    assert!(html.contains("Your tickets") && html.contains(">Paid<"), "{html}");
    let receipt = w.sim.sim().transactions()[0].receipt.clone().unwrap();
    assert!(html.contains(&receipt), "the M-Pesa receipt {receipt} is shown: {html}");
    assert!(w.get(&w.shop).await.contains("37 seats left"));
}

#[tokio::test]
async fn a_cancelled_payment_releases_the_seats_and_a_retry_pays() {
    let w = common::world(SimConfig::default()).await;
    w.sim.sim().script(254_712_345_678, Scripted { result: Answer::Fail("1032".into()), after_ms: None, faults: None });
    let (_, checkout) = w.book(1, "0712345678", 2).await;
    let checkout = checkout.unwrap();
    let ticket = w.ticket_url(&checkout).await;
    w.pay(&checkout, "0712345678").await;
    let html = w.wait_for(&ticket, "Payment failed").await;
    assert!(html.contains(daraja::ResultCode::from_wire("1032").customer_message_en()), "{html}");
    assert!(w.get(&w.shop).await.contains("40 seats left"), "seats released");

    let r = w.http.post(format!("{ticket}/retry")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let second = r.headers()["location"].to_str().unwrap().to_owned();
    assert_ne!(second, checkout, "a new checkout session");
    assert!(w.get(&w.shop).await.contains("38 seats left"), "seats taken again");
    w.pay(&second, "0712345678").await;
    w.wait_for(&ticket, "Your tickets").await;
}

#[tokio::test]
async fn twenty_concurrent_bookings_for_the_last_five_seats_sell_exactly_five() {
    let w = common::world(SimConfig::interactive()).await;
    let movie = w.db.add_movie("Last Show", "Five seats left.", 1_900_000_000_000, 300, 5, "#333333").unwrap();
    let bookings: Vec<_> = (0..20)
        .map(|i| {
            let (http, shop) = (w.http.clone(), w.shop.clone());
            tokio::spawn(async move {
                let phone = format!("07{:08}", 12_000_000 + i);
                let r = http
                    .post(format!("{shop}/movies/{movie}"))
                    .form(&[("name", "Fan"), ("phone", phone.as_str()), ("quantity", "1")])
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for b in bookings {
        statuses.push(b.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 15, "{statuses:?}");
    assert_eq!(w.db.movie(movie).await.unwrap().unwrap().seats_left(), 0);
    assert!(w.get(&w.shop).await.contains("Sold out"));
}

fn sign(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

#[tokio::test]
async fn webhooks_must_be_signed_fresh_and_are_applied_once() {
    let w = common::world(SimConfig::interactive()).await;
    let (_, checkout) = w.book(2, "0712345678", 1).await;
    let ticket_url = w.ticket_url(&checkout.unwrap()).await;
    let ticket_id = ticket_url.rsplit('/').next().unwrap().to_owned();
    let event = |id: &str, receipt: &str| {
        serde_json::json!({"id": id, "type": "payment.paid", "created_at": "2026-11-30T10:00:00Z", "data": {
            "id": "pay_1", "status": "paid", "receipt": receipt, "transaction_date": "2026-11-30T10:00:00Z",
            "metadata": {"ticket_id": ticket_id}
        }})
        .to_string()
    };
    let post = |body: String, signature: String| {
        let http = w.http.clone();
        let url = format!("{}/webhooks/lipa", w.shop);
        async move {
            let r = http.post(url).header("Lipa-Signature", signature).body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let now = cinema::now_ms() / 1000;
    let body = event("evt_1", "UAB1C2D3E4");

    assert_eq!(post(body.clone(), sign("whsec_wrong", now, &body)).await.0, 401, "bad signature");
    assert_eq!(post(body.clone(), sign(&w.secret, now - 3600, &body)).await.0, 401, "replayed an hour later");
    assert_eq!(post(body.clone(), String::new()).await.0, 401, "unsigned");
    assert!(w.get(&ticket_url).await.contains(">Pending<"), "nothing applied");

    assert_eq!(post(body.clone(), sign(&w.secret, now, &body)).await, (200, "applied".to_owned()));
    assert!(w.get(&ticket_url).await.contains("UAB1C2D3E4"));
    let again = event("evt_1", "UXXXXXXXXX");
    assert_eq!(post(again.clone(), sign(&w.secret, now, &again)).await, (200, "already applied".to_owned()));
    assert!(!w.get(&ticket_url).await.contains("UXXXXXXXXX"), "a duplicate changes nothing");
}

/// Posts a signed `payment.failed` webhook for `payment_id` of checkout session `session_id`.
async fn post_failure(w: &common::World, event_id: &str, ticket_id: &str, payment_id: &str, session_id: &str) -> u16 {
    let body = serde_json::json!({"id": event_id, "type": "payment.failed", "created_at": "2026-11-30T10:00:00Z",
        "data": {"id": payment_id, "status": "failed", "result_code": "1032",
            "metadata": {"ticket_id": ticket_id, "checkout_session": session_id}}})
    .to_string();
    let signature = sign(&w.secret, cinema::now_ms() / 1000, &body);
    let r = w.http.post(format!("{}/webhooks/lipa", w.shop)).header("Lipa-Signature", signature).body(body);
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_late_failure_of_a_replaced_attempt_does_not_fail_the_retry() {
    let w = common::world(SimConfig::default()).await;
    w.sim.sim().script(254_712_345_678, Scripted { result: Answer::Fail("1032".into()), after_ms: None, faults: None });
    let (_, first) = w.book(1, "0712345678", 2).await;
    let first = first.unwrap();
    let ticket = w.ticket_url(&first).await;
    let ticket_id = ticket.rsplit('/').next().unwrap().to_owned();
    w.pay(&first, "0712345678").await;
    w.wait_for(&ticket, "Payment failed").await;
    let first_payment = w.db.ticket(ticket_id.clone()).await.unwrap().unwrap().lipa_payment_id.unwrap();
    let first_session = first.rsplit('/').next().unwrap();

    // The customer tries again (a new checkout session), and then the first attempt's failure
    // is told once more (a webhook retry, or a second event about it).
    let r = w.http.post(format!("{ticket}/retry")).send().await.unwrap();
    let second = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(post_failure(&w, "evt_late", &ticket_id, &first_payment, first_session).await, 200);
    let t = w.db.ticket(ticket_id.clone()).await.unwrap().unwrap();
    assert_eq!(t.status, cinema::db::TicketStatus::Pending, "the retry is still under way: {t:?}");
    assert!(w.get(&w.shop).await.contains("38 seats left"), "the retry's seats stay held");

    // A second "Try again" goes to the retry's open checkout instead of making a third session.
    let again = w.http.post(format!("{ticket}/retry")).send().await.unwrap();
    assert_eq!(again.headers()["location"].to_str().unwrap(), second);

    w.pay(&second, "0712345678").await;
    w.wait_for(&ticket, "Your tickets").await;
}

#[tokio::test]
async fn a_failure_of_an_earlier_payment_in_the_same_session_does_not_fail_the_ticket() {
    let w = common::world(SimConfig::interactive()).await;
    let (_, checkout) = w.book(1, "0712345678", 1).await;
    let checkout = checkout.unwrap();
    let ticket = w.ticket_url(&checkout).await;
    let ticket_id = ticket.rsplit('/').next().unwrap().to_owned();
    w.pay(&checkout, "0712345678").await;
    // The session's latest payment is the pending one just pushed; a failure told for another
    // (earlier) payment of the session is stale.
    let session = checkout.rsplit('/').next().unwrap();
    assert_eq!(post_failure(&w, "evt_stale", &ticket_id, "pay_earlier", session).await, 200);
    let t = w.db.ticket(ticket_id.clone()).await.unwrap().unwrap();
    assert_eq!(t.status, cinema::db::TicketStatus::Pending, "{t:?}");
    assert!(w.get(&ticket).await.contains(">Pending<"));
}

#[tokio::test]
async fn try_again_in_the_shop_goes_to_a_retry_already_under_way_on_lipas_page() {
    let w = common::world(SimConfig::interactive()).await;
    let (_, checkout) = w.book(1, "0712345678", 2).await;
    let checkout = checkout.unwrap();
    let ticket = w.ticket_url(&checkout).await;
    w.pay(&checkout, "0712345678").await;
    let first = w.sim.sim().transactions()[0].checkout_request_id.clone();
    assert!(w.sim.sim().resolve(&first, Answer::Fail("1032".into())));
    w.wait_for(&ticket, "Payment failed").await;
    assert!(w.get(&w.shop).await.contains("40 seats left"));

    // The customer sends the prompt again on Lipa's page, then goes back to the shop and
    // presses "Try again" there while that prompt is open.
    w.pay(&checkout, "0712345678").await;
    let r = w.http.post(format!("{ticket}/retry")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"].to_str().unwrap(), checkout, "to the attempt under way, no new session");
    assert_eq!(w.sim.sim().transactions().len(), 2, "no third prompt");

    let second = w.sim.sim().transactions()[1].checkout_request_id.clone();
    assert!(w.sim.sim().resolve(&second, Answer::Approve));
    w.wait_for(&ticket, "Your tickets").await;
    assert!(w.get(&w.shop).await.contains("38 seats left"));
}

#[tokio::test]
async fn a_failure_to_make_a_session_does_not_fail_a_ticket_that_has_one() {
    let w = common::world(SimConfig::interactive()).await;
    let (_, checkout) = w.book(1, "0712345678", 1).await;
    let ticket_url = w.ticket_url(&checkout.unwrap()).await;
    let id = ticket_url.rsplit('/').next().unwrap().to_owned();
    let failed = cinema::db::Outcome::Failed {
        ticket_id: id.clone(),
        payment_id: String::new(),
        session_id: None,
        reason: "The payment service could not be reached. Please try again.".into(),
    };
    w.db.apply(None, failed, cinema::now_ms()).await.unwrap();
    let t = w.db.ticket(id).await.unwrap().unwrap();
    assert_eq!(t.status, cinema::db::TicketStatus::Pending, "its session is live: {t:?}");
}

#[tokio::test]
async fn a_booking_form_sent_twice_books_once() {
    let w = common::world(SimConfig::interactive()).await;
    let form_id = |html: String| html.split("name=\"booking\" value=\"").nth(1).unwrap()[..20].to_owned();
    let booking = form_id(w.get(&format!("{}/movies/1", w.shop)).await);
    assert_ne!(booking, form_id(w.get(&format!("{}/movies/1", w.shop)).await), "each form its own id");
    let send = |quantity: &'static str| {
        let (http, url, booking) = (w.http.clone(), format!("{}/movies/1", w.shop), booking.clone());
        async move {
            let fields = [("name", "Wanjiku"), ("phone", "0712345678"), ("quantity", quantity), ("booking", &booking)];
            let r = http.post(url).form(&fields).send().await.unwrap();
            (r.status().as_u16(), r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()))
        }
    };
    // A double click: both at once, then a reload of the answer.
    let (a, b) = tokio::join!(send("2"), send("2"));
    let c = send("2").await;
    assert_eq!((a.0, b.0, c.0), (303, 303, 303));
    assert_eq!(a.1, b.1, "one checkout");
    assert_eq!(a.1, c.1, "one checkout");
    assert!(w.get(&w.shop).await.contains("38 seats left"), "two seats held, not four or six");

    // Back, changed to 3 seats, sent again: a booking of its own.
    let d = send("3").await;
    assert_eq!(d.0, 303);
    assert_ne!(d.1, a.1);
    assert!(w.get(&w.shop).await.contains("35 seats left"));
}

/// Books one seat of movie 1 and pays; returns the ticket page's URL and id.
async fn paid_ticket(w: &common::World, phone: &str) -> (String, String) {
    let (_, checkout) = w.book(1, phone, 1).await;
    let checkout = checkout.unwrap();
    let ticket = w.ticket_url(&checkout).await;
    w.pay(&checkout, phone).await;
    w.wait_for(&ticket, ">Paid<").await;
    let id = ticket.rsplit('/').next().unwrap().to_owned();
    (ticket, id)
}

#[tokio::test]
async fn a_cancelled_booking_is_refunded_and_its_seats_released_when_lipa_says_so() {
    let w = common::world(SimConfig::default()).await;
    let (ticket, id) = paid_ticket(&w, "0700000000").await;
    assert!(w.get(&w.shop).await.contains("39 seats left"));
    let before = w.sim.sim().phone(254_700_000_000).balance;
    let html = w.get(&ticket).await;
    assert!(html.contains("Cancel booking and refund KES\u{a0}450"), "{html}");

    let cancel = format!("{ticket}/cancel");
    let r = w.http.post(&cancel).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let html = w.wait_for(&ticket, "Booking cancelled").await;
    assert!(html.contains("was refunded to your M-PESA"), "{html}");
    assert!(w.get(&w.shop).await.contains("40 seats left"), "the seat is on sale again");
    assert_eq!(w.sim.sim().phone(254_700_000_000).balance, before + 450);

    // Cancelling again moves nothing more.
    w.http.post(&cancel).send().await.unwrap();
    let reversals = w.sim.sim().initiator_requests();
    assert_eq!(reversals.len(), 1, "{reversals:?}");
    let t = w.db.ticket(id).await.unwrap().unwrap();
    assert_eq!(t.refund_status, Some(cinema::refunds::RefundState::Succeeded));
}

#[tokio::test]
async fn a_refund_m_pesa_refuses_keeps_the_booking_and_says_so() {
    let w = common::world(SimConfig::default()).await;
    let (ticket, _) = paid_ticket(&w, "0700000000").await;
    let receipt = w.sim.sim().transactions()[0].receipt.clone().unwrap();
    w.sim.sim().script_result(
        &receipt,
        daraja_sim::ResultFaults { result_code: Some("21".into()), ..daraja_sim::ResultFaults::default() },
    );
    w.http.post(format!("{ticket}/cancel")).send().await.unwrap();
    let html = w.wait_for(&ticket, "could not refund").await;
    assert!(html.contains("Your tickets") && html.contains("Cancel booking and refund"), "{html}");
    assert!(w.get(&w.shop).await.contains("39 seats left"), "the seat stays taken");
}
