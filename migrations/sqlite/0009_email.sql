-- Email (docs/email.md): how far the host has read the billing outbox for
-- the notices it emails to a tenant's admins (trial ending, payment due).
-- One row; a notice is queued once per event and admin in the tenant's
-- outbox (its dedupe key), so reading an event twice queues nothing new.
CREATE TABLE mail_notice_cursor (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    last_outbox_id INTEGER NOT NULL
);

-- Events written before this host sent email are history: a notice about
-- them now would be stale (a trial that ended months ago).
INSERT INTO mail_notice_cursor (id, last_outbox_id) SELECT 1, COALESCE(MAX(id), 0) FROM outbox;
