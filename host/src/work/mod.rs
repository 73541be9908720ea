//! Deferred work: how the host's workers find the tenants that have work.
//!
//! Events, mail and jobs are queued in a tenant's own database, in the
//! transaction of the module call that queued them, so nothing is queued
//! for a call that rolls back. With thousands of tenants a worker cannot
//! look in every database to find them; it asks [`WorkHints`] instead: a
//! small SQLite file of its own (`work-hints.db` in the data directory)
//! with one row per (tenant, kind of work) that may have work, and when it
//! is due, mirrored in memory.
//!
//! The rule that keeps work from being forgotten: a hint is written
//! *before* the tenant transaction that queues the work commits
//! ([`WorkHints::mark`]), so a crash between the two leaves a hint without
//! work (a worker finds nothing and removes it), never work without a
//! hint. A worker removes a hint only when a pass over the tenant found
//! nothing left, no mark arrived during the pass ([`WorkHints::settle`]
//! compares sequence numbers) and no marked transaction is still open (its
//! [`Marked`] guard not yet dropped): work committed while the worker
//! looked is seen by its next pass.
//!
//! Capabilities record what a call queued in its [`WorkMarks`] (a field of
//! the call's state); whoever commits the call's transaction calls
//! [`WorkHints::mark`] before the commit and drops the [`Marked`] guard it
//! returns after the commit (or the rollback), which wakes the workers.
//! Another process sharing the data directory (the CLI running a hook)
//! writes hints to the same file; [`WorkHints::refresh`] picks them up.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::control_plane::sqlite_options;

/// The file, in the data directory, that keeps the hints.
pub const HINTS_FILE: &str = "work-hints.db";

/// A kind of deferred work, each served by its own worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkKind {
    /// Events to deliver to webhooks and to subscribing modules.
    Events,
    /// Mail to send.
    Email,
    /// Jobs to run.
    Jobs,
}

impl WorkKind {
    /// Every kind.
    pub const ALL: [WorkKind; 3] = [WorkKind::Events, WorkKind::Email, WorkKind::Jobs];

    /// The kind as the hints file writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkKind::Events => "events",
            WorkKind::Email => "email",
            WorkKind::Jobs => "jobs",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    fn index(self) -> usize {
        match self {
            WorkKind::Events => 0,
            WorkKind::Email => 1,
            WorkKind::Jobs => 2,
        }
    }
}

/// The kinds of deferred work one call queued (a field of its state).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkMarks(u8);

impl WorkMarks {
    /// Notes that the call queued work of `kind`.
    pub fn mark(&mut self, kind: WorkKind) {
        self.0 |= 1 << kind.index();
    }

    /// Whether the call queued nothing.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds marked.
    pub fn kinds(self) -> impl Iterator<Item = WorkKind> {
        WorkKind::ALL
            .into_iter()
            .filter(move |k| self.0 & (1 << k.index()) != 0)
    }
}

/// A tenant whose work of one kind is due, as [`WorkHints::due`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The tenant.
    pub tenant_id: String,
    /// The hint's sequence number when it was read; hand it back to
    /// [`WorkHints::settle`].
    pub seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Hint {
    /// Unix seconds from which the work is due.
    due: i64,
    /// Bumped by every mark in this process and by every marked
    /// transaction that ended.
    seq: u64,
    /// The row's `version` as this process last wrote or read it; bumped
    /// by every write of any process, so a worker never removes a hint
    /// another process renewed after it was read.
    version: i64,
    /// Marked transactions not yet committed or rolled back.
    open: u32,
}

struct State {
    hints: HashMap<(String, WorkKind), Hint>,
    /// `PRAGMA data_version` when the file was last read.
    data_version: Option<i64>,
}

/// Which tenants have deferred work of which kind, and when it is due.
pub struct WorkHints {
    /// One connection, used only under `file`; `PRAGMA data_version` on it
    /// moves only for other processes' commits.
    pool: SqlitePool,
    /// Serialises the file's reads and writes with the memory updates that
    /// follow them.
    file: tokio::sync::Mutex<()>,
    /// The hints in memory; never held across an await.
    state: Mutex<State>,
    wake: [Notify; 3],
}

