-- Subscriptions: one per tenant per module (issue 4). The full state of a
-- subscription (plan, price, currency, periods, grace, scheduled change,
-- prepaid periods) is kept as JSON in `data`, parsed by the host into
-- billing::subscription::Subscription; the columns beside it exist for
-- queries (maintenance scans, listings) and are written together with it.
CREATE TABLE subscriptions (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    module_slug  TEXT NOT NULL,
    plan         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('trialing', 'active', 'past_due', 'canceled', 'expired')),
    period_end   INTEGER NOT NULL,              -- unix seconds: the next moment maintenance may act
    data         TEXT NOT NULL,
    revision     INTEGER NOT NULL,              -- +1 on every change; caches compare it
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, module_slug)
);

-- Every change to a subscription: who, when, from what to what.
CREATE TABLE subscription_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,                 -- the host clock's time of the change
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    module_slug  TEXT NOT NULL,
    action       TEXT NOT NULL,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    plan         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    detail       TEXT
);

CREATE INDEX subscription_events_by_tenant ON subscription_events (tenant_id, id);

-- Notifications waiting to be sent (trial ending, trial ended, payment due,
-- expired, ...). `dedupe_key` makes writing an event idempotent, so a
-- maintenance run repeated for the same moment adds nothing.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    module_slug  TEXT NOT NULL,
    dedupe_key   TEXT NOT NULL UNIQUE,
    payload      TEXT NOT NULL,                 -- JSON
    delivered_at TEXT
);
