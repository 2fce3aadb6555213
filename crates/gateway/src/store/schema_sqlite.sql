-- Lipa schema v1 (SQLite). Money is integer shillings; times are UTC milliseconds.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);

CREATE TABLE payments (
    id                  TEXT PRIMARY KEY,
    api_key_id          TEXT NOT NULL,
    idempotency_key     TEXT,
    request_hash        TEXT NOT NULL,
    amount              INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 250000),
    phone               TEXT NOT NULL,
    account_reference   TEXT NOT NULL,
    description         TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    webhook_url         TEXT,
    customer_email      TEXT,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'failed', 'expired')),
    failure_reason      TEXT,
    result_code         TEXT,
    result_desc         TEXT,
    settled_by          TEXT,
    needs_review        INTEGER NOT NULL DEFAULT 0,
    callback_token_hash TEXT NOT NULL UNIQUE,
    push_state          TEXT NOT NULL,
    merchant_request_id TEXT,
    checkout_request_id TEXT UNIQUE,
    receipt             TEXT UNIQUE,
    transaction_date    INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    settled_at          INTEGER,
    next_check_at       INTEGER,
    check_attempts      INTEGER NOT NULL DEFAULT 0,
    lease_until         INTEGER,
    UNIQUE (api_key_id, idempotency_key)
);
CREATE INDEX payments_created ON payments (created_at, id);
CREATE INDEX payments_phone_created ON payments (phone, created_at);
-- Only pending payments with a query due are indexed: settling one deletes its entry.
CREATE INDEX payments_due ON payments (next_check_at) WHERE status = 'pending' AND next_check_at IS NOT NULL;

CREATE TABLE callbacks (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at         INTEGER NOT NULL,
    payment_id          TEXT,
    token_hash          TEXT NOT NULL,
    source              TEXT,
    checkout_request_id TEXT,
    outcome             TEXT NOT NULL,
    note                TEXT NOT NULL,
    body                BLOB NOT NULL,
    resolved_at         INTEGER
);
CREATE INDEX callbacks_payment ON callbacks (payment_id);
CREATE INDEX callbacks_outcome ON callbacks (outcome, resolved_at);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT NOT NULL,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX events_payment ON events (payment_id, id);
