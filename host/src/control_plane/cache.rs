//! Reads of the control plane kept in memory, and how they stay true.
//!
//! The request path asks the control plane the same three questions on
//! every request — whose token is this, which tenant has this slug, what
//! has this tenant installed — and the answers change rarely. Each answer
//! is kept in a [`GenerationCache`] and served from memory until the
//! control plane changes.
//!
//! **How a change is noticed.** SQLite's `PRAGMA data_version` answers a
//! number that changes whenever *another connection* has committed to the
//! database since the last time this connection asked — another process
//! (the CLI shares the data directory) or another connection of this
//! process's pool alike. [`Watch`] keeps one connection that never writes
//! and asks it once per cached lookup: a few microseconds, no thread hop,
//! and no row is read again. When the number moved, every cache drops
//! everything it holds, so a revoked token, a revoked version, an
//! uninstall or a plan change made by any process is seen by the next
//! request, exactly as when every request read the rows.
//!
//! The caches are coarse on purpose: any commit clears them all. Writes
//! are rare beside reads on the request path; a finer scheme would have to
//! know which rows each write touched, and being wrong there would serve a
//! revoked token.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::ffi::CString;
use std::hash::Hash;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use libsqlite3_sys as ffi;

/// Most entries one [`GenerationCache`] holds; past it the cache starts
/// over (cheaper than tracking recency, and a full cache means a working
/// set this big, which refills at one read per entry).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The control plane's change counter, read through a connection of its
/// own (see the module docs).
pub struct Watch {
    /// `None` for a database no second connection can open (an in-memory
    /// control plane): then every read is a change and nothing is cached.
    conn: Option<Mutex<WatchConnection>>,
    /// Counts reads of an unwatchable database, so each is a new generation.
    unwatched: AtomicU64,
}

/// The watching connection and its prepared `PRAGMA data_version`.
struct WatchConnection {
    db: NonNull<ffi::sqlite3>,
    stmt: NonNull<ffi::sqlite3_stmt>,
}

// SAFETY: the connection and its statement are used only while the
// `Mutex` around them is held, so by one thread at a time; SQLite is built
// thread-safe (libsqlite3-sys's default), which allows a connection to move
// between threads.
unsafe impl Send for WatchConnection {}

impl Drop for WatchConnection {
    fn drop(&mut self) {
        // SAFETY: both came from a successful open/prepare and are released
        // once, here.
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
            ffi::sqlite3_close(self.db.as_ptr());
        }
    }
}

/// Why the watching connection could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch the control plane for changes: {0}")]
pub struct WatchError(String);

