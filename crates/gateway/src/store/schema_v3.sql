-- v3 (one text for SQLite and PostgreSQL): receipt emails through an outbox (written with the
-- `paid` change, sent by a worker), and hosted checkout sessions (a customer-facing page that
-- creates payments for a merchant).
CREATE TABLE emails (
    id              TEXT PRIMARY KEY,
    payment_id      TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT,
    lease_until     BIGINT,
    sent_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX emails_payment ON emails (payment_id);
CREATE INDEX emails_due ON emails (next_attempt_at) WHERE status = 'pending';

CREATE TABLE checkout_sessions (
    id                TEXT PRIMARY KEY,
    api_key_id        TEXT NOT NULL,
    idempotency_key   TEXT,
    request_hash      TEXT NOT NULL,
    amount            INTEGER NOT NULL,
    account_reference TEXT NOT NULL,
    description       TEXT NOT NULL,
    success_url       TEXT NOT NULL,
    cancel_url        TEXT NOT NULL,
    phone             TEXT,
    customer_email    TEXT,
    webhook_url       TEXT,
    metadata          TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    payment_id        TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX checkout_sessions_idempotency ON checkout_sessions (api_key_id, idempotency_key);
