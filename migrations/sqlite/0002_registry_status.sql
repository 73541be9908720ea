-- What the host last verified about each version from its registry: who
-- signed it, and whether its publisher yanked, deprecated or revoked it.
ALTER TABLE module_versions ADD COLUMN signer TEXT;
ALTER TABLE module_versions ADD COLUMN yanked_reason TEXT;
ALTER TABLE module_versions ADD COLUMN deprecated_reason TEXT;
ALTER TABLE module_versions ADD COLUMN revoked_reason TEXT;
