-- Lipa schema v1 (PostgreSQL): the same tables and rules as the SQLite schema.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

CREATE TABLE payments (
    id                  TEXT PRIMARY KEY,
    api_key_id          TEXT NOT NULL,
    idempotency_key     TEXT,
    request_hash        TEXT NOT NULL,
    amount              BIGINT NOT NULL CHECK (amount BETWEEN 1 AND 250000),
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
    needs_review        BOOLEAN NOT NULL DEFAULT FALSE,
    callback_token_hash TEXT NOT NULL UNIQUE,
    push_state          TEXT NOT NULL,
    merchant_request_id TEXT,
    checkout_request_id TEXT UNIQUE,
    receipt             TEXT UNIQUE,
    transaction_date    BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    settled_at          BIGINT,
    next_check_at       BIGINT,
    check_attempts      INTEGER NOT NULL DEFAULT 0,
    lease_until         BIGINT,
    UNIQUE (api_key_id, idempotency_key)
);
CREATE INDEX payments_created ON payments (created_at, id);
CREATE INDEX payments_phone_created ON payments (phone, created_at);
CREATE INDEX payments_due ON payments (next_check_at) WHERE status = 'pending' AND next_check_at IS NOT NULL;

CREATE TABLE callbacks (
    id                  BIGSERIAL PRIMARY KEY,
    received_at         BIGINT NOT NULL,
    payment_id          TEXT,
    token_hash          TEXT NOT NULL,
    source              TEXT,
    checkout_request_id TEXT,
    outcome             TEXT NOT NULL,
    note                TEXT NOT NULL,
    body                BYTEA NOT NULL,
    resolved_at         BIGINT
);
CREATE INDEX callbacks_payment ON callbacks (payment_id);
CREATE INDEX callbacks_outcome ON callbacks (outcome, resolved_at);

CREATE TABLE events (
    id         BIGSERIAL PRIMARY KEY,
    payment_id TEXT NOT NULL,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX events_payment ON events (payment_id, id);
