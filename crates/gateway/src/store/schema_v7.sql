-- v7: hostile input (one text for SQLite and PostgreSQL).
-- The review list of callbacks: those no payment took, and malformed bodies also when they name
-- a payment. Partial, so settled callbacks never touch it.
CREATE INDEX callbacks_review ON callbacks (id)
    WHERE resolved_at IS NULL AND (payment_id IS NULL OR outcome = 'malformed');

-- Callbacks no payment took, beyond what is stored of them (a budget per minute): counted per
-- minute instead, so that an outsider sending junk cannot fill the disk.
CREATE TABLE unmatched_callback_counts (
    minute  BIGINT PRIMARY KEY,
    count   BIGINT NOT NULL,
    bytes   BIGINT NOT NULL,
    last_at BIGINT NOT NULL
);

-- Sign-in attempts per user name and per client address in the current throttling window,
-- shared by every process on the database. Rows of windows that ended are deleted.
CREATE TABLE login_attempts (
    key          TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    attempts     BIGINT NOT NULL
);
CREATE INDEX login_attempts_window ON login_attempts (window_start);