impl Watch {
    /// Watches the database file at `path` (which must exist: open the
    /// pool, and run its migrations, first).
    ///
    /// # Errors
    /// [`WatchError`] when SQLite cannot open the file or prepare the
    /// pragma.
    pub fn open(path: &Path) -> Result<Self, WatchError> {
        let name = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| WatchError("the path holds a NUL byte".into()))?;
        let mut db: *mut ffi::sqlite3 = std::ptr::null_mut();
        // Read-write without create: the file exists, and a WAL database
        // needs its shared-memory index writable even to read it. This
        // connection never writes.
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX;
        // SAFETY: `name` is NUL-terminated; `db` receives a handle that is
        // closed below on failure or owned by `WatchConnection`.
        let rc = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, std::ptr::null()) };
        let Some(db) = NonNull::new(db) else {
            return Err(WatchError(format!("sqlite3_open_v2 failed ({rc})")));
        };
        if rc != ffi::SQLITE_OK {
            let message = errmsg(db);
            // SAFETY: a handle returned with an error must still be closed.
            unsafe { ffi::sqlite3_close(db.as_ptr()) };
            return Err(WatchError(message));
        }
        let sql = c"PRAGMA data_version";
        let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        // SAFETY: `db` is open; `sql` is NUL-terminated (-1 length reads to
        // the NUL); `stmt` is finalized by `WatchConnection`'s drop.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db.as_ptr(),
                sql.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        let Some(stmt) = NonNull::new(stmt).filter(|_| rc == ffi::SQLITE_OK) else {
            let message = errmsg(db);
            // SAFETY: closes the handle opened above; no statement exists.
            unsafe { ffi::sqlite3_close(db.as_ptr()) };
            return Err(WatchError(message));
        };
        Ok(Watch {
            conn: Some(Mutex::new(WatchConnection { db, stmt })),
            unwatched: AtomicU64::new(0),
        })
    }

    /// A watch that reports a change on every read (a database only one
    /// connection can see, such as an in-memory one): nothing is cached.
    pub fn unwatched() -> Self {
        Watch {
            conn: None,
            unwatched: AtomicU64::new(0),
        }
    }

    /// The current generation: equal to an earlier answer exactly when
    /// nothing was committed to the control plane in between. A failure to
    /// read it counts as a change (the caches are dropped, never trusted).
    pub fn generation(&self) -> Generation {
        let Some(conn) = &self.conn else {
            return Generation::Fresh(self.unwatched.fetch_add(1, Ordering::Relaxed));
        };
        let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        let stmt = conn.stmt.as_ptr();
        // SAFETY: the statement belongs to the connection this lock guards;
        // it is reset after the one row is read, which ends the read
        // transaction the pragma opened.
        let version = unsafe {
            let rc = ffi::sqlite3_step(stmt);
            let version = (rc == ffi::SQLITE_ROW).then(|| ffi::sqlite3_column_int64(stmt, 0));
            ffi::sqlite3_reset(stmt);
            version
        };
        match version {
            Some(v) => Generation::Version(v),
            None => Generation::Fresh(self.unwatched.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

fn errmsg(db: NonNull<ffi::sqlite3>) -> String {
    // SAFETY: `db` is a handle SQLite returned; the message is copied at
    // once.
    unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }
        .to_string_lossy()
        .into_owned()
}

/// A point in the control plane's history, as [`Watch::generation`] read
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// `PRAGMA data_version`'s answer.
    Version(i64),
    /// No version could be read: unlike every other generation, so nothing
    /// read under it is reused.
    Fresh(u64),
}

impl Generation {
    fn reusable(self) -> bool {
        matches!(self, Generation::Version(_))
    }
}

/// Answers read from the control plane, kept while its generation holds.
pub struct GenerationCache<K, V> {
    inner: Mutex<Entries<K, V>>,
    capacity: usize,
}

struct Entries<K, V> {
    generation: Option<Generation>,
    map: HashMap<K, V>,
}

impl<K: Eq + Hash, V: Clone> GenerationCache<K, V> {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        GenerationCache {
            inner: Mutex::new(Entries {
                generation: None,
                map: HashMap::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    /// The answer for `key` kept under `now`, if any. A cache whose
    /// generation is not `now` is emptied first.
    pub fn get<Q>(&self, now: Generation, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if entries.generation != Some(now) {
            entries.map.clear();
            entries.generation = Some(now);
            return None;
        }
        entries.map.get(key).cloned()
    }

    /// Keeps `value` for `key`, read from the database after `read_at` was
    /// taken. Kept only while the cache is still at that generation: an
    /// answer read across a change is never stored.
    pub fn put(&self, read_at: Generation, key: K, value: V) {
        if !read_at.reusable() {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if entries.generation != Some(read_at) {
            return;
        }
        if entries.map.len() >= self.capacity {
            entries.map.clear();
        }
        entries.map.insert(key, value);
    }

    /// Drops every entry (after a write this process made and must see at
    /// once, whatever the watch says).
    pub fn clear(&self) {
        let mut entries = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        entries.map.clear();
        entries.generation = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_served_only_in_its_generation() {
        let cache = GenerationCache::new(10);
        let g1 = Generation::Version(1);
        assert_eq!(cache.get(g1, "a"), None);
        cache.put(g1, "a".to_owned(), 1);
        assert_eq!(cache.get(g1, "a"), Some(1));
        let g2 = Generation::Version(2);
        assert_eq!(cache.get(g2, "a"), None, "a change empties the cache");
        cache.put(g1, "a".to_owned(), 1);
        assert_eq!(
            cache.get(g2, "a"),
            None,
            "an answer read before the change is not kept"
        );
    }

    #[test]
    fn unreadable_generations_are_never_reused() {
        let cache = GenerationCache::new(10);
        let watch = Watch::unwatched();
        let g = watch.generation();
        assert_eq!(cache.get(g, "a"), None);
        cache.put(g, "a".to_owned(), 1);
        assert_eq!(cache.get(g, "a"), None);
        assert_ne!(watch.generation(), watch.generation());
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = GenerationCache::new(2);
        let g = Generation::Version(7);
        assert_eq!(cache.get(g, "x"), None);
        cache.put(g, "a".to_owned(), 1);
        cache.put(g, "b".to_owned(), 2);
        cache.put(g, "c".to_owned(), 3);
        assert_eq!(cache.get(g, "a"), None);
        assert_eq!(cache.get(g, "c"), Some(3));
    }

    #[tokio::test]
    async fn a_commit_by_another_connection_moves_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sqlite");
        let control = crate::control_plane::ControlPlane::open(&path)
            .await
            .unwrap();
        let watch = Watch::open(&path).unwrap();
        let before = watch.generation();
        assert_eq!(before, watch.generation(), "nothing changed in between");
        sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES ('t_1', 'a', 'A', '2026-01-01T00:00:00Z')")
            .execute(control.pool())
            .await
            .unwrap();
        let after = watch.generation();
        assert_ne!(before, after);
        assert_eq!(after, watch.generation());
    }
}
