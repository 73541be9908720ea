-- Single sign-on (issue 11, part 6): a tenant's OpenID Connect provider and
-- the sign-ins under way with it.
--
-- The client secret is stored as given: the host sends it to the
-- provider's token endpoint, so it cannot be hashed. No API or CLI answer
-- ever contains it (docs/sso.md: protect the data directory as you protect
-- the operator token). `state` and `nonce` are stored only as sha256
-- hashes; the PKCE verifier must be sent to the token endpoint, so it is
-- kept as is, for the few minutes a sign-in may take, and works once.

CREATE TABLE sso_providers (
    tenant_id              TEXT PRIMARY KEY REFERENCES tenants(id),
    issuer                 TEXT NOT NULL,
    client_id              TEXT NOT NULL,
    client_secret          TEXT NOT NULL,
    allowed_domains        TEXT NOT NULL,        -- JSON array of lower-cased domains; [] = any
    provision_members      INTEGER NOT NULL CHECK (provision_members IN (0, 1)),
    -- From the provider's discovery document, read when configured.
    authorization_endpoint TEXT NOT NULL,
    token_endpoint         TEXT NOT NULL,
    jwks_uri               TEXT NOT NULL,
    token_auth             TEXT NOT NULL CHECK (token_auth IN ('client_secret_basic', 'client_secret_post')),
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);

CREATE TABLE sso_logins (
    state_hash    TEXT PRIMARY KEY,               -- sha256 of `state`
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    nonce_hash    TEXT NOT NULL,                  -- sha256 of `nonce`
    browser_hash  TEXT NOT NULL,                  -- sha256 of the `souk_sso` cookie set at the start
    code_verifier TEXT NOT NULL,                  -- PKCE (S256)
    redirect_uri  TEXT NOT NULL,                  -- sent again with the code
    return_to     TEXT NOT NULL,                  -- a relative path
    created_at    TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,               -- unix seconds
    used_at       TEXT
);

CREATE INDEX sso_logins_by_expiry ON sso_logins (expires_at);

-- The audit log also records single sign-on: the provider configured or
-- removed, and each sign-in through it. SQLite cannot alter a CHECK, so
-- the table is rebuilt with its rows and ids (as 0005 did).
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
                     'sso_configure', 'sso_remove', 'sso_login')),
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
