//! Installing, upgrading and uninstalling modules for a tenant, atomically.
//!
//! Every operation runs the module's SQL and lifecycle hook inside one
//! `BEGIN IMMEDIATE` transaction on the tenant database, then records the
//! installation, the migration ledger (with each migration's checksum), the
//! free-plan subscription an install starts, and an audit event in one
//! control-plane transaction. The control plane commits first; if the tenant
//! commit then fails, the control-plane rows are removed again. A failure at
//! any step before that rolls back both, so nothing remains: no tables, no
//! ledger rows, no installation row, no subscription, no archive.
//!
//! # Serialisation
//! Install, upgrade and uninstall are serialised per tenant: within one
//! process by [`LifecycleLock`] (a second operation on the same tenant is
//! refused at once with [`SoukError::Conflict`] and changes nothing); across
//! processes sharing a data directory by the tenant database's write lock
//! (`BEGIN IMMEDIATE`) and by the control plane's keys, which make the
//! loser of a race fail before it commits anything.
//!
//! # Always removable
//! Down migrations are checked against the module's scope at install and
//! upgrade, exactly like up migrations. An uninstall that still fails (its
//! hook refuses, traps or times out; a down migration fails) can be forced
//! ([`Removal::Forced`]): the module's namespace is then dropped directly,
//! after its data is archived.
//!
//! # Layout
//! [`Installer`] borrows the services it needs (tenancy, catalog, runtime,
//! billing, the control plane, the host clock); the composition root builds
//! one per operation (`Souk::installer`). Its operations live by kind:
//! `install` (installs, lockfiles, the free-plan subscription an install
//! starts), `upgrade`, `uninstall` (normal, forced, rolling back a partial
//! install), `hooks` (running migrations and lifecycle hooks in the tenant
//! transaction), `hook_usage` (the entitlements an install or upgrade hook
//! runs with) and `shared` (reading installations, SQL scopes,
//! dependencies and dependants, the audit event, committing both databases
//! with its undo).

mod hook_usage;
mod hooks;
mod install;
mod shared;
mod uninstall;
mod upgrade;

use crate::work::WorkHints;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::archive::ArchiveInfo;
use crate::billing::service::Billing;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::control_plane::ControlPlane;
use crate::error::SoukError;
use crate::runtime::{Migration, Runtime};
use crate::tenancy::{Tenancy, Tenant};

pub use crate::control_plane::audit::AuditEvent;
pub use crate::control_plane::installations::Installation;

/// Installs, upgrades and uninstalls modules, over the services it borrows.
/// Cheap to build: the composition root builds one per operation.
pub struct Installer<'a> {
    /// Where installations, the ledger and the audit log are recorded.
    pub control: &'a ControlPlane,
    /// The tenants and their databases, where migrations and hooks run.
    pub tenancy: &'a Tenancy,
    /// The module versions to install, and their loaded components.
    pub catalog: &'a Catalog,
    /// Runs the lifecycle hooks.
    pub runtime: &'a Runtime,
    /// The plans an install may start a subscription on.
    pub billing: &'a Billing,
    /// The host's one clock, at full precision: stamps installations, the
    /// ledger, audit events and archives (subscriptions an install starts
    /// take billing's whole-second reading of the same clock).
    pub clock: &'a dyn Clock,
    /// Wall-clock budget of one migration's SQL (up or down text).
    pub migration_timeout: Duration,
    /// The currency a subscription started by an install is priced in
    /// (ISO 4217 code, as configured).
    pub currency: &'a str,
    /// The host's data directory; archives are written under
    /// `archives/` in it.
    pub data_dir: &'a Path,
    /// Module files: an uninstall archives them, a restore brings them
    /// back, and both collect blobs no row names any more.
    pub files: &'a crate::capabilities::files::FileService,
    /// Told, before a lifecycle commit, of the deferred work a hook queued.
    pub work: &'a WorkHints,
    /// What `jobs.enqueue` accepts in an install or upgrade hook.
    pub enqueue: crate::job_queue::EnqueueLimits,
}

impl Installer<'_> {
    /// Where uninstalls write their archives.
    fn archives_dir(&self) -> PathBuf {
        self.data_dir.join("archives")
    }
}

/// What to install.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// Module slug.
    pub module: String,
    /// Version; the newest when absent (or the archive's when restoring).
    #[serde(default)]
    pub version: Option<String>,
    /// Restore the data of this archive instead of running the install hook.
    #[serde(default)]
    pub restore_archive: Option<String>,
}

/// The outcome of an install or upgrade.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The installation now in place.
    pub installation: Installation,
    /// Migrations this operation applied, in order.
    pub applied_migrations: Vec<String>,
    /// Rows restored from an archive, if restoring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_rows: Option<u64>,
    /// Dependencies this install added first, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_installed: Vec<Installation>,
    /// The subscription this install started (its free plan), so that
    /// undoing the install can withdraw it again.
    #[serde(skip)]
    started_subscription: Option<install::StartedSubscription>,
}

