-- v8: Paybill and Till payments (C2B), one text for SQLite and PostgreSQL.
-- Each payment gets an account number a customer can pay it by hand with; C2B payments to it
-- add up in amount_received until they cover the amount.
ALTER TABLE payments ADD COLUMN paybill_account TEXT;
ALTER TABLE payments ADD COLUMN amount_received BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX payments_paybill_account ON payments (paybill_account);

-- One row per M-Pesa transaction (TransID) heard of by C2B confirmation or Pull Transactions:
-- a transaction is recorded once, whatever number of copies arrive (counted in `copies`).
-- `status`: applied (counted towards payment_id), same_as_stk (the STK payment payment_id
-- already has this receipt), unmatched (for staff: no open payment took it), assigned (staff
-- gave it to payment_id), refunded_outside (staff refunded it without Lipa). An unmatched one
-- is announced (webhook c2b.unmatched) once it stayed unmatched a little while: `announced_at`.
-- `payer_hash`: SHA-256 of the payer's number when Daraja gave it plain or hashed (never the
-- number itself), to recognise an STK payment that a query settled without its receipt.
CREATE TABLE c2b_transactions (
    trans_id     TEXT PRIMARY KEY,
    received_at  BIGINT NOT NULL,
    trans_time   BIGINT NOT NULL,
    shortcode    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    account      TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    payer        TEXT NOT NULL,
    payer_name   TEXT NOT NULL,
    payer_hash   TEXT,
    payment_id   TEXT,
    status       TEXT NOT NULL,
    note         TEXT NOT NULL,
    source       TEXT NOT NULL,
    copies       BIGINT NOT NULL DEFAULT 1,
    body         TEXT NOT NULL,
    resolved_at  BIGINT,
    announced_at BIGINT
);
CREATE INDEX c2b_transactions_received ON c2b_transactions (received_at);
CREATE INDEX c2b_transactions_payment ON c2b_transactions (payment_id);
CREATE INDEX c2b_transactions_unmatched ON c2b_transactions (received_at) WHERE status = 'unmatched';

-- Values chosen once per installation (the secret path of the C2B URLs).
CREATE TABLE installation (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
