-- Stripe subscriptions (issue 14, section 2): a paid plan bought through a
-- Checkout Session in `subscription` mode is renewed by Stripe. This table
-- links the Stripe subscription to Souk's own (tenant, module)
-- subscription, and keeps what the host needs to apply Stripe's events in
-- order: the newest event applied (`last_event_at`, Stripe's `created`)
-- and the end of the newest period paid (`paid_through`), so an older
-- event never moves the subscription backwards.
CREATE TABLE stripe_subscriptions (
    id                    TEXT PRIMARY KEY,        -- Stripe's sub_...
    tenant_id             TEXT NOT NULL REFERENCES tenants(id),
    module_slug           TEXT NOT NULL,
    plan                  TEXT NOT NULL,           -- our plan it was bought for
    customer              TEXT,                    -- Stripe's cus_...
    attempt_id            TEXT NOT NULL REFERENCES payment_attempts(id),
    status                TEXT NOT NULL,           -- Stripe's word: active, past_due, canceled, ...
    cancel_at_period_end  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_at_period_end IN (0, 1)),
    current_period_end    INTEGER,                 -- unix seconds, as Stripe last said
    paid_through          INTEGER,                 -- unix seconds: end of the newest period paid
    last_event_at         INTEGER,                 -- unix seconds: `created` of the newest event applied
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);

CREATE INDEX stripe_subscriptions_by_tenant ON stripe_subscriptions (tenant_id, module_slug);

-- The audit log also records an operator voiding an open invoice
-- (`payment_void`). SQLite cannot alter a CHECK, so the table is rebuilt
-- with its rows and ids (as 0005, 0011 and 0013 did). A later migration
-- that rebuilds it again must keep every action listed here.
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
                     'payment_manual', 'payment_refund', 'payment_void')),
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

-- The inbox's outcomes gain `applied`: a Stripe subscription event that
-- changed a subscription without a payment (a cancellation scheduled or
-- undone, a plan changed at Stripe, a subscription deleted). Rebuilt with
-- its rows, as above.
CREATE TABLE payment_inbox_new (
    provider     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    attempt_id   TEXT REFERENCES payment_attempts(id),
    status       TEXT NOT NULL,
    amount       INTEGER,
    currency     TEXT,
    occurred_at  INTEGER NOT NULL,
    received_at  TEXT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('granted', 'held', 'failed', 'ignored', 'flagged', 'applied')),
    reason       TEXT,
    PRIMARY KEY (provider, event_id)
);

INSERT INTO payment_inbox_new (provider, event_id, attempt_id, status, amount, currency,
                               occurred_at, received_at, outcome, reason)
    SELECT provider, event_id, attempt_id, status, amount, currency,
           occurred_at, received_at, outcome, reason
    FROM payment_inbox;

DROP TABLE payment_inbox;
ALTER TABLE payment_inbox_new RENAME TO payment_inbox;
CREATE INDEX payment_inbox_flagged ON payment_inbox (outcome, received_at);