/// The outcome of an uninstall.
#[derive(Debug, Clone, Serialize)]
pub struct UninstallReport {
    /// Module slug.
    pub module: String,
    /// The version that was removed.
    pub version: String,
    /// Migrations reverted, in order (none when forced: the namespace was
    /// dropped directly).
    pub reverted_migrations: Vec<String>,
    /// The archive the module's data was written to first (as the archive
    /// list shows it: by id, never by a server path).
    pub archive: ArchiveInfo,
    /// Set when the uninstall was forced: why the normal uninstall failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forced: Option<String>,
}

/// How an uninstall may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Run the module's uninstall hook and down migrations; any failure
    /// refuses the uninstall and changes nothing.
    Normal,
    /// Try the normal uninstall; if the module's hook or a down migration
    /// fails, archive the data and drop the module's namespace directly
    /// (every table, index, trigger and view with its prefix).
    ///
    /// The operator may force. A tenant token may force only its own
    /// tenant's modules and must confirm by repeating the module slug in
    /// `confirmation`.
    Forced {
        /// The module slug, repeated by a tenant token to confirm.
        confirmation: Option<String>,
    },
}

/// Longest failure reason kept in an audit event or a forced uninstall's
/// answer; a module's error text beyond it is cut.
const MAX_REASON_BYTES: usize = 1024;

/// Tenants (by id) with an install, upgrade or uninstall under way in this
/// process.
static BUSY_TENANTS: LazyLock<Mutex<HashSet<String>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// Held while a lifecycle operation runs for one tenant; released on drop
/// (also when the request's future is dropped midway).
#[derive(Debug)]
pub struct LifecycleLock {
    tenant_id: String,
}

impl LifecycleLock {
    /// Takes the lifecycle lock of `tenant` if no other install, upgrade or
    /// uninstall of that tenant runs in this process. Never waits.
    ///
    /// # Errors
    /// [`SoukError::Conflict`] (`operation in progress`) when one does.
    pub fn try_acquire(tenant: &Tenant) -> Result<Self, SoukError> {
        let mut busy = BUSY_TENANTS.lock().unwrap_or_else(PoisonError::into_inner);
        if !busy.insert(tenant.id.clone()) {
            return Err(SoukError::Conflict(format!(
                "operation in progress: another install, upgrade or uninstall is running for tenant {}; \
                 retry once it has finished",
                tenant.slug
            )));
        }
        Ok(LifecycleLock {
            tenant_id: tenant.id.clone(),
        })
    }
}

impl Drop for LifecycleLock {
    fn drop(&mut self) {
        BUSY_TENANTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.tenant_id);
    }
}

/// The checksum the migration ledger records for a migration:
/// `sha256:<hex>` of the length of its `up` SQL (8 bytes, big-endian), its
/// `up` SQL, then its `down` SQL. The length makes the split unambiguous.
pub fn migration_checksum(migration: &Migration) -> String {
    let mut hasher = Sha256::new();
    hasher.update((migration.up.len() as u64).to_be_bytes());
    hasher.update(migration.up.as_bytes());
    hasher.update(migration.down.as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// `text` cut to at most [`MAX_REASON_BYTES`] bytes on a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_REASON_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_REASON_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(up: &str, down: &str) -> Migration {
        Migration {
            id: "0001".into(),
            up: up.into(),
            down: down.into(),
        }
    }

    #[test]
    fn a_checksum_changes_with_either_sql_and_with_where_they_split() {
        let base = migration_checksum(&migration("CREATE TABLE a (x)", "DROP TABLE a"));
        assert!(
            base.starts_with("sha256:") && base.len() == 7 + 64,
            "{base}"
        );
        assert_eq!(
            base,
            migration_checksum(&migration("CREATE TABLE a (x)", "DROP TABLE a"))
        );
        for (up, down) in [
            ("CREATE TABLE a (y)", "DROP TABLE a"),
            ("CREATE TABLE a (x)", "DROP TABLE b"),
            ("CREATE TABLE a (x) ", "DROP TABLE a"),
            ("CREATE TABLE a (x)DROP TABLE a", ""),
            ("", "CREATE TABLE a (x)DROP TABLE a"),
            ("CREATE TABLE a (x)D", "ROP TABLE a"),
        ] {
            assert_ne!(
                base,
                migration_checksum(&migration(up, down)),
                "{up:?} {down:?}"
            );
        }
    }

    fn tenant(id: &str) -> Tenant {
        Tenant {
            id: id.into(),
            slug: format!("slug-{id}"),
            name: id.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn one_lifecycle_lock_per_tenant_released_on_drop() {
        let acme = tenant("t_lock_test_acme");
        let beta = tenant("t_lock_test_beta");
        let held = LifecycleLock::try_acquire(&acme).expect("first");
        let second = LifecycleLock::try_acquire(&acme);
        assert!(
            matches!(&second, Err(SoukError::Conflict(m)) if m.starts_with("operation in progress")),
            "{second:?}"
        );
        let other = LifecycleLock::try_acquire(&beta).expect("another tenant is not blocked");
        drop(held);
        let again = LifecycleLock::try_acquire(&acme).expect("released on drop");
        drop((again, other));
    }

    #[test]
    fn reasons_are_bounded_on_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = bounded(&long);
        assert!(
            cut.len() <= MAX_REASON_BYTES + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }
}
