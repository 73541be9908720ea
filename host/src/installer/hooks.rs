//! Running a module's code during a lifecycle operation: listing and
//! checking its migrations, running their SQL in the tenant transaction,
//! and calling its install, upgrade or uninstall hook there.

use crate::work::Marked;
use std::sync::Arc;

use sqlx::{Sqlite, SqlitePool, Transaction};

use super::Installer;
use crate::capabilities::CallState;
use crate::capabilities::context::CallContext;
use crate::capabilities::db::{CallTransaction, ModuleDb, SqlScope};
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
    /// continue, and — when the hook queued deferred work (events, mail,
    /// jobs) — the work hint's guard, to drop once `tx` has committed or
    /// rolled back.
    pub(super) async fn run_hook(
        &self,
        loaded: &LoadedModule,
        ctx: CallContext,
        scope: Arc<SqlScope>,
        tx: Transaction<'static, Sqlite>,
        hook: Hook<'_>,
    ) -> Result<(Transaction<'static, Sqlite>, Option<Marked<'a>>), SoukError> {
        let tenant_id = ctx.tenant_id.clone();
        let limits = self.runtime.limits();
        let mut state = CallState::for_hook(
            ctx,
            ModuleDb::new(scope, tx, limits.call_timeout),
            limits.memory_bytes,
        )
        .with_host_time(self.clock.now());
        state.events = crate::capabilities::events::EventsState::new(
            loaded.emits(),
            limits.max_event_payload_bytes,
            self.clock.now(),
        );
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
        let mut state = call.into_state();
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
        Ok((tx, marked))
    }
}
