'use strict';
const crypto = require('node:crypto');

// Verifies a Lipa webhook; copy this function into any Node project as it is.
//   header:  the `Lipa-Signature` header, "t=<unix seconds>,v1=<hex HMAC-SHA256>"
//   rawBody: the request body EXACTLY as received (a Buffer). Not JSON.stringify(req.body):
//            JSON parsed and serialised again is other bytes (spacing, key order, escapes,
//            numbers), so its HMAC is not the one Lipa signed.
// True only for an HMAC keyed with `secret` over "<t>." + rawBody, made within
// `toleranceSeconds` of now (the replay window).
function verifyLipaSignature(secret, header, rawBody, toleranceSeconds = 300, nowSeconds = Date.now() / 1000) {
  let t = null;
  const signatures = [];
  for (const part of String(header ?? '').split(',')) {
    const [key, value] = part.trim().split('=');
    if (key === 't' && /^\d+$/.test(value)) t = value;
    else if (key === 'v1' && value) signatures.push(value);
  }
  if (t === null || !Buffer.isBuffer(rawBody) || Math.abs(nowSeconds - Number(t)) > toleranceSeconds) return false;
  const expected = Buffer.from(crypto.createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest('hex'));
  return signatures.some((hex) => {
    const given = Buffer.from(hex);
    // timingSafeEqual throws on buffers of different lengths; a length is no secret.
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
}

module.exports = { verifyLipaSignature };
