//! What the module reads of Membership's exported `members` table.

use souk_sdk::db;
use souk_sdk::{Problem, params};

/// A member: (name, status).
///
/// # Errors
///
/// A database problem.
pub fn find(number: &str) -> Result<Option<(String, String)>, Problem> {
    Ok(db::query_optional(
        "SELECT name, status FROM membership.members WHERE number = ?1",
        params![number],
    )?)
}

/// The member's name; a member deleted from Membership shows as
/// `(former member)`.
///
/// # Errors
///
/// A database problem.
pub fn name_of(number: &str) -> Result<String, Problem> {
    Ok(find(number)?.map_or_else(|| "(former member)".to_owned(), |(name, _)| name))
}
