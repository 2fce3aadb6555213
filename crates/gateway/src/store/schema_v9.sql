-- v9: refunds (Daraja's Reversal, answered later at a result URL), one text for SQLite and
-- PostgreSQL.
--
-- A refund moves a paid payment's whole amount back. `status`: pending (asked, or about to be
-- asked), succeeded (Daraja reversed it), failed (Daraja refused, or says it never happened).
-- At most one refund per payment is pending or succeeded (refunds_once): a failed one may be
-- followed by another. `send_state`: new (not yet sent), sending (sent, answer not yet
-- stored), accepted (Daraja queued it: originator_conversation_id), refused (Daraja answered
-- with an error: nothing queued), unknown (no answer: Daraja may have queued it, so it is
-- never sent again; it is asked about, or left for staff). A result, a queue timeout and a
-- Transaction Status answer reach the refund at secret URLs (`result_token_hash`); their
-- bodies are kept in `callbacks` with the refund's payment.
CREATE TABLE refunds (
    id                         TEXT PRIMARY KEY,
    payment_id                 TEXT NOT NULL,
    api_key_id                 TEXT,
    idempotency_key            TEXT,
    request_hash               TEXT NOT NULL,
    amount                     BIGINT NOT NULL,
    reason                     TEXT NOT NULL,
    requested_by               TEXT NOT NULL,
    status                     TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    send_state                 TEXT NOT NULL CHECK (send_state IN ('new', 'sending', 'accepted', 'refused', 'unknown')),
    result_token_hash          TEXT NOT NULL UNIQUE,
    originator_conversation_id TEXT UNIQUE,
    conversation_id            TEXT,
    reversal_receipt           TEXT UNIQUE,
    result_code                TEXT,
    result_desc                TEXT,
    note                       TEXT NOT NULL DEFAULT '',
    needs_review               BIGINT NOT NULL DEFAULT 0,
    timed_out                  BIGINT NOT NULL DEFAULT 0,
    status_checks              BIGINT NOT NULL DEFAULT 0,
    next_check_at              BIGINT,
    lease_until                BIGINT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL,
    settled_at                 BIGINT
);
CREATE UNIQUE INDEX refunds_once ON refunds (payment_id) WHERE status <> 'failed';
CREATE UNIQUE INDEX refunds_idempotency ON refunds (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX refunds_payment ON refunds (payment_id, created_at);
CREATE INDEX refunds_due ON refunds (next_check_at) WHERE status = 'pending';

ALTER TABLE payments ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0;

-- Emails are receipts or refund notices.
ALTER TABLE emails ADD COLUMN refund_id TEXT;

-- Receipts checked with Transaction Status: a disputed receipt, or the receipt a customer shows
-- for a payment confirmed without one. `status`: asked, found, not_found, failed (Daraja could
-- not answer: `note` says why). `detail`: what Daraja said, as JSON. The answer reaches the
-- check at a secret URL (`token_hash`); its body is kept in `callbacks`.
CREATE TABLE receipt_checks (
    id           TEXT PRIMARY KEY,
    receipt      TEXT NOT NULL,
    payment_id   TEXT,
    requested_by TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    status       TEXT NOT NULL CHECK (status IN ('asked', 'found', 'not_found', 'failed')),
    detail       TEXT NOT NULL DEFAULT '{}',
    note         TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    answered_at  BIGINT
);
CREATE INDEX receipt_checks_payment ON receipt_checks (payment_id, created_at);

-- The dashboard finds a reference however it is typed.
CREATE INDEX payments_reference_folded ON payments (LOWER(account_reference));
