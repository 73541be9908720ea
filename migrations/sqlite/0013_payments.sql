-- Payment attempts and the one inbox every provider event and confirmation
-- goes through (issue 14).
CREATE TABLE payment_attempts (
    id             TEXT PRIMARY KEY,
    invoice_id     TEXT NOT NULL REFERENCES invoices(id),
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    provider       TEXT NOT NULL,               -- 'esewa', 'khalti', 'stripe', 'manual'
    provider_ref   TEXT NOT NULL,               -- eSewa transaction_uuid, Khalti pidx, Stripe session id
    amount         INTEGER NOT NULL CHECK (typeof(amount) = 'integer' AND amount > 0),
    currency       TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('initiating', 'pending', 'ambiguous', 'paid', 'failed', 'canceled')),
    last_event_at  INTEGER,                     -- unix seconds of the newest provider event applied
    next_check_at  INTEGER,                     -- unix seconds: when reconciliation asks again
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (provider, provider_ref)
);

CREATE INDEX payment_attempts_by_invoice ON payment_attempts (invoice_id);
CREATE INDEX payment_attempts_to_check ON payment_attempts (status, next_check_at);

-- One row per provider event or confirmation, keyed by (provider, event id):
-- recording the same one twice changes nothing. Written in the same
-- transaction as whatever the event changes.
CREATE TABLE payment_inbox (
    provider     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    attempt_id   TEXT REFERENCES payment_attempts(id),
    status       TEXT NOT NULL,                 -- what the provider said: completed, pending, ...
    amount       INTEGER,
    currency     TEXT,
    occurred_at  INTEGER NOT NULL,              -- unix seconds, the provider's time (or receipt)
    received_at  TEXT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('granted', 'held', 'failed', 'ignored', 'flagged')),
    reason       TEXT,                          -- why it was ignored or flagged
    PRIMARY KEY (provider, event_id)
);

CREATE INDEX payment_inbox_flagged ON payment_inbox (outcome, received_at);
