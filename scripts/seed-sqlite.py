#!/usr/bin/env python3
"""Bulk-seed a migrated Lipa SQLite database with N payments for benchmarks.

    DATABASE_URL=sqlite:/tmp/big.db cargo run --release -- migrate
    scripts/seed-sqlite.py /tmp/big.db 1000000 [recent]

Payment i has id pay_<i as 24 hex digits> and belongs to the API key key_bench, whose key is
lipa_sk_ followed by 32 'b's (the one `lipa bench lookups` uses). 70 % are paid, 20 % failed,
10 % expired, spread over 30 days ending at a fixed instant; with `recent`, spread over the 7
days ending now (all of them in the admin overview's week: its worst case).
"""
import hashlib
import random
import sqlite3
import sys
import time

path, n = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=OFF")
key = "lipa_sk_" + "b" * 32
db.execute(
    "INSERT OR IGNORE INTO api_keys (id, name, key_hash, prefix, created_at) VALUES ('key_bench', 'bench', ?, ?, 0)",
    (hashlib.sha256(key.encode()).hexdigest(), key[:12]),
)
rng = random.Random(42)
recent = len(sys.argv) > 3 and sys.argv[3] == "recent"
now = int(time.time() * 1000) if recent else 1_790_000_000_000
span = (7 if recent else 30) * 86_400_000
batch = []
for i in range(n):
    r = rng.random()
    status = "paid" if r < 0.7 else "failed" if r < 0.9 else "expired"
    created = now - rng.randrange(span)
    paid = status == "paid"
    batch.append((
        f"pay_{i:024x}", "key_bench", None, "h", rng.randrange(1, 5000), f"2547{rng.randrange(10**8):08d}",
        f"INV{i % 100000}", "Seeded", "{}", None, None, status,
        None if paid else ("cancelled" if status == "failed" else None),
        "0" if paid else ("1032" if status == "failed" else None), None,
        "callback" if status != "expired" else "expiry", 0,
        hashlib.sha256(f"seed-token-{i}".encode()).hexdigest(), "accepted",
        f"m-{i}", f"ws_CO_seed{i}", f"US{i:08d}" if paid else None, created + 30_000 if paid else None,
        created, created + 30_000, created + 30_000,
    ))
    if len(batch) == 20_000:
        db.executemany(
            "INSERT INTO payments (id, api_key_id, idempotency_key, request_hash, amount, phone, account_reference,"
            " description, metadata, webhook_url, customer_email, status, failure_reason, result_code, result_desc,"
            " settled_by, needs_review, callback_token_hash, push_state, merchant_request_id, checkout_request_id,"
            " receipt, transaction_date, created_at, updated_at, settled_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            batch,
        )
        db.commit()
        batch.clear()
if batch:
    db.executemany(
        "INSERT INTO payments (id, api_key_id, idempotency_key, request_hash, amount, phone, account_reference,"
        " description, metadata, webhook_url, customer_email, status, failure_reason, result_code, result_desc,"
        " settled_by, needs_review, callback_token_hash, push_state, merchant_request_id, checkout_request_id,"
        " receipt, transaction_date, created_at, updated_at, settled_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        batch,
    )
    db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(f"seeded {n} payments into {path}")
