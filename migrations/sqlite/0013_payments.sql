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

-- The audit log also records the operator's bank transfers
-- (`payment_manual`). SQLite cannot alter a CHECK, so the table is rebuilt
-- with its rows and ids (as 0005 and 0011 did). A later migration that
-- rebuilds it again must keep every action listed here.
CREATE TABLE audit_events_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    module_slug  TEXT,
    action       TEXT NOT NULL CHECK (action IN (
                     'install', 'upgrade', 'uninstall', 'restore',
                     'login', 'login_failed', 'logout',
                     'user_create', 'user_update', 'user_delete', 'invitation_accept',
                     'session_revoke', 'api_key_create', 'api_key_revoke',
                     'sso_configure', 'sso_remove', 'sso_login',
                     'payment_manual', 'payment_refund')),
    from_version TEXT,
    to_version   TEXT,
    actor_kind   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    actor_name   TEXT NOT NULL,
    detail       TEXT
);

INSERT INTO audit_events_new (id, at, tenant_id, module_slug, action, from_version,
                              to_version, actor_kind, actor_id, actor_name, detail)
    SELECT id, at, tenant_id, module_slug, action, from_version, to_version,
           actor_kind, actor_id, actor_name, detail
    FROM audit_events;

DROP TABLE audit_events;
ALTER TABLE audit_events_new RENAME TO audit_events;
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, id);

-- Credit notes (issue 14): an operator's refund of a paid invoice voids it
-- and issues a credit note for its total, numbered without gaps per fiscal
-- year like invoices (their sequence is `invoice_sequences` row
-- 'CN <fiscal year>').
CREATE TABLE credit_notes (
    id                 TEXT PRIMARY KEY,
    invoice_id         TEXT NOT NULL UNIQUE REFERENCES invoices(id),
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    number             TEXT NOT NULL UNIQUE,    -- e.g. 'CN-2026/27-000001'
    amount             INTEGER NOT NULL CHECK (typeof(amount) = 'integer' AND amount > 0),
    currency           TEXT NOT NULL,
    reason             TEXT NOT NULL,
    refund_reference   TEXT NOT NULL,           -- Stripe's refund id, or the operator's reference
    created_at         TEXT NOT NULL
);
