-- Webhook endpoints a tenant registers per installed module (docs/webhooks.md).
-- The signing secret is kept so the host can sign deliveries; it is shown
-- once (at creation and at rotation) and never returned by the API again.
-- During a rotation's grace period the previous secret signs too.
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,            -- whk_ and 16 hex digits
    tenant_id             TEXT NOT NULL REFERENCES tenants(id),
    module_slug           TEXT NOT NULL,
    url                   TEXT NOT NULL,
    event_types           TEXT,                        -- JSON array of types; NULL = every type the module emits
    description           TEXT NOT NULL DEFAULT '',
    enabled               INTEGER NOT NULL DEFAULT 1,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until TEXT,                        -- RFC 3339; the previous secret signs until then
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);

CREATE INDEX webhook_endpoints_by_module ON webhook_endpoints (tenant_id, module_slug, created_at);
