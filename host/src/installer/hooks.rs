//! Running a module's code during a lifecycle operation: listing and
//! checking its migrations, running their SQL in the tenant transaction,
//! and calling its install, upgrade or uninstall hook there.

use crate::work::Marked;
use std::sync::Arc;

use sqlx::{Sqlite, SqlitePool, Transaction};

use super::Installer;
use super::hook_usage::HookUsage;
use souk_module_registry::Manifest;

use crate::capabilities::CallState;
use crate::capabilities::context::CallContext;
use crate::capabilities::db::{CallTransaction, ModuleDb, SqlScope};
use crate::capabilities::files::FilesAccess;
use crate::capabilities::jobs::JobsState;
use crate::catalog::ResolvedVersion;
use crate::error::SoukError;
use crate::runtime::{LoadedModule, Migration};

impl Installer<'_> {
    /// The migrations `version` declares (listed once per version by the
    /// catalog, see [`crate::catalog::Catalog::migrations`]), checked: every
    /// id non-empty, at most 200 bytes, and unique.
    pub(super) async fn migrations_of(
        &self,
        version: &ResolvedVersion,
        loaded: &LoadedModule,
    ) -> Result<Arc<[Migration]>, SoukError> {
        let migrations = self
            .catalog
            .migrations(&version.digest, &version.manifest, loaded)
            .await
            .map_err(lifecycle("migrations()"))?;
        check_ids(&migrations)?;
        Ok(migrations)
    }
}

/// Checks the ids of a module's migrations: every id non-empty, at most 200
/// bytes, and unique.
fn check_ids(migrations: &[Migration]) -> Result<(), SoukError> {
    let mut seen = std::collections::HashSet::new();
    for m in migrations {
        if m.id.trim().is_empty() || m.id.len() > 200 {
            return Err(SoukError::LifecycleFailed(
                "a migration has an empty or overlong id".into(),
            ));
        }
        if !seen.insert(m.id.as_str()) {
            return Err(SoukError::LifecycleFailed(format!(
                "migration id {:?} appears twice",
                m.id
            )));
        }
    }
    Ok(())
}

/// The error for a lifecycle call (`what`) that failed.
pub(super) fn lifecycle(what: &'static str) -> impl Fn(crate::runtime::CallError) -> SoukError {
    move |e| SoukError::LifecycleFailed(format!("{what} failed: {e}"))
}

/// Begins the tenant transaction a lifecycle operation runs in, taking
/// the tenant database's write lock at once.
pub(super) async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, SoukError> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Checks the `up` and the `down` SQL of every migration against `scope`,
/// as migrations run them, so that a module whose down migrations could
/// never run (another module's table, a host table, a syntax error) is
/// refused when it is installed or upgraded, not when it is removed.
pub(super) async fn check_migrations(
    scope: &SqlScope,
    module: &str,
    migrations: &[Migration],
) -> Result<(), SoukError> {
    for m in migrations {
        for (direction, sql) in [("up", &m.up), ("down", &m.down)] {
            crate::capabilities::db::check_migration(scope, sql)
                .await
                .map_err(|e| {
                    SoukError::LifecycleFailed(format!(
                        "{module}: migration {} ({direction}) was refused: {e}",
                        m.id
                    ))
                })?;
        }
    }
    Ok(())
}

/// What a hook left to settle after its operation's tenant transaction
/// committed or rolled back: the work hint's guard (dropped then, waking
/// the workers), the hook's files access (its blobs collected then) and
/// the usage it counted (kept then). Dropped without [`HookWork::settle`]
/// (an error on the way), the guard drops, the files' pins are released
/// and the usage is undone; blobs of puts rolled back stay until the
/// startup sweep removes them.
#[derive(Default)]
pub(super) struct HookWork<'a> {
    marked: Option<Marked<'a>>,
    files: Option<FilesAccess>,
    usage: Option<HookUsage<'a>>,
}

impl HookWork<'_> {
    /// Call once the operation's tenant transaction has committed.
    pub(super) async fn settle(self) {
        drop(self.marked);
        if let Some(usage) = self.usage {
            usage.keep();
        }
        if let Some(files) = self.files {
            files.settle().await;
        }
    }
}

/// The module a hook runs for: its manifest (its `files` declaration), its
/// tenant database's pool (the files access reads through it) and the
/// entitlements the hook runs with (`None`: without a subscription, as the
/// uninstall hook runs).
pub(super) struct HookModule<'m, 'a> {
    pub(super) manifest: &'m Manifest,
    pub(super) pool: &'m SqlitePool,
    pub(super) usage: Option<HookUsage<'a>>,
}

/// Which lifecycle hook to run.
pub(super) enum Hook<'a> {
    /// After a first install's migrations.
    Install,
    /// Before an uninstall's down migrations.
    Uninstall,
    /// After an upgrade's new migrations, with the version upgraded from.
    Upgrade(&'a str),
}

