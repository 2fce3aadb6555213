-- Bulk-seed a migrated Lipa PostgreSQL database with 1,000,000 payments for benchmarks, the
-- same shape as scripts/seed-sqlite.py (70 % paid, 20 % failed, 10 % expired, over 30 days,
-- API key key_bench whose key is lipa_sk_ followed by 32 'b's):
--
--   createdb -h 127.0.0.1 -U postgres lipa_big
--   DATABASE_URL=postgres://postgres@127.0.0.1:5432/lipa_big cargo run --release -- migrate
--   psql -h 127.0.0.1 -U postgres -d lipa_big -f scripts/seed-postgres.sql
INSERT INTO api_keys (id, name, key_hash, prefix, created_at)
VALUES ('key_bench', 'bench', encode(sha256(convert_to('lipa_sk_' || repeat('b', 32), 'UTF8')), 'hex'), 'lipa_sk_bbbb', 0)
ON CONFLICT DO NOTHING;
INSERT INTO payments (id, api_key_id, idempotency_key, request_hash, amount, phone, account_reference,
  description, metadata, webhook_url, customer_email, status, failure_reason, result_code, result_desc,
  settled_by, needs_review, callback_token_hash, push_state, merchant_request_id, checkout_request_id,
  receipt, transaction_date, created_at, updated_at, settled_at)
SELECT 'pay_' || lpad(to_hex(i), 24, '0'), 'key_bench', NULL, 'h', 1 + (random() * 4998)::int,
  '2547' || lpad((random() * 99999999)::int::text, 8, '0'), 'INV' || (i % 100000), 'Seeded', '{}', NULL, NULL,
  s, CASE s WHEN 'failed' THEN 'cancelled' END, CASE s WHEN 'paid' THEN '0' WHEN 'failed' THEN '1032' END, NULL,
  CASE s WHEN 'expired' THEN 'expiry' ELSE 'callback' END, false,
  encode(sha256(convert_to('seed-token-' || i, 'UTF8')), 'hex'), 'accepted', 'm-' || i, 'ws_CO_seed' || i,
  CASE s WHEN 'paid' THEN 'US' || lpad(i::text, 8, '0') END, CASE s WHEN 'paid' THEN c + 30000 END,
  c, c + 30000, c + 30000
FROM (SELECT i, CASE WHEN i % 10 < 7 THEN 'paid' WHEN i % 10 < 9 THEN 'failed' ELSE 'expired' END AS s,
             1790000000000 - (random() * 2592000000)::bigint AS c
      FROM generate_series(0, 999999) AS i) AS g;
VACUUM ANALYZE payments;
