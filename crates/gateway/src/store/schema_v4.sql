-- v4: the admin dashboard's users, sessions and audit log (one text for SQLite and PostgreSQL).
CREATE TABLE admin_users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at    BIGINT NOT NULL
);

CREATE TABLE admin_sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id     TEXT PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX payments_review ON payments (created_at) WHERE needs_review;
CREATE INDEX payments_settled ON payments (settled_at) WHERE settled_at IS NOT NULL;
CREATE INDEX webhook_events_dead ON webhook_events (created_at) WHERE status = 'dead';

-- The overview's rollups, per hour of creation: recomputed from `payments` by the workers for
-- hours that have settled down; the last hours are always counted live.
CREATE TABLE payment_hours (
    hour        BIGINT NOT NULL,
    status      TEXT NOT NULL,
    result_code TEXT NOT NULL,
    count       BIGINT NOT NULL,
    amount      BIGINT NOT NULL
);
CREATE INDEX payment_hours_hour ON payment_hours (hour);
CREATE TABLE settle_hours (
    hour  BIGINT NOT NULL,
    secs  BIGINT NOT NULL,
    count BIGINT NOT NULL
);
CREATE INDEX settle_hours_hour ON settle_hours (hour);

-- The time of a payment's last failed STK Query (NULL once Daraja answers): a payment is not
-- expired while Daraja cannot be asked about it, for up to a day.
ALTER TABLE payments ADD COLUMN query_failed_at BIGINT;
