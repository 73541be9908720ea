-- Souk control plane: the host's own state. Module data never lives here;
-- it lives in each tenant's own database.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,              -- internal id, names the tenant database file
    slug        TEXT NOT NULL UNIQUE,          -- public identifier used in URLs
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE tenant_tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,          -- sha256 of the token; the token itself is never stored
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE module_versions (
    slug         TEXT NOT NULL,
    version      TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    category     TEXT NOT NULL,
    api          TEXT NOT NULL,
    digest       TEXT NOT NULL,                -- sha256 of the package file
    manifest     TEXT NOT NULL,                -- module.yaml as packaged
    package_path TEXT NOT NULL,                -- content-addressed file under the data directory
    added_at     TEXT NOT NULL,
    PRIMARY KEY (slug, version)
);

CREATE TABLE installations (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    module_slug  TEXT NOT NULL,
    version      TEXT NOT NULL,
    digest       TEXT NOT NULL,
    installed_at TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, module_slug),
    FOREIGN KEY (module_slug, version) REFERENCES module_versions(slug, version)
);

-- Which migrations of which module have run in which tenant database.
CREATE TABLE migration_ledger (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    module_slug  TEXT NOT NULL,
    migration_id TEXT NOT NULL,
    position     INTEGER NOT NULL,
    applied_by   TEXT NOT NULL,                -- module version that applied it
    applied_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, module_slug, migration_id)
);

-- Every install, upgrade and uninstall: who, when, what.
CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    module_slug  TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('install', 'upgrade', 'uninstall', 'restore')),
    from_version TEXT,
    to_version   TEXT,
    actor_kind   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    actor_name   TEXT NOT NULL,
    detail       TEXT
);

CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, id);

-- Data exported before an uninstall, restorable by a reinstall.
CREATE TABLE archives (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    module_slug  TEXT NOT NULL,
    version      TEXT NOT NULL,
    path         TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