impl<'a> Installer<'a> {
    /// Runs a migration's `sql` in `tx`: rewritten into the module's namespace,
    /// checked by SQLite's authorizer, bound to the configured migration budget
    /// (see [`crate::capabilities::db::run_migration`]).
    pub(super) async fn run_migration_sql(
        &self,
        scope: &SqlScope,
        tx: &mut Transaction<'static, Sqlite>,
        migration: &str,
        direction: &str,
        sql: &str,
    ) -> Result<(), SoukError> {
        crate::capabilities::db::run_migration(tx, scope, sql, self.migration_timeout)
            .await
            .map_err(|e| match e {
                crate::capabilities::db::DbFailure::Refused(refusal) => SoukError::LifecycleFailed(
                    format!("migration {migration} ({direction}) was refused: {refusal}"),
                ),
                other => SoukError::LifecycleFailed(format!(
                    "migration {migration} ({direction}) failed: {other}"
                )),
            })
    }

    /// Runs a hook with database access inside `tx`; returns `tx` to
    /// continue, and what the hook leaves to settle once `tx` has committed
    /// or rolled back ([`HookWork`]).
    ///
    /// The install and upgrade hooks run with the entitlements of the
    /// subscription the module is installed or upgraded under
    /// ([`Installer::hook_usage`]): their consumes, releases, usage records
    /// and file puts count against the plan as a request's do, and they
    /// may seed a count (`seed-usage`). A hook that fails has its usage
    /// undone with its transaction.
    ///
    /// The install and upgrade hooks may also use `files` (a seed file,
    /// counted against the tenant's storage as for any call) and `jobs` (a
    /// first job, run once the operation commits), written in `tx` like
    /// their rows. The uninstall hook gets neither: the module's data,
    /// files included, has already been archived when it runs and is
    /// removed after it, so a file it stored or deleted would be lost or
    /// missing from the archive, and a job it queued would be cancelled
    /// as the job of a module no longer installed.
    pub(super) async fn run_hook(
        &self,
        loaded: &LoadedModule,
        ctx: CallContext,
        scope: Arc<SqlScope>,
        tx: Transaction<'static, Sqlite>,
        (module, hook): (HookModule<'_, 'a>, Hook<'_>),
    ) -> Result<(Transaction<'static, Sqlite>, HookWork<'a>), SoukError> {
        let tenant_id = ctx.tenant_id.clone();
        let limits = self.runtime.limits();
        let now = self.clock.now();
        let mut usage = module.usage;
        let mut state = CallState::for_hook(
            ctx,
            ModuleDb::new(scope, tx, limits.call_timeout),
            usage.as_mut().and_then(HookUsage::take),
            limits.memory_bytes,
            now,
        );
        state.events = crate::capabilities::events::EventsState::new(
            loaded.emits(),
            limits.max_event_payload_bytes,
            now,
        );
        if !matches!(hook, Hook::Uninstall) {
            state = state.with_files(FilesAccess::new(
                self.files.clone(),
                module.pool.clone(),
                &tenant_id,
                module.manifest.slug.as_str(),
                module.manifest.files.clone(),
                now,
            ));
            state.jobs = JobsState::new(self.enqueue, now);
        }
        let (name, outcome, call) = {
            let mut call = loaded
                .instantiate(state)
                .await
                .map_err(lifecycle("the module"))?;
            let (name, outcome) = match hook {
                Hook::Install => ("install", call.install().await),
                Hook::Uninstall => ("uninstall", call.uninstall().await),
                Hook::Upgrade(from) => ("upgrade", call.upgrade(from).await),
            };
            (name, outcome, call)
        };
        let mut state = call.into_state();
        // Back with its owner before anything can fail, so that a failure
        // undoes what the hook counted.
        if let Some(usage) = usage.as_mut() {
            usage.put_back(state.entitlements.take());
        }
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(SoukError::LifecycleFailed(format!(
                    "the {name} hook refused: {message}"
                )));
            }
            Err(e) => {
                return Err(SoukError::LifecycleFailed(format!(
                    "the {name} hook failed: {e}"
                )));
            }
        }
        let files = state.files.take();
        let tx = state
            .db
            .take_transaction()
            .and_then(CallTransaction::into_open)
            .ok_or_else(|| {
                SoukError::Internal(anyhow::anyhow!("the {name} hook lost its transaction"))
            })?;
        let marked = if state.work.is_empty() {
            None
        } else {
            let marked = self
                .work
                .mark(&tenant_id, state.work, self.clock.now())
                .await
                .map_err(|e| SoukError::Internal(anyhow::anyhow!("work hints: {e}")))?;
            Some(marked)
        };
        Ok((
            tx,
            HookWork {
                marked,
                files,
                usage,
            },
        ))
    }
}
