-- The migration ledger records what each applied migration was: the
-- sha256 of its up and down SQL (host/src/installer.rs,
-- `migration_checksum`), as `sha256:<hex>`. An upgrade whose new version
-- changed an already applied migration is refused. Rows written before
-- this column existed keep NULL: unknown, so never compared.
ALTER TABLE migration_ledger ADD COLUMN checksum TEXT;
