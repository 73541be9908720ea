-- Invoices (issue 14). An invoice is a draft until it is issued; issuing
-- takes the next number of its fiscal year from `invoice_sequences` in the
-- same transaction, so numbers are gap-free per host and fiscal year (a
-- draft that never issues takes no number; a void invoice keeps its own).
CREATE TABLE invoice_sequences (
    fiscal_year  TEXT PRIMARY KEY,              -- e.g. '2026/27'
    last_number  INTEGER NOT NULL CHECK (last_number > 0)
);

CREATE TABLE invoices (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    fiscal_year        TEXT,                    -- set when issued
    sequence           INTEGER,                 -- set when issued: 1, 2, 3, ... per fiscal year
    number             TEXT UNIQUE,             -- set when issued, e.g. 'INV-2026/27-000001'
    status             TEXT NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void')),
    currency           TEXT NOT NULL,
    subtotal           INTEGER NOT NULL CHECK (typeof(subtotal) = 'integer'),
    tax                INTEGER NOT NULL CHECK (typeof(tax) = 'integer'),
    total              INTEGER NOT NULL CHECK (typeof(total) = 'integer' AND total > 0),
    purchase           TEXT NOT NULL,           -- JSON: what paying grants
    seller             TEXT NOT NULL,           -- JSON: the seller as configured when issued
    buyer_name         TEXT NOT NULL,
    buyer_pan          TEXT,
    provider           TEXT,                    -- who confirmed the payment
    provider_reference TEXT,
    created_at         TEXT NOT NULL,
    issued_at          TEXT,
    paid_at            TEXT,
    voided_at          TEXT,
    UNIQUE (fiscal_year, sequence),
    CHECK ((status = 'draft') = (number IS NULL))
);

CREATE INDEX invoices_by_tenant ON invoices (tenant_id, created_at);

CREATE TABLE invoice_lines (
    invoice_id   TEXT NOT NULL REFERENCES invoices(id),
    position     INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('plan', 'proration_credit', 'bundle_discount', 'tax')),
    description  TEXT NOT NULL,
    module_slug  TEXT,
    plan         TEXT,
    amount       INTEGER NOT NULL CHECK (typeof(amount) = 'integer'),
    PRIMARY KEY (invoice_id, position)
);
