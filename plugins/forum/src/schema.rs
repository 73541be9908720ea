//! The module's tables and their migrations. Times are Unix seconds from
//! SQLite's clock (`unixepoch()`), the only clock a module has.

use souk_sdk::{HookError, Migration, db, params};

/// Basic (1.0): forums, threads, posts and their edit history, the
/// tenant's settings, and the members Membership said have left.
const BASIC: Migration = Migration::new(
    "0001_basic",
    "CREATE TABLE forums (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        position INTEGER NOT NULL DEFAULT 0,
        view_audience TEXT NOT NULL,
        post_audience TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE threads (
        id INTEGER PRIMARY KEY,
        forum_id INTEGER NOT NULL REFERENCES forums (id),
        title TEXT NOT NULL,
        author_number TEXT,
        author_user TEXT NOT NULL,
        author_name TEXT NOT NULL,
        pinned INTEGER NOT NULL DEFAULT 0,
        locked INTEGER NOT NULL DEFAULT 0,
        views INTEGER NOT NULL DEFAULT 0,
        replies INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        last_post_id INTEGER NOT NULL DEFAULT 0,
        last_post_at INTEGER NOT NULL,
        deleted_at INTEGER
    );
    CREATE INDEX threads_by_order ON threads (forum_id, pinned, last_post_id);
    CREATE TABLE posts (
        id INTEGER PRIMARY KEY,
        thread_id INTEGER NOT NULL REFERENCES threads (id),
        opening INTEGER NOT NULL DEFAULT 0,
        author_number TEXT,
        author_user TEXT NOT NULL,
        author_name TEXT NOT NULL,
        body TEXT NOT NULL,
        html TEXT NOT NULL,
        quote_id INTEGER REFERENCES posts (id),
        created_at INTEGER NOT NULL,
        edited_at INTEGER,
        deleted_at INTEGER,
        hidden_at INTEGER,
        hidden_reason TEXT,
        hidden_by TEXT
    );
    CREATE INDEX posts_by_thread ON posts (thread_id, id);
    CREATE INDEX posts_by_author ON posts (author_number);
    CREATE TABLE post_edits (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL REFERENCES posts (id),
        body TEXT NOT NULL,
        replaced_at INTEGER NOT NULL
    );
    CREATE INDEX post_edits_by_post ON post_edits (post_id, id);
    CREATE TABLE settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        edit_window_seconds INTEGER NOT NULL CHECK (edit_window_seconds BETWEEN 0 AND 604800)
    );
    CREATE TABLE departed (
        number TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        left_at INTEGER NOT NULL
    );
    CREATE TABLE seen_events (id TEXT PRIMARY KEY)",
    "DROP TABLE seen_events;
    DROP TABLE departed;
    DROP TABLE settings;
    DROP TABLE post_edits;
    DROP TABLE posts;
    DROP TABLE threads;
    DROP TABLE forums",
);

/// Moderation: moderators per forum, bans with an optional end, the
/// moderation log, and members' reports of posts.
const MODERATION: Migration = Migration::new(
    "0002_moderation",
    "CREATE TABLE moderators (
        forum_id INTEGER NOT NULL REFERENCES forums (id),
        member_number TEXT NOT NULL,
        PRIMARY KEY (forum_id, member_number)
    );
    CREATE TABLE bans (
        id INTEGER PRIMARY KEY,
        forum_id INTEGER NOT NULL REFERENCES forums (id),
        member_number TEXT NOT NULL,
        until INTEGER,
        reason TEXT NOT NULL,
        banned_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX bans_by_member ON bans (forum_id, member_number);
    CREATE TABLE moderation_log (
        id INTEGER PRIMARY KEY,
        forum_id INTEGER NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        actor_name TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL REFERENCES posts (id),
        forum_id INTEGER NOT NULL,
        reporter_number TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        resolved_at INTEGER,
        resolved_by TEXT,
        UNIQUE (post_id, reporter_number)
    )",
    "DROP TABLE reports;
    DROP TABLE moderation_log;
    DROP TABLE bans;
    DROP TABLE moderators",
);

/// The migrations of this release, oldest first.
pub fn migrations() -> Vec<Migration> {
    vec![BASIC, MODERATION]
}

/// The default edit window: 15 minutes.
pub const DEFAULT_EDIT_WINDOW: i64 = 900;

/// Seeds a fresh install: the default settings.
///
/// # Errors
///
/// When a row cannot be written; the install rolls back.
pub fn seed() -> Result<(), HookError> {
    db::execute(
        "INSERT INTO settings (id, edit_window_seconds) VALUES (1, ?1)",
        params![DEFAULT_EDIT_WINDOW],
    )?;
    Ok(())
}
