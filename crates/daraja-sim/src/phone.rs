//! The virtual phone: a small mobile-looking page per MSISDN where a person sees the STK
//! prompt, types a PIN and presses Send or Cancel, or lets it time out. The page is rendered
//! on the server (it works without JavaScript, with a refresh every 3 s) and polls a JSON state
//! endpoint every second when JavaScript is on, so prompts appear without reloading.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::c2b::{C2bStatus, C2bTransaction, ManualPayment};
use crate::records::{PhoneView, Transaction};
use crate::sim::{PhoneAction, Sim};

pub(crate) fn routes() -> axum::Router<Sim> {
    axum::Router::new()
        .route("/phone", get(index))
        .route("/phone/{msisdn}", get(page))
        .route("/phone/{msisdn}/state", get(state))
        .route("/phone/{msisdn}/respond", post(respond))
        .route("/phone/{msisdn}/pay", post(pay_by_hand))
}

/// Escapes text for HTML element and attribute content.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn local(msisdn: u64) -> String {
    format!("0{}", msisdn % 1_000_000_000)
}

const STYLE: &str = r#"
*{box-sizing:border-box}body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#1d2b24;color:#111;display:flex;justify-content:center;padding:16px}
.phone{width:100%;max-width:360px;min-height:620px;background:#f4f6f5;border-radius:28px;border:10px solid #0b1310;padding:18px;position:relative}
.bar{display:flex;justify-content:space-between;font-size:12px;color:#555;margin-bottom:18px}
h1{font-size:18px;margin:0 0 4px}.muted{color:#666;font-size:14px}
.dialog{background:#fff;border-radius:14px;box-shadow:0 6px 24px rgba(0,0,0,.18);padding:18px;margin-top:24px}
.dialog p{margin:0 0 14px;line-height:1.4}
label{display:block;margin-top:8px;font-size:14px}summary{cursor:pointer;padding:8px 0;font-weight:600}
section input{display:block;margin-top:4px;font-size:18px!important;letter-spacing:1px!important;text-align:left!important}
input[type=password],input[type=tel],input[type=text]{width:100%;font-size:22px;letter-spacing:6px;padding:10px;border:1px solid #bbb;border-radius:8px;text-align:center}
.buttons{display:flex;gap:10px;margin-top:14px}button{flex:1;font-size:16px;padding:12px;border:0;border-radius:8px;cursor:pointer}
.send{background:#1e7b34;color:#fff}.cancel{background:#e3e6e4}.sms{background:#fff;border-radius:14px;padding:14px;margin-top:16px;font-size:14px;line-height:1.4}
.ok{border-left:4px solid #3aa843}.fail{border-left:4px solid #c0392b}a{color:#1f7a2b}ul{padding-left:18px}
"#;

fn prompt_html(msisdn: u64, t: &Transaction, pin_hint: &str) -> String {
    format!(
        r#"<form class="dialog" method="post" action="/phone/{msisdn}/respond" data-prompt="{id}">
<p>Do you want to pay <b>KES {amount}</b> to <b>{business}</b>, account no. <b>{reference}</b>?</p>
<label for="pin">Enter M-PESA PIN</label>
<input type="hidden" name="checkout_request_id" value="{id}">
<input id="pin" type="password" name="pin" inputmode="numeric" autocomplete="off" maxlength="6" autofocus>
<div class="buttons"><button class="cancel" name="action" value="cancel">Cancel</button><button class="send" name="action" value="send">Send</button></div>
<p class="muted" style="margin-top:10px">Virtual phone PIN: {pin_hint}</p>
</form>"#,
        id = escape(&t.checkout_request_id),
        amount = t.amount,
        business = escape(&t.business_name),
        reference = escape(&t.account_reference),
        pin_hint = escape(pin_hint),
    )
}

fn last_html(t: &Transaction) -> String {
    match (t.result_code.as_deref(), &t.receipt) {
        (Some("0"), Some(receipt)) => format!(
            r#"<div class="sms ok"><b>{receipt}</b> Confirmed. KES {amount}.00 sent to {business} for account {reference}.</div>"#,
            receipt = escape(receipt),
            amount = t.amount,
            business = escape(&t.business_name),
            reference = escape(&t.account_reference),
        ),
        (code, _) => format!(
            r#"<div class="sms fail">Payment of KES {amount} to {business} did not go through: {desc} (code {code}).</div>"#,
            amount = t.amount,
            business = escape(&t.business_name),
            desc = escape(t.result_desc.as_deref().unwrap_or("")),
            code = escape(code.unwrap_or("?")),
        ),
    }
}

fn screen(view: &PhoneView, pin_hint: &str) -> String {
    let mut out = String::new();
    if let Some(t) = &view.open_prompt {
        out.push_str(&prompt_html(view.msisdn, t, pin_hint));
    } else {
        out.push_str(r#"<p class="muted" style="margin-top:24px">No M-PESA request right now. Prompts appear here by themselves.</p>"#);
    }
    if let Some(t) = &view.last {
        out.push_str(&last_html(t));
    }
    out
}

/// The "Lipa na M-PESA" menu: Pay Bill and Buy Goods, paid by hand with the PIN.
fn menu_html(msisdn: u64, pin_hint: &str) -> String {
    format!(
        r#"<section class="dialog" aria-labelledby="lipa"><h2 id="lipa" style="font-size:16px;margin:0 0 8px">Lipa na M-PESA</h2>
<details><summary>Pay Bill</summary><form method="post" action="/phone/{msisdn}/pay">
<label>Business no.<input type="tel" name="shortcode" inputmode="numeric" required></label>
<label>Account no.<input type="text" name="account" required maxlength="20"></label>
<label>Amount<input type="tel" name="amount" inputmode="numeric" required></label>
<label>M-PESA PIN<input type="password" name="pin" inputmode="numeric" maxlength="6" required></label>
<div class="buttons"><button class="send">Pay</button></div></form></details>
<details><summary>Buy Goods and Services</summary><form method="post" action="/phone/{msisdn}/pay">
<label>Till no.<input type="tel" name="shortcode" inputmode="numeric" required></label>
<label>Amount<input type="tel" name="amount" inputmode="numeric" required></label>
<label>M-PESA PIN<input type="password" name="pin" inputmode="numeric" maxlength="6" required></label>
<div class="buttons"><button class="send">Pay</button></div></form></details>
<p class="muted" style="margin:10px 0 0">Virtual phone PIN: {pin_hint}</p></section>"#,
        pin_hint = escape(pin_hint),
    )
}

/// The SMS after a payment by hand.
fn c2b_sms(sim: &Sim, t: &C2bTransaction) -> String {
    let business = sim.config().merchants.iter().find(|m| m.shortcode == t.shortcode).map_or("", |m| m.name.as_str());
    let account = if t.account.is_empty() { String::new() } else { format!(" for account {}", escape(&t.account)) };
    match t.status {
        C2bStatus::Completed => format!(
            r#"<div class="sms ok"><b>{id}</b> Confirmed. KES {amount}.00 paid to {business}{account}.</div>"#,
            id = escape(&t.trans_id),
            amount = t.amount,
            business = escape(business),
        ),
        _ => format!(
            r#"<div class="sms fail">Payment of KES {amount} to {business}{account} did not go through: {why}.</div>"#,
            amount = t.amount,
            business = escape(business),
            why = match (t.status, t.result_code.as_deref()) {
                (C2bStatus::Rejected, _) => "the business declined it; check the account number and amount",
                (C2bStatus::Cancelled, _) => "the business did not answer in time",
                (_, Some("1")) => "not enough money in M-PESA",
                (_, Some("4")) => "over your daily limit",
                (_, Some("2001")) => "wrong PIN",
                (_, Some("8006")) => "your PIN is locked",
                _ => "M-PESA could not complete it",
            },
        ),
    }
}

#[derive(Deserialize)]
struct Shown {
    c2b: Option<String>,
    error: Option<String>,
}

async fn page(State(sim): State<Sim>, Path(raw): Path<String>, Query(shown): Query<Shown>) -> Response {
    let Some(msisdn) = crate::normalize_msisdn(&raw) else {
        return (StatusCode::BAD_REQUEST, Html(format!("<p>{} is not a Kenyan mobile number.</p>", escape(&raw))))
            .into_response();
    };
    let view = sim.phone(msisdn);
    let paid = match (&shown.c2b, &shown.error) {
        (Some(id), _) => sim
            .c2b_transactions()
            .iter()
            .find(|t| &t.trans_id == id && t.phone == msisdn)
            .map(|t| c2b_sms(&sim, t))
            .unwrap_or_default(),
        (None, Some(error)) => format!(r#"<div class="sms fail">{}</div>"#, escape(error)),
        (None, None) => String::new(),
    };
    let body = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Virtual phone {local}</title><noscript><meta http-equiv="refresh" content="3"></noscript><style>{STYLE}</style></head>
<body><main class="phone"><div class="bar"><span>Safaricom (simulated)</span><span>{local}</span></div>
<h1>M-PESA</h1><p class="muted">Balance: KES <span id="balance">{balance}</span></p>
<div id="screen">{screen}</div>{paid}
{menu}
<p class="muted" style="margin-top:24px"><a href="/phone">All phones</a></p></main>
<script>
const screenEl=document.getElementById('screen'),balanceEl=document.getElementById('balance');
let shown=(screenEl.querySelector('[data-prompt]')||{{}}).dataset?.prompt||'';
async function poll(){{try{{const r=await fetch('/phone/{msisdn}/state');if(r.ok){{const s=await r.json();balanceEl.textContent=s.balance;
if(s.prompt_id!==shown||(!s.prompt_id&&s.html!==screenEl.innerHTML)){{shown=s.prompt_id;screenEl.innerHTML=s.html;const p=document.getElementById('pin');if(p)p.focus();}}}}}}catch(e){{}}
setTimeout(poll,1000);}}
setTimeout(poll,1000);
</script></body></html>"#,
        local = local(msisdn),
        balance = view.balance,
        screen = screen(&view, &sim.config().pin),
        paid = paid,
        menu = menu_html(msisdn, &sim.config().pin),
    );
    Html(body).into_response()
}

async fn state(State(sim): State<Sim>, Path(raw): Path<String>) -> Response {
    let Some(msisdn) = crate::normalize_msisdn(&raw) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "not a Kenyan mobile number"}))).into_response();
    };
    let view = sim.phone(msisdn);
    Json(json!({
        "msisdn": msisdn,
        "balance": view.balance,
        "prompt_id": view.open_prompt.as_ref().map(|t| t.checkout_request_id.clone()),
        "html": screen(&view, &sim.config().pin),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct Respond {
    checkout_request_id: String,
    action: String,
    #[serde(default)]
    pin: String,
}

async fn respond(State(sim): State<Sim>, Path(raw): Path<String>, Form(form): Form<Respond>) -> Response {
    let Some(msisdn) = crate::normalize_msisdn(&raw) else {
        return (StatusCode::BAD_REQUEST, "not a Kenyan mobile number").into_response();
    };
    let action = if form.action == "cancel" { PhoneAction::Cancel } else { PhoneAction::Send { pin: form.pin } };
    sim.respond(msisdn, &form.checkout_request_id, action);
    Redirect::to(&format!("/phone/{msisdn}")).into_response()
}

#[derive(Deserialize)]
struct PayForm {
    shortcode: String,
    #[serde(default)]
    account: String,
    amount: String,
    pin: String,
}

/// A payment by hand from the menu: shows the SMS that follows (or what was wrong).
async fn pay_by_hand(State(sim): State<Sim>, Path(raw): Path<String>, Form(form): Form<PayForm>) -> Response {
    let Some(msisdn) = crate::normalize_msisdn(&raw) else {
        return (StatusCode::BAD_REQUEST, "not a Kenyan mobile number").into_response();
    };
    let back = |query: String| Redirect::to(&format!("/phone/{msisdn}?{query}")).into_response();
    let error = |why: &str| back(format!("error={}", encode(why)));
    let (Ok(shortcode), Ok(amount)) = (form.shortcode.trim().parse(), form.amount.trim().parse()) else {
        return error("Enter the business or till number and the amount in digits.");
    };
    let payment = ManualPayment {
        shortcode,
        account: form.account,
        amount,
        phone: msisdn.to_string(),
        pin: Some(form.pin),
        faults: None,
    };
    match sim.c2b_pay(payment).await {
        Ok(t) => back(format!("c2b={}", encode(&t.trans_id))),
        Err(why) => error(&why),
    }
}

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct Open {
    msisdn: Option<String>,
}

async fn index(State(sim): State<Sim>, Query(open): Query<Open>) -> Response {
    if let Some(msisdn) = open.msisdn.as_deref().and_then(crate::normalize_msisdn) {
        return Redirect::to(&format!("/phone/{msisdn}")).into_response();
    }
    let prompts: String = sim
        .open_prompts()
        .iter()
        .map(|t| {
            format!(
                r#"<li><a href="/phone/{m}">{local}</a>: KES {amount} to {business}</li>"#,
                m = t.phone,
                local = local(t.phone),
                amount = t.amount,
                business = escape(&t.business_name)
            )
        })
        .collect();
    let prompts = if prompts.is_empty() { "<li>None right now.</li>".to_owned() } else { prompts };
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Virtual phones</title><style>{STYLE}</style></head>
<body><main class="phone"><h1>Virtual phones</h1><p class="muted">Phones with an open M-PESA prompt:</p><ul id="prompts">{prompts}</ul>
<noscript><p class="muted"><a href="/phone">Refresh the list</a></p></noscript>
<script>
// Only the list is refreshed, every 3 s: what is typed below stays.
setInterval(function () {{
  fetch("/phone", {{cache: "no-store"}}).then(function (r) {{ return r.text(); }}).then(function (html) {{
    var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("prompts");
    var list = document.getElementById("prompts");
    if (fresh && list && fresh.innerHTML !== list.innerHTML) {{ list.innerHTML = fresh.innerHTML; }}
  }}).catch(function () {{}});
}}, 3000);
</script>
<form method="get" action="/phone"><label for="m">Open a phone</label><input id="m" type="tel" name="msisdn" placeholder="0712 345 678">
<div class="buttons"><button class="send">Open</button></div></form></main></body></html>"#
    ))
    .into_response()
}
