'use strict';
// Tickets for events, paid through Lipa's hosted checkout. Orders and processed webhook events
// live in memory to keep the example short; a real app keeps both in its database (see README).
const crypto = require('node:crypto');
const express = require('express');
const { verifyLipaSignature } = require('./lipa-signature');

const EVENTS = {
  'jazz-night': { name: 'Jazz Night at the Alliance', price: 1500 },
  'sauti-fest': { name: 'Sauti Festival day pass', price: 2500 },
};

// config: { lipaUrl, apiKey, webhookSecret, publicUrl } (publicUrl is read per request).
function createApp(config) {
  const orders = new Map(); // order id -> { id, event, status: pending|paid|failed, sessionId, checkoutUrl, receipt, paidAt }
  const processedEvents = new Map(); // Lipa event id -> when it was applied
  const app = express();

  async function lipa(method, path, body, idempotencyKey) {
    const headers = { Authorization: `Bearer ${config.apiKey}`, 'Content-Type': 'application/json' };
    if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
    const res = await fetch(config.lipaUrl + path, { method, headers, body: body && JSON.stringify(body) });
    const json = await res.json();
    if (!res.ok) throw new Error(`Lipa ${method} ${path}: ${res.status} ${json.error?.code}: ${json.error?.message}`);
    return json;
  }
  const page = (title, body, refresh) => `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>${title}</title>${refresh ? '<meta http-equiv="refresh" content="3">' : ''}</head><body><h1>${title}</h1>${body}</body></html>`;

  app.get('/', (req, res) => {
    const items = Object.entries(EVENTS).map(([id, e]) =>
      `<li>${e.name}, KES ${e.price} <form method="post" action="/events/${id}/buy"><button>Buy a ticket</button></form></li>`);
    res.send(page('Tickets', `<ul>${items.join('')}</ul>`));
  });

  app.post('/events/:id/buy', async (req, res) => {
    const event = Object.hasOwn(EVENTS, req.params.id) && EVENTS[req.params.id];
    if (!event) return res.status(404).send(page('No such event', ''));
    const order = { id: `ord_${crypto.randomBytes(4).toString('hex')}`, event, status: 'pending' };
    orders.set(order.id, order);
    const session = await lipa('POST', '/v1/checkout-sessions', {
      amount: event.price, account_reference: order.id, description: 'Event ticket',
      success_url: `${config.publicUrl}/orders/${order.id}`, cancel_url: `${config.publicUrl}/`,
      metadata: { order_id: order.id }, webhook_url: `${config.publicUrl}/webhooks/lipa`,
    }, order.id); // Idempotency-Key: a retried request for this order never makes a second session
    Object.assign(order, { sessionId: session.id, checkoutUrl: session.url });
    res.redirect(303, session.url);
  });

  // The success_url. Coming back here proves nothing (anyone can open this URL): the order is
  // paid only when the signed payment.paid webhook has arrived.
  app.get('/orders/:id', (req, res) => {
    const order = orders.get(req.params.id);
    if (!order) return res.status(404).send(page('No such order', ''));
    if (order.status === 'paid') {
      return res.send(page('Your ticket', `<p>${order.event.name}</p><p>Ticket ${order.id}</p>
<p>M-Pesa receipt <b class="receipt">${order.receipt}</b></p><p>Paid at ${order.paidAt}</p>`));
    }
    if (order.status === 'failed') {
      return res.send(page('Payment did not go through', `<p><a href="${order.checkoutUrl}">Try again</a></p>`));
    }
    res.send(page('Waiting for confirmation', '<p>Waiting for confirmation of your M-Pesa payment…</p>', true));
  });

  // express.raw on THIS route only, so req.body is the Buffer of the exact bytes Lipa signed.
  // The mistake most Node handlers make: a global express.json() and then verifying
  // JSON.stringify(req.body). That is re-serialised JSON, not the bytes Lipa signed, and it
  // fails (or passes by luck until a body is formatted differently). Register a global
  // express.json() AFTER this route, never before it.
  app.post('/webhooks/lipa', express.raw({ type: 'application/json' }), async (req, res) => {
    if (!verifyLipaSignature(config.webhookSecret, req.get('Lipa-Signature'), req.body)) {
      return res.status(400).json({ error: 'invalid signature' });
    }
    const event = JSON.parse(req.body); // only now: the bytes are Lipa's
    if (processedEvents.has(event.id)) return res.json({ received: true, duplicate: true });
    const payment = event.data;
    const order = orders.get(payment?.metadata?.order_id);
    if (order && event.type === 'payment.paid' && order.status !== 'paid') {
      // Money moved: apply it whenever it comes, even after a failed attempt; never twice.
      Object.assign(order, { status: 'paid', receipt: payment.receipt, paymentId: payment.id, paidAt: new Date().toISOString() });
    } else if (order && ['payment.failed', 'payment.expired'].includes(event.type) && order.status === 'pending') {
      // Events come in any order: fail the order only if this is still the session's latest attempt.
      const session = await lipa('GET', `/v1/checkout-sessions/${order.sessionId}`);
      if (session.payment_id === payment.id && order.status === 'pending') order.status = 'failed';
    }
    processedEvents.set(event.id, new Date().toISOString());
    res.json({ received: true });
  });
  return app;
}

module.exports = { createApp, verifyLipaSignature };

if (require.main === module) {
  const { LIPA_URL = 'http://127.0.0.1:8080', LIPA_API_KEY, LIPA_WEBHOOK_SECRET, PUBLIC_URL = 'http://127.0.0.1:3000', PORT = '3000' } = process.env;
  if (!LIPA_API_KEY || !LIPA_WEBHOOK_SECRET) throw new Error('set LIPA_API_KEY and LIPA_WEBHOOK_SECRET (from `lipa keys create`)');
  createApp({ lipaUrl: LIPA_URL, apiKey: LIPA_API_KEY, webhookSecret: LIPA_WEBHOOK_SECRET, publicUrl: PUBLIC_URL })
    .listen(Number(PORT), '127.0.0.1', () => console.log(`Tickets on http://127.0.0.1:${PORT}`));
}
