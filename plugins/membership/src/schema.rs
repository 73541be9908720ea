//! The module's tables, their migrations, and the data a fresh install
//! starts with.

use souk_sdk::{HookError, Migration, db, params};

/// Members, and the counter that hands out member numbers when a new member
/// comes without one.
const MEMBERS: Migration = Migration::new(
    "0001_members",
    "CREATE TABLE members (
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        email TEXT,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'left')),
        joined_on TEXT NOT NULL
    );
    CREATE TABLE member_numbering (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        prefix TEXT NOT NULL,
        next_value INTEGER NOT NULL CHECK (next_value > 0)
    )",
    "DROP TABLE member_numbering;
    DROP TABLE members",
);

/// Free-text notes on a member, and an index for the status filter of the
/// member list.
#[cfg(feature = "member-notes")]
const MEMBER_NOTES: Migration = Migration::new(
    "0002_member_notes",
    "ALTER TABLE members ADD COLUMN notes TEXT;
    CREATE INDEX members_by_status ON members (status)",
    "DROP INDEX members_by_status;
    ALTER TABLE members DROP COLUMN notes",
);

/// Whether the members that existed before release 1.2.0 have been
/// counted against `max_members` (see `tally`): 0 until the upgrade hook
/// seeds the count from the rows, in the same transaction; the install hook
/// marks a fresh install counted. A record only: nothing reads it to count.
#[cfg(feature = "member-events")]
const MEMBER_COUNTING: Migration = Migration::new(
    "0003_member_counting",
    "CREATE TABLE member_counting (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        counted INTEGER NOT NULL CHECK (counted IN (0, 1))
    );
    INSERT INTO member_counting (id, counted) VALUES (1, 0)",
    "DROP TABLE member_counting",
);

/// The migrations of this release, oldest first.
pub fn migrations() -> Vec<Migration> {
    #[cfg_attr(not(feature = "member-notes"), allow(unused_mut))]
    let mut migrations = vec![MEMBERS];
    #[cfg(feature = "member-notes")]
    migrations.push(MEMBER_NOTES);
    #[cfg(feature = "member-events")]
    migrations.push(MEMBER_COUNTING);
    migrations
}

/// The prefix of generated member numbers: `M-0001`, `M-0002`, ...
const NUMBER_PREFIX: &str = "M-";

/// Seeds a fresh install: member numbers start at `M-0001`.
///
/// # Errors
///
/// When the numbering row cannot be written; the install rolls back.
pub fn seed() -> Result<(), HookError> {
    db::execute(
        "INSERT INTO member_numbering (id, prefix, next_value) VALUES (1, ?1, 1)",
        params![NUMBER_PREFIX],
    )
    .map_err(|error| HookError::new(format!("seeding member numbering failed: {error}")))?;
    #[cfg(feature = "member-events")]
    crate::tally::mark_fresh_install()?;
    Ok(())
}
