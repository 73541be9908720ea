//! A call's transaction on its tenant database.
//!
//! A call that may write (and a metered one, which writes its usage event)
//! begins `BEGIN IMMEDIATE` up front through sqlx, so two writers of a
//! tenant queue for the write lock before their modules run, and commits
//! through sqlx: [`CallTransaction::Open`].
//!
//! A call that only reads — most requests — costs no round trip to the
//! connection's worker thread for its transaction:
//! [`CallTransaction::Deferred`] begins (a deferred `BEGIN`, which takes no
//! lock and never waits) inside the lock its first statement holds anyway,
//! and a transaction that wrote nothing is not committed: a read
//! transaction's commit and rollback are the same, and the connection's
//! release hook ([`super::sandbox::release`]) ends it when the connection
//! goes back to the pool. Only a read request that did write (a module may
//! write on a GET; host bookkeeping may too) pays for a `COMMIT`.

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, Transaction};

/// The transaction of one module call.
pub enum CallTransaction {
    /// Begun through sqlx; committed or rolled back through it.
    Open(Transaction<'static, Sqlite>),
    /// Begun with the call's first statement, or by host bookkeeping.
    Deferred {
        /// The pooled connection the call holds.
        conn: PoolConnection<Sqlite>,
        /// Whether `BEGIN` was run on it.
        begun: bool,
        /// Whether the transaction may have written (then it must be
        /// committed to keep the writes).
        wrote: bool,
    },
}

impl CallTransaction {
    /// A read request's transaction on `conn`, begun when first used.
    pub fn deferred(conn: PoolConnection<Sqlite>) -> Self {
        CallTransaction::Deferred {
            conn,
            begun: false,
            wrote: false,
        }
    }

    /// The connection, for a module statement: a [`CallTransaction::Deferred`]
    /// one not begun yet answers `true` beside it, and the caller runs
    /// `BEGIN` under the lock it takes for the statement (then calls
    /// [`CallTransaction::mark`]).
    pub(super) fn for_statement(&mut self) -> (&mut SqliteConnection, bool) {
        match self {
            CallTransaction::Open(tx) => (tx, false),
            CallTransaction::Deferred { conn, begun, .. } => (conn, !*begun),
        }
    }

    /// Whether this is a [`CallTransaction::Deferred`] one.
    pub fn is_deferred(&self) -> bool {
        matches!(self, CallTransaction::Deferred { .. })
    }

    /// Whether this is a [`CallTransaction::Deferred`] one begun and not
    /// written: it holds a read snapshot, and its first write must upgrade
    /// its lock (which SQLite refuses if the snapshot went stale).
    pub(super) fn holds_read_snapshot(&self) -> bool {
        matches!(
            self,
            CallTransaction::Deferred {
                begun: true,
                wrote: false,
                ..
            }
        )
    }

    /// Records what a statement of a [`CallTransaction::Deferred`] did: the
    /// transaction is now begun, and `wrote` if the statement left it a
    /// write transaction.
    pub(super) fn mark(&mut self, now_begun: bool, now_wrote: bool) {
        if let CallTransaction::Deferred { begun, wrote, .. } = self {
            *begun |= now_begun;
            *wrote |= now_wrote;
        }
    }

    /// The connection with the transaction begun, for the host's own
    /// writes (usage) in the call's transaction: a deferred one is begun
    /// now and counted as written.
    ///
    /// # Errors
    /// The database's error beginning it.
    pub async fn for_host_write(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        match self {
            CallTransaction::Open(tx) => Ok(tx),
            CallTransaction::Deferred { conn, begun, wrote } => {
                if !*begun {
                    sqlx::query("BEGIN").execute(&mut **conn).await?;
                    *begun = true;
                }
                *wrote = true;
                Ok(conn)
            }
        }
    }

    /// Commits what the call wrote. A deferred transaction that wrote
    /// nothing costs nothing here: it is ended when its connection is
    /// released.
    ///
    /// # Errors
    /// The database's error committing.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            CallTransaction::Open(tx) => tx.commit().await,
            CallTransaction::Deferred {
                mut conn,
                begun: true,
                wrote: true,
            } => {
                let committed = sqlx::query("COMMIT").execute(&mut *conn).await;
                if committed.is_err() {
                    // Never hand a connection back in an unknown state.
                    conn.close_on_drop();
                }
                committed.map(|_| ())
            }
            CallTransaction::Deferred { .. } => Ok(()),
        }
    }

    /// Rolls the call's work back. A deferred transaction is ended when its
    /// connection is released (the release hook rolls back whatever it
    /// finds open).
    ///
    /// # Errors
    /// The database's error rolling back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            CallTransaction::Open(tx) => tx.rollback().await,
            CallTransaction::Deferred { .. } => Ok(()),
        }
    }

    /// The sqlx transaction of a call that began one up front (lifecycle
    /// hooks continue with it); `None` for a deferred one.
    pub fn into_open(self) -> Option<Transaction<'static, Sqlite>> {
        match self {
            CallTransaction::Open(tx) => Some(tx),
            CallTransaction::Deferred { .. } => None,
        }
    }
}
