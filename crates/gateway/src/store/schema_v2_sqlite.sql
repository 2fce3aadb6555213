-- v2: signed webhooks through an outbox. Events are written in the same transaction as the
-- payment change they announce; the payload is fixed then, so every retry sends the same bytes.
ALTER TABLE api_keys ADD COLUMN webhook_secret TEXT;

CREATE TABLE webhook_events (
    id              TEXT PRIMARY KEY,
    payment_id      TEXT NOT NULL,
    api_key_id      TEXT NOT NULL,
    type            TEXT NOT NULL,
    url             TEXT,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead', 'no_endpoint')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER,
    lease_until     INTEGER,
    delivered_at    INTEGER
);
CREATE INDEX webhook_events_payment ON webhook_events (payment_id);
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL,
    at         INTEGER NOT NULL,
    url        TEXT NOT NULL,
    status     INTEGER,
    latency_ms INTEGER NOT NULL,
    error      TEXT,
    response   TEXT NOT NULL
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, id);