/// The guard [`WorkHints::mark`] returns: keeps the hints it marked from
/// being removed while the marked transaction is open. Drop it after the
/// commit (or the rollback): that wakes the workers of its kinds.
#[must_use = "drop it after the transaction commits or rolls back"]
pub struct Marked<'a> {
    hints: &'a WorkHints,
    tenant_id: String,
    marks: WorkMarks,
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        {
            let mut state = self.hints.lock();
            for kind in self.marks.kinds() {
                if let Some(hint) = state.hints.get_mut(&(self.tenant_id.clone(), kind)) {
                    hint.open = hint.open.saturating_sub(1);
                    hint.seq += 1;
                }
            }
        }
        for kind in self.marks.kinds() {
            self.hints.wake[kind.index()].notify_one();
        }
    }
}

fn unix(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
}

impl WorkHints {
    /// Opens (creating if needed) the hints file in `data_dir` and reads it.
    ///
    /// # Errors
    /// When the file cannot be opened, created or read.
    pub async fn open(data_dir: &Path) -> Result<Self, sqlx::Error> {
        // FULL: the hint must be on disk before the tenant commit that
        // depends on it, even across a power loss.
        let options =
            sqlite_options(&data_dir.join(HINTS_FILE)).synchronous(SqliteSynchronous::Full);
        Self::with_options(options).await
    }

    /// Hints kept in memory only (tests).
    ///
    /// # Errors
    /// When SQLite fails.
    pub async fn in_memory() -> Result<Self, sqlx::Error> {
        Self::with_options(SqliteConnectOptions::from_str("sqlite::memory:")?).await
    }

