//! Last-seen (sessions) and last-used (API keys) times, written together.
//!
//! A session's last-seen time and an API key's last-used time change at
//! most once a minute each ([`crate::auth::TOUCH_EVERY`]), but with many
//! active sessions and keys that is still one control-plane write per
//! session per minute — and every control-plane commit empties the
//! control-plane caches (`cache.rs`: token → tenant, tenant by slug,
//! installations), which then refill from the database. So the times are
//! kept here in memory and written in **one** transaction at most once per
//! [`TOUCH_EVERY`](crate::auth::TOUCH_EVERY): the caches are emptied by
//! touches at most once a minute, however many sessions are in use.
//!
//! Whoever reads a session for a request takes the later of the stored
//! time and the one waiting here, so the idle expiry sees every use. A
//! process that stops loses the times not written yet (at most a minute of
//! them): a session then looks idle up to a minute earlier than it is.

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::SqlitePool;

use super::{api_keys, sessions};

/// The times waiting to be written.
#[derive(Debug, Default)]
pub struct PendingTouches {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Session id → last seen (unix seconds).
    sessions: HashMap<String, i64>,
    /// API key id → last used (unix seconds).
    keys: HashMap<String, i64>,
    /// When the last batch was taken (unix seconds).
    taken_at: Option<i64>,
}

/// One batch to write.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TouchBatch {
    sessions: Vec<(String, i64)>,
    keys: Vec<(String, i64)>,
}

impl PendingTouches {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Session `id`, stored as last seen at `stored`, is used at `now`:
    /// answers when it was last seen before this use (the later of `stored`
    /// and a time waiting here), and keeps `now` to write if that is at
    /// least `every` ago.
    pub fn session_used(&self, id: &str, stored: i64, now: i64, every: i64) -> i64 {
        let mut state = self.state();
        let last = state
            .sessions
            .get(id)
            .copied()
            .unwrap_or(stored)
            .max(stored);
        if now.saturating_sub(last) >= every {
            state.sessions.insert(id.to_owned(), now);
        }
        last
    }

    /// API key `id`, stored as last used at `stored`, is used at `now`:
    /// keeps `now` to write if the later of `stored` and a time waiting
    /// here is at least `every` ago.
    pub fn key_used(&self, id: &str, stored: Option<i64>, now: i64, every: i64) {
        let mut state = self.state();
        let stored = stored.unwrap_or(0);
        let last = state.keys.get(id).copied().unwrap_or(stored).max(stored);
        if now.saturating_sub(last) >= every {
            state.keys.insert(id.to_owned(), now);
        }
    }

    /// The times waiting, taken to be written, if any are and the last
    /// batch was taken at least `every` before `now`.
    pub fn take_due(&self, now: i64, every: i64) -> Option<TouchBatch> {
        let mut state = self.state();
        if state.sessions.is_empty() && state.keys.is_empty() {
            return None;
        }
        if state
            .taken_at
            .is_some_and(|taken| now.saturating_sub(taken) < every)
        {
            return None;
        }
        state.taken_at = Some(now);
        Some(TouchBatch {
            sessions: state.sessions.drain().collect(),
            keys: state.keys.drain().collect(),
        })
    }
}

impl TouchBatch {
    /// Writes the batch in one transaction on `pool` (a time never goes
    /// back: each update keeps a later stored one).
    ///
    /// # Errors
    /// Database errors; nothing of the batch is written then.
    pub async fn write(self, pool: &SqlitePool) -> Result<(), sqlx::Error> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        for (id, at) in &self.sessions {
            sessions::touch(&mut tx, id, *at).await?;
        }
        for (id, at) in &self.keys {
            api_keys::touch(&mut tx, id, *at).await?;
        }
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_kept_once_a_minute_and_its_waiting_time_counts() {
        let touches = PendingTouches::default();
        assert_eq!(touches.session_used("s", 100, 130, 60), 100);
        assert_eq!(touches.take_due(130, 60), None, "not a minute since 100");
        assert_eq!(touches.session_used("s", 100, 160, 60), 100);
        // The waiting 160 counts as last seen, not the stored 100.
        assert_eq!(touches.session_used("s", 100, 200, 60), 160);
        let batch = touches.take_due(200, 60).expect("due");
        assert_eq!(batch.sessions, vec![("s".to_owned(), 160)]);
    }

    #[test]
    fn batches_are_taken_at_most_once_per_interval_whatever_the_number_of_sessions() {
        let touches = PendingTouches::default();
        for n in 0..100 {
            touches.session_used(&format!("s{n}"), 0, 1000, 60);
            touches.key_used(&format!("k{n}"), None, 1000, 60);
        }
        let first = touches.take_due(1000, 60).expect("the first batch at once");
        assert_eq!((first.sessions.len(), first.keys.len()), (100, 100));
        touches.session_used("s0", 1000, 1070, 60);
        assert_eq!(
            touches.take_due(1030, 60),
            None,
            "within a minute of the last"
        );
        let second = touches.take_due(1060, 60).expect("a minute later");
        assert_eq!(second.sessions, vec![("s0".to_owned(), 1070)]);
        assert_eq!(touches.take_due(2000, 60), None, "nothing waiting");
    }

    #[tokio::test]
    async fn a_batch_is_written_in_one_transaction_and_never_moves_a_time_back() {
        let control = crate::control_plane::ControlPlane::in_memory()
            .await
            .expect("control plane");
        let pool = control.pool();
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, created_at) \
             VALUES ('t1', 'acme', 'Acme', '2026-01-01T00:00:00Z')",
        )
        .execute(pool)
        .await
        .expect("tenant");
        for (id, used) in [("k1", 100), ("k2", 900)] {
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, module_slug, name, read_only, key_hash, \
                 created_at, last_used) VALUES (?, 't1', 'm', 'n', 0, ?, '2026-01-01T00:00:00Z', ?)",
            )
            .bind(id)
            .bind(format!("hash-{id}"))
            .bind(used)
            .execute(pool)
            .await
            .expect("key");
        }
        let touches = PendingTouches::default();
        touches.key_used("k1", Some(100), 500, 60);
        // k2 was stored later by another process: 500 must not move it back.
        touches.key_used("k2", Some(100), 500, 60);
        touches.key_used("k-missing", None, 500, 60);
        touches
            .take_due(500, 60)
            .expect("due")
            .write(pool)
            .await
            .expect("written");
        let used: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, last_used FROM api_keys ORDER BY id")
                .fetch_all(pool)
                .await
                .expect("read");
        assert_eq!(used, vec![("k1".to_owned(), 500), ("k2".to_owned(), 900)]);
    }
}
