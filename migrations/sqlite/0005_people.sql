-- People (issue 11, part 1): a tenant's users, their invitations and
-- sessions, and the tenant's API keys. Secrets are never stored: tokens and
-- keys as sha256 hashes (host/src/secrets.rs), passwords as argon2id PHC
-- strings. Instants the host compares (expiries, last use) are unix seconds
-- from the host's clock; the others are RFC 3339 text.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,               -- usr_<16 hex>
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    email         TEXT NOT NULL,                  -- as given (trimmed)
    email_key     TEXT NOT NULL,                  -- lower-cased: unique per tenant
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    status        TEXT NOT NULL CHECK (status IN ('invited', 'active', 'disabled')),
    member_number TEXT,                           -- a Membership member number, if linked
    password_hash TEXT,                           -- argon2id; NULL until an invitation is accepted
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (tenant_id, email_key)
);

CREATE INDEX users_by_tenant ON users (tenant_id, created_at, id);

-- One-time invitation tokens; a new invitation replaces the user's old one.
CREATE TABLE user_invitations (
    token_hash    TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,               -- unix seconds
    used_at       TEXT
);

CREATE INDEX user_invitations_by_user ON user_invitations (user_id);

CREATE TABLE user_sessions (
    id            TEXT PRIMARY KEY,               -- ses_<16 hex>
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash    TEXT NOT NULL UNIQUE,           -- sha256 of the session token
    csrf_hash     TEXT NOT NULL,                  -- sha256 of the session's CSRF token
    created_at    TEXT NOT NULL,
    last_seen     INTEGER NOT NULL,               -- unix seconds, advanced at most once a minute
    expires_at    INTEGER NOT NULL,               -- unix seconds: the absolute expiry
    revoked_at    TEXT,
    client        TEXT                            -- the client address at sign-in
);

CREATE INDEX user_sessions_by_user ON user_sessions (user_id, created_at);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,               -- key_<16 hex>
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    module_slug   TEXT NOT NULL,
    name          TEXT NOT NULL,
    read_only     INTEGER NOT NULL CHECK (read_only IN (0, 1)),
    key_hash      TEXT NOT NULL UNIQUE,           -- sha256 of the key
    created_at    TEXT NOT NULL,
    last_used     INTEGER,                        -- unix seconds, advanced at most once a minute
    revoked_at    TEXT
);

CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at, id);

-- The audit log also records people events (sign-ins, user and API key
-- changes), which concern no module: `module_slug` becomes optional and
-- the actions grow. SQLite cannot alter a CHECK, so the table is rebuilt
-- with its rows and ids.
CREATE TABLE audit_events_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    module_slug  TEXT,
    action       TEXT NOT NULL CHECK (action IN (
                     'install', 'upgrade', 'uninstall', 'restore',
                     'login', 'login_failed', 'logout',
                     'user_create', 'user_update', 'user_delete', 'invitation_accept',
                     'session_revoke', 'api_key_create', 'api_key_revoke')),
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