    async fn with_options(options: SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS hints (
                tenant_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                due_at INTEGER NOT NULL,
                version INTEGER NOT NULL DEFAULT 1,
                PRIMARY KEY (tenant_id, kind)
            ) WITHOUT ROWID",
        )
        .execute(&pool)
        .await?;
        let hints = WorkHints {
            pool,
            file: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                hints: HashMap::new(),
                data_version: None,
            }),
            wake: [Notify::new(), Notify::new(), Notify::new()],
        };
        hints.refresh().await?;
        Ok(hints)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A map of plain values, changed only in whole steps: a panic
        // while it was held leaves it consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads hints other processes wrote since the last read (a no-op when
    /// the file did not change: one pragma).
    ///
    /// # Errors
    /// When SQLite fails.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        let _file = self.file.lock().await;
        let version: i64 = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&self.pool)
            .await?;
        if self.lock().data_version == Some(version) {
            return Ok(());
        }
        let rows = sqlx::query("SELECT tenant_id, kind, due_at, version FROM hints")
            .fetch_all(&self.pool)
            .await?;
        let mut woken = [false; 3];
        {
            let mut state = self.lock();
            for row in rows {
                let tenant: String = row.try_get(0)?;
                let Some(kind) = WorkKind::parse(row.try_get::<&str, _>(1)?) else {
                    continue;
                };
                let due: i64 = row.try_get(2)?;
                let version: i64 = row.try_get(3)?;
                let hint = state.hints.entry((tenant, kind)).or_insert(Hint {
                    due,
                    seq: 0,
                    version,
                    open: 0,
                });
                hint.due = hint.due.min(due);
                hint.version = version;
                woken[kind.index()] = true;
            }
            state.data_version = Some(version);
        }
        for kind in WorkKind::ALL {
            if woken[kind.index()] {
                self.wake[kind.index()].notify_one();
            }
        }
        Ok(())
    }

    /// Records, before the commit of a tenant transaction that queued work
    /// of `marks`, that `tenant_id` has such work due at `due`. Writes the
    /// file only when the hint is new or becomes due earlier. Drop the
    /// returned guard after the commit or the rollback.
    ///
    /// # Errors
    /// When SQLite fails; the caller must then not commit (the work would
    /// have no hint).
    pub async fn mark(
        &self,
        tenant_id: &str,
        marks: WorkMarks,
        due: OffsetDateTime,
    ) -> Result<Marked<'_>, sqlx::Error> {
        let due = unix(due);
        let _file = self.file.lock().await;
        // The guard is built first, so a failure half-way still closes the
        // kinds already opened.
        let mut marked = Marked {
            hints: self,
            tenant_id: tenant_id.to_owned(),
            marks: WorkMarks::default(),
        };
        for kind in marks.kinds() {
            let key = (tenant_id.to_owned(), kind);
            let write = self
                .lock()
                .hints
                .get(&key)
                .is_none_or(|hint| due < hint.due);
            let version = if write {
                Some(
                    sqlx::query_scalar::<_, i64>(
                        "INSERT INTO hints (tenant_id, kind, due_at) VALUES (?, ?, ?)
                         ON CONFLICT (tenant_id, kind) DO UPDATE
                         SET due_at = min(due_at, excluded.due_at), version = version + 1
                         RETURNING version",
                    )
                    .bind(tenant_id)
                    .bind(kind.as_str())
                    .bind(due)
                    .fetch_one(&self.pool)
                    .await?,
                )
            } else {
                None
            };
            let mut state = self.lock();
            let hint = state.hints.entry(key).or_insert(Hint {
                due,
                seq: 0,
                version: 0,
                open: 0,
            });
            hint.due = hint.due.min(due);
            hint.seq += 1;
            hint.open += 1;
            if let Some(version) = version {
                hint.version = version;
            }
            marked.marks.mark(kind);
        }
        Ok(marked)
    }

    /// Wakes the worker of `kind` (e.g. when the manual clock moved, so
    /// retries may be due).
    pub fn wake(&self, kind: WorkKind) {
        self.wake[kind.index()].notify_one();
    }

    /// The tenants whose work of `kind` is due at `now`, earliest first.
    pub fn due(&self, kind: WorkKind, now: OffsetDateTime) -> Vec<Due> {
        let now = unix(now);
        let state = self.lock();
        let mut due: Vec<(i64, Due)> = state
            .hints
            .iter()
            .filter(|((_, k), hint)| *k == kind && hint.due <= now)
            .map(|((tenant, _), hint)| {
                (
                    hint.due,
                    Due {
                        tenant_id: tenant.clone(),
                        seq: hint.seq,
                    },
                )
            })
            .collect();
        due.sort_by(|a, b| (a.0, &a.1.tenant_id).cmp(&(b.0, &b.1.tenant_id)));
        due.into_iter().map(|(_, d)| d).collect()
    }

    /// When the earliest work of `kind` is due, if any is hinted.
    pub fn next_due(&self, kind: WorkKind) -> Option<OffsetDateTime> {
        self.lock()
            .hints
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, hint)| hint.due)
            .min()
            .and_then(|due| OffsetDateTime::from_unix_timestamp(due).ok())
    }

    /// A worker finished a pass over `tenant_id`'s work of `kind` that
    /// began at sequence `seen`: `next` is when more of it is due (a retry's
    /// backoff), `None` when nothing is left. A mark made since `seen`, or
    /// a marked transaction still open, keeps the hint as it is.
    ///
    /// # Errors
    /// When SQLite fails (the hint stays; the next pass finds the work
    /// again).
    pub async fn settle(
        &self,
        tenant_id: &str,
        kind: WorkKind,
        seen: u64,
        next: Option<OffsetDateTime>,
    ) -> Result<(), sqlx::Error> {
        let key = (tenant_id.to_owned(), kind);
        let _file = self.file.lock().await;
        let Some(hint) = self.lock().hints.get(&key).copied() else {
            return Ok(());
        };
        if hint.seq != seen || hint.open > 0 {
            return Ok(());
        }
        let changed = match next {
            None => {
                sqlx::query("DELETE FROM hints WHERE tenant_id = ? AND kind = ? AND version = ?")
                    .bind(tenant_id)
                    .bind(kind.as_str())
                    .bind(hint.version)
                    .execute(&self.pool)
                    .await?
                    .rows_affected()
            }
            Some(next) => sqlx::query(
                "UPDATE hints SET due_at = ?, version = version + 1
                 WHERE tenant_id = ? AND kind = ? AND version = ?",
            )
            .bind(unix(next))
            .bind(tenant_id)
            .bind(kind.as_str())
            .bind(hint.version)
            .execute(&self.pool)
            .await?
            .rows_affected(),
        };
        let mut state = self.lock();
        if changed == 0 {
            // Another process renewed the hint since it was read: keep it
            // and read the file again at the next refresh.
            state.data_version = None;
            return Ok(());
        }
        match next {
            None => {
                state.hints.remove(&key);
            }
            Some(next) => {
                if let Some(hint) = state.hints.get_mut(&key) {
                    hint.due = unix(next);
                    hint.version += 1;
                }
            }
        }
        Ok(())
    }

    /// Resolves when a [`Marked`] guard of `kind` was dropped or
    /// [`WorkHints::wake`] was called for it since the last time this
    /// resolved (one worker per kind waits here).
    pub async fn woken(&self, kind: WorkKind) {
        self.wake[kind.index()].notified().await;
    }
}

#[cfg(test)]
mod tests;
