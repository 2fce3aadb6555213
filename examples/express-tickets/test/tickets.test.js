'use strict';
// End to end: a real `lipa serve` (simulator mode) and the app, driven over HTTP the way a
// customer's browser and Lipa's webhook deliveries would. Run by ../test.sh.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { createApp, verifyLipaSignature } = require('../app');

const LIPA_BIN = process.env.LIPA_BIN;
if (!LIPA_BIN) throw new Error('LIPA_BIN is not set: point it at a built lipa binary (e.g. target/release/lipa)');

const WAIT_MS = 30_000;
let tmp, lipa, lipaLog = '', gatewayUrl, simUrl, apiKey, webhookSecret, appServer, appUrl;

// ---- helpers ------------------------------------------------------------------------------

async function waitFor(what, check, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last?.ok ?? last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; last seen: ${JSON.stringify(last)?.slice(0, 600)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function get(url) {
  const res = await fetch(url, { redirect: 'manual' });
  return { status: res.status, location: res.headers.get('location'), text: await res.text() };
}

async function api(method, urlPath, body, idempotencyKey) {
  const headers = { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' };
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  const res = await fetch(gatewayUrl + urlPath, { method, headers, body: body && JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

async function simulator(urlPath, body) {
  const res = await fetch(simUrl + urlPath, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  assert.ok(res.ok, `simulator ${urlPath} answered ${res.status}: ${await res.text()}`);
}

const decode = (s) => s.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>');

// Submits the hosted checkout page's POST form as a browser would: every input it holds, with
// `fields` typed over them. Returns where Lipa sends the customer next.
async function submitCheckoutForm(pageUrl, fields) {
  const page = await get(pageUrl);
  assert.equal(page.status, 200, `checkout page ${pageUrl}: ${page.status}`);
  const form = page.text.match(/<form\b[^>]*method="post"[^>]*>[\s\S]*?<\/form>/i);
  assert.ok(form, `no POST form on the checkout page: ${page.text.slice(0, 800)}`);
  const action = decode(form[0].match(/action="([^"]*)"/)[1]);
  const values = new URLSearchParams();
  for (const input of form[0].matchAll(/<input\b[^>]*>/gi)) {
    const name = input[0].match(/\bname="([^"]*)"/)?.[1];
    if (name) values.set(name, decode(input[0].match(/\bvalue="([^"]*)"/)?.[1] ?? ''));
  }
  for (const [name, value] of Object.entries(fields)) {
    assert.ok(values.has(name), `the checkout form has no field "${name}" (fields: ${[...values.keys()]})`);
    values.set(name, value);
  }
  const res = await fetch(new URL(action, pageUrl), { method: 'POST', redirect: 'manual', body: values });
  const text = await res.text();
  assert.equal(res.status, 303, `submitting the checkout form answered ${res.status}: ${text.slice(0, 800)}`);
  return new URL(res.headers.get('location'), pageUrl).href;
}

// The customer presses "Buy a ticket": the app answers with a redirect to Lipa's checkout page.
async function buyTicket(eventId) {
  const res = await fetch(`${appUrl}/events/${eventId}/buy`, { method: 'POST', redirect: 'manual' });
  assert.equal(res.status, 303, `buying answered ${res.status}: ${await res.text()}`);
  const checkoutUrl = res.headers.get('location');
  assert.match(checkoutUrl, /\/checkout\/cs_[0-9a-f]{32}$/);
  const sessionId = checkoutUrl.split('/').pop();
  const session = await api('GET', `/v1/checkout-sessions/${sessionId}`);
  assert.equal(session.status, 200);
  const orderId = session.json.metadata.order_id;
  assert.match(orderId ?? '', /^ord_[0-9a-f]{8}$/, 'the session carries the order id in metadata');
  assert.equal(session.json.webhook_url, `${appUrl}/webhooks/lipa`);
  assert.equal(session.json.success_url, `${appUrl}/orders/${orderId}`);
  return { checkoutUrl, sessionId, orderId, orderUrl: `${appUrl}/orders/${orderId}`, session: session.json };
}

const sign = (secret, t, body) => `t=${t},v1=${crypto.createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex')}`;

async function postWebhook(body, signature) {
  const res = await fetch(`${appUrl}/webhooks/lipa`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...(signature && { 'Lipa-Signature': signature }) }, body,
  });
  return { status: res.status, json: await res.json() };
}

const paymentWebhooks = async (paymentId) => (await api('GET', `/v1/payments/${paymentId}/webhooks`)).json.events;

// ---- Lipa and the app ---------------------------------------------------------------------

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lipa-express-tickets-'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(LIPA_|MPESA_|DATABASE_URL$)/.test(k)));
  Object.assign(env, {
    DATABASE_URL: `sqlite:${path.join(tmp, 'lipa.db')}`, LIPA_CONFIG: '/nonexistent/lipa.toml',
    LIPA_WEBHOOK_ALLOW_PRIVATE: 'true', LIPA_LOG: 'warn',
  });
  const keys = execFileSync(LIPA_BIN, ['keys', 'create', '--name', 'shop'], { env, encoding: 'utf8' });
  apiKey = keys.match(/lipa_sk_\w+/)?.[0];
  webhookSecret = keys.match(/whsec_\w+/)?.[0];
  assert.ok(apiKey && webhookSecret, `no key or secret in the output of lipa keys create:\n${keys}`);

  lipa = spawn(LIPA_BIN, ['serve', '--listen', '127.0.0.1:0', '--sim-port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  process.on('exit', () => lipa.kill('SIGKILL')); // even if the test run dies
  lipa.stderr.on('data', (d) => { lipaLog = (lipaLog + d).slice(-4000); });
  const exited = new Promise((resolve) => lipa.once('exit', (code) => resolve(code)));
  // Keep reading stdout for the whole run, or lipa blocks on a full pipe.
  const urls = new Promise((resolve) => {
    readline.createInterface({ input: lipa.stdout }).on('line', (line) => {
      lipaLog = (lipaLog + line + '\n').slice(-4000);
      simUrl ??= line.match(/^Simulator \(Daraja\) at (http:\/\/[\d.:]+)/)?.[1];
      gatewayUrl ??= line.match(/^Lipa gateway listening on (http:\/\/[\d.:]+)/)?.[1];
      if (simUrl && gatewayUrl) resolve();
    });
  });
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('lipa serve printed no URLs in 30 s')), WAIT_MS).unref());
  await Promise.race([urls, timeout, exited.then((code) => { throw new Error(`lipa serve exited (${code}):\n${lipaLog}`); })]);

  // The app, on a free port. Its public URL (for success_url and webhook_url) is known once it listens.
  const config = { lipaUrl: gatewayUrl, apiKey, webhookSecret, publicUrl: null };
  appServer = createApp(config).listen(0, '127.0.0.1');
  await new Promise((resolve) => appServer.once('listening', resolve));
  appUrl = config.publicUrl = `http://127.0.0.1:${appServer.address().port}`;
});

after(async () => {
  if (appServer) { appServer.closeAllConnections(); appServer.close(); }
  if (lipa && lipa.exitCode === null && lipa.signalCode === null) {
    const gone = new Promise((resolve) => lipa.once('exit', resolve));
    lipa.kill('SIGTERM');
    const timer = setTimeout(() => lipa.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- the tests ----------------------------------------------------------------------------

let paid; // the order paid in the first test, redelivered in the second

test('a ticket is paid only after the verified webhook, and shows the M-Pesa receipt', async () => {
  const { checkoutUrl, sessionId, orderUrl, session } = await buyTicket('jazz-night');
  assert.equal(session.amount, 1500);

  // The customer's phone approves, but Daraja's callback to Lipa (and so Lipa's webhook) comes 3 s later.
  await simulator('/sim/phones/254711222333/script', { result: '0', after_ms: 0, faults: { delay: 3000 } });
  const next = await submitCheckoutForm(checkoutUrl, { phone: '0711 222 333' });
  assert.equal(next, checkoutUrl);
  assert.match((await get(checkoutUrl)).text, /Check your phone/);

  // The customer comes back to the shop before the payment is confirmed (any URL can be typed):
  // the return alone proves nothing, so the order waits.
  const early = await get(`${orderUrl}?session_id=${sessionId}`);
  assert.equal(early.status, 200);
  assert.match(early.text, /Waiting for confirmation/);
  assert.doesNotMatch(early.text, /receipt/i);

  // Lipa's page turns to the receipt; its "Return to shop" link goes to the success_url.
  const receiptPage = await waitFor('the checkout page to show the payment received', async () => {
    const p = await get(checkoutUrl);
    return /Payment received/.test(p.text) ? p.text : null;
  });
  const receipt = receiptPage.match(/<dt>M-PESA receipt<\/dt><dd>([A-Z0-9]+)<\/dd>/)?.[1];
  assert.ok(receipt, `no receipt on the checkout page: ${receiptPage}`);
  const returnUrl = decode(receiptPage.match(/<a class="button" href="([^"]+)">Return to shop/)[1]);
  assert.equal(returnUrl, `${orderUrl}?session_id=${sessionId}`);

  // The order turns paid once the signed payment.paid webhook has arrived.
  const ticket = await waitFor('the order to be paid (the webhook)', async () => {
    const p = await get(returnUrl);
    return /Your ticket/.test(p.text) ? p.text : null;
  });
  assert.match(ticket, new RegExp(`M-Pesa receipt <b class="receipt">${receipt}</b>`));

  const paymentId = (await api('GET', `/v1/checkout-sessions/${sessionId}`)).json.payment_id;
  const payment = (await api('GET', `/v1/payments/${paymentId}`)).json;
  assert.equal(payment.status, 'paid');
  assert.equal(payment.receipt, receipt);
  const [event] = (await paymentWebhooks(paymentId)).filter((e) => e.type === 'payment.paid');
  assert.equal(event.attempts.at(-1).status, 200, `webhook attempts: ${JSON.stringify(event.attempts)}`);
  paid = { orderUrl, paymentId, eventId: event.id, ticket };
});

test('a redelivered event (same event id, fresh signature) changes nothing', async () => {
  assert.ok(paid, 'needs the order paid by the previous test');
  const res = await api('POST', `/v1/webhook-events/${paid.eventId}/redeliver`);
  assert.equal(res.status, 202, JSON.stringify(res.json));
  const event = await waitFor('the redelivery to be answered', async () =>
    (await paymentWebhooks(paid.paymentId)).find((e) => e.id === paid.eventId && e.attempts.length >= 2 && e.attempts.at(-1).status !== null));
  const attempt = event.attempts.at(-1);
  assert.equal(attempt.status, 200, `redelivery: ${JSON.stringify(attempt)}`);
  assert.deepEqual(JSON.parse(attempt.response), { received: true, duplicate: true });
  assert.equal((await get(paid.orderUrl)).text, paid.ticket, 'the order page changed after the redelivery');
});

test('forged, replayed and re-serialised webhooks are refused and change nothing; the original bytes pass once', async () => {
  const { orderId, orderUrl } = await buyTicket('sauti-fest');
  const waiting = (await get(orderUrl)).text;
  assert.match(waiting, /Waiting for confirmation/);

  // To hold a genuine delivery (Lipa's exact bytes and signature) the test stands where an
  // attacker on the network would: it asks Lipa for a payment for this order whose webhook
  // comes to a capture server here instead of the app.
  const captured = [];
  const capture = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => { captured.push({ headers: req.headers, body: Buffer.concat(chunks) }); res.end('{}'); });
  });
  await new Promise((resolve) => capture.listen(0, '127.0.0.1', resolve));
  try {
    const created = await api('POST', '/v1/payments', {
      amount: 2500, phone: '0700000000', account_reference: orderId, description: 'Event ticket',
      metadata: { order_id: orderId }, webhook_url: `http://127.0.0.1:${capture.address().port}/`,
    }, `capture-${orderId}`);
    assert.equal(created.status, 201, JSON.stringify(created.json));
    await waitFor('Lipa to deliver payment.paid to the capture server', () => captured.length > 0);
  } finally {
    capture.closeAllConnections();
    capture.close();
  }
  const { headers, body } = captured[0];
  const original = headers['lipa-signature'];
  assert.match(headers['content-type'], /^application\/json/);
  assert.ok(verifyLipaSignature(webhookSecret, original, body), 'the verifier accepts a genuine delivery');
  const event = JSON.parse(body);
  assert.equal(event.type, 'payment.paid');
  assert.equal(headers['lipa-event-id'], event.id);

  const tampered = body.toString().replace('"amount":2500', '"amount":1');
  assert.notEqual(tampered, body.toString(), 'the amount is in the captured body');
  const now = Math.floor(Date.now() / 1000);
  const refused = {
    'no signature': [body, undefined],
    'forged (another secret)': [body, sign('whsec_not_the_secret', now, body)],
    'forged (data changed, original signature)': [tampered, original],
    'replayed (valid signature, 10 minutes old)': [body, sign(webhookSecret, now - 600, body)],
    'from the future (valid signature, 10 minutes ahead)': [body, sign(webhookSecret, now + 600, body)],
    're-serialised JSON (pretty-printed, original signature)': [JSON.stringify(event, null, 2), original],
  };
  for (const [name, [bytes, signature]] of Object.entries(refused)) {
    const res = await postWebhook(bytes, signature);
    assert.equal(res.status, 400, `${name}: answered ${res.status} ${JSON.stringify(res.json)}`);
    assert.equal((await get(orderUrl)).text, waiting, `${name}: the order changed`);
  }

  // The exact bytes with their signature pass, once.
  assert.deepEqual(await postWebhook(body, original), { status: 200, json: { received: true } });
  const ticket = (await get(orderUrl)).text;
  assert.match(ticket, new RegExp(`M-Pesa receipt <b class="receipt">${event.data.receipt}</b>`));
  assert.deepEqual(await postWebhook(body, original), { status: 200, json: { received: true, duplicate: true } });
  assert.equal((await get(orderUrl)).text, ticket);
});

test('a cancelled prompt fails the order (it is the current attempt); sending it again pays it', async () => {
  const { checkoutUrl, orderUrl } = await buyTicket('jazz-night');
  await submitCheckoutForm(checkoutUrl, { phone: '0700001032' }); // this phone cancels the prompt
  await waitFor('the order to fail (payment.failed webhook)', async () => /Payment did not go through/.test((await get(orderUrl)).text));
  const retry = await get(orderUrl);
  assert.match(retry.text, new RegExp(`<a href="${checkoutUrl}">Try again</a>`));

  // This time the customer enters the PIN: "Send the prompt again" on Lipa's page.
  await simulator('/sim/phones/254700001032/script', { result: '0', after_ms: 0 });
  assert.match((await get(checkoutUrl)).text, /Send the prompt again/);
  await submitCheckoutForm(checkoutUrl, {});
  const ticket = await waitFor('the order to be paid after the second attempt', async () => {
    const p = await get(orderUrl);
    return /Your ticket/.test(p.text) ? p.text : null;
  });
  assert.match(ticket, /M-Pesa receipt <b class="receipt">[A-Z0-9]{10}<\/b>/);
});
