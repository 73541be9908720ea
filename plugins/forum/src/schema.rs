//! The module's tables and their migrations. Times are Unix seconds from
//! the module's clock (`crate::clock`, the host's clock through WASI).

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

#[cfg(feature = "premium")]
/// Plus: private messages, attachments, polls (one ballot per member by
/// a UNIQUE constraint), thread subscriptions, notifications and digest
/// preferences.
const PLUS: Migration = Migration::new(
    "0003_plus",
    "CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        subject TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_message_id INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE conversation_members (
        conversation_id INTEGER NOT NULL REFERENCES conversations (id),
        member_number TEXT NOT NULL,
        last_read_id INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation_id, member_number)
    );
    CREATE INDEX conversation_members_by_member ON conversation_members (member_number);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations (id),
        author_number TEXT NOT NULL,
        author_name TEXT NOT NULL,
        html TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
    CREATE TABLE attachments (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL REFERENCES posts (id),
        file_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX attachments_by_post ON attachments (post_id);
    CREATE TABLE polls (
        id INTEGER PRIMARY KEY,
        thread_id INTEGER NOT NULL UNIQUE REFERENCES threads (id),
        question TEXT NOT NULL,
        multiple INTEGER NOT NULL,
        closes_at INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE poll_options (
        id INTEGER PRIMARY KEY,
        poll_id INTEGER NOT NULL REFERENCES polls (id),
        label TEXT NOT NULL,
        position INTEGER NOT NULL
    );
    CREATE TABLE ballots (
        id INTEGER PRIMARY KEY,
        poll_id INTEGER NOT NULL REFERENCES polls (id),
        member_number TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (poll_id, member_number)
    );
    CREATE TABLE ballot_choices (
        ballot_id INTEGER NOT NULL REFERENCES ballots (id),
        option_id INTEGER NOT NULL REFERENCES poll_options (id),
        PRIMARY KEY (ballot_id, option_id)
    );
    CREATE TABLE subscriptions (
        thread_id INTEGER NOT NULL REFERENCES threads (id),
        member_number TEXT NOT NULL,
        PRIMARY KEY (thread_id, member_number)
    );
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        member_number TEXT NOT NULL,
        thread_id INTEGER NOT NULL,
        post_id INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        read_at INTEGER,
        mail TEXT NOT NULL CHECK (mail IN ('digest', 'sent', 'digested', 'none'))
    );
    CREATE INDEX notifications_by_member ON notifications (member_number, id);
    CREATE TABLE preferences (
        member_number TEXT PRIMARY KEY,
        digest INTEGER NOT NULL DEFAULT 0
    )",
    "DROP TABLE preferences;
    DROP TABLE notifications;
    DROP TABLE subscriptions;
    DROP TABLE ballot_choices;
    DROP TABLE ballots;
    DROP TABLE poll_options;
    DROP TABLE polls;
    DROP TABLE attachments;
    DROP TABLE messages;
    DROP TABLE conversation_members;
    DROP TABLE conversations",
);

#[cfg(feature = "premium")]
/// Community: the tenant's theme (one row).
const COMMUNITY: Migration = Migration::new(
    "0004_community",
    "CREATE TABLE theme (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        primary_colour TEXT NOT NULL,
        background_colour TEXT NOT NULL,
        text_colour TEXT NOT NULL,
        logo_url TEXT
    )",
    "DROP TABLE theme",
);

/// The migrations of this release, oldest first: 1.0.0 has the Basic and
/// moderation tables (bans and moderators are checked on every plan),
/// 1.1.0 adds the plus and community ones.
pub fn migrations() -> Vec<Migration> {
    #[cfg_attr(not(feature = "premium"), allow(unused_mut))]
    let mut migrations = vec![BASIC, MODERATION];
    #[cfg(feature = "premium")]
    migrations.extend([PLUS, COMMUNITY]);
    migrations
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
