//! Release 1.2.0: members counted against the plan's `max_members` through
//! the entitlements interface, and member events for dependants
//! (`member_created`, `member_updated`, `member_left`).
//!
//! # How the count starts
//!
//! A fresh install has no members, so its count starts at zero (the install
//! hook marks it counted). A tenant upgrading from 1.0.0 or 1.1.0 already
//! has members that no counter knows of; migration `0003_member_counting`
//! marks its count as not yet taken. Lifecycle hooks run without the
//! tenant's subscription (the host refuses every count there), so the
//! existing rows are taken by the first call that changes the member list
//! ([`take_existing`]): it consumes one unit per existing member and marks
//! the count taken, in that call's transaction. When the existing members
//! already exceed the plan (a tenant over its new limit), nothing is taken
//! and the call is refused with the plan's denial: no member can be added
//! until the list fits, and deleting members needs no unit back.

use serde::Serialize;
use souk_sdk::db;
use souk_sdk::entitlements;
use souk_sdk::{HookError, Problem, events, params};

/// The count limit members are counted against.
pub const MEMBER_LIMIT: &str = "max_members";

/// Marks a fresh install's (empty) member list as counted.
///
/// # Errors
///
/// When the marker cannot be written; the install rolls back.
pub fn mark_fresh_install() -> Result<(), HookError> {
    db::execute("UPDATE member_counting SET counted = 1 WHERE id = 1", params![])?;
    Ok(())
}

/// Whether the existing members have been counted already.
fn counted() -> Result<bool, Problem> {
    let row: Option<(i64,)> =
        db::query_optional("SELECT counted FROM member_counting WHERE id = 1", params![])?;
    match row {
        Some((counted,)) => Ok(counted == 1),
        None => Err(Problem::internal(
            "member counting has no marker row (migration 0003_member_counting is missing)",
        )),
    }
}

/// Takes one unit of `max_members` per existing member if they were never
/// counted (a tenant upgraded from 1.1.0 or earlier), and marks the list
/// counted.
///
/// # Errors
///
/// The plan's denial when the existing members do not fit it; a database
/// problem otherwise.
fn take_existing() -> Result<(), Problem> {
    if counted()? {
        return Ok(());
    }
    let (existing,): (i64,) = db::query_one("SELECT COUNT(*) FROM members", params![])?;
    let existing = u64::try_from(existing).unwrap_or(0);
    if existing > 0 {
        entitlements::consume(MEMBER_LIMIT, existing).map_err(Problem::from)?;
    }
    db::execute("UPDATE member_counting SET counted = 1 WHERE id = 1", params![])?;
    Ok(())
}

/// Takes the unit of one new member (counting the existing members first
/// when they never were).
///
/// # Errors
///
/// The plan's 402 denial when the member does not fit.
pub fn take_one() -> Result<(), Problem> {
    take_existing()?;
    entitlements::consume(MEMBER_LIMIT, 1).map_err(Problem::from)?;
    Ok(())
}

/// Gives the unit of a deleted member back, when the list is counted (an
/// uncounted list took no unit for it).
///
/// # Errors
///
/// A database problem, or the module's own failure when the limit is not
/// declared.
pub fn give_back_one() -> Result<(), Problem> {
    if !counted()? {
        return Ok(());
    }
    entitlements::release(MEMBER_LIMIT, 1)
        .map(|_| ())
        .map_err(Problem::from)
}

/// The payload of every member event.
#[derive(Debug, Serialize)]
pub struct MemberEvent<'a> {
    /// The member number.
    pub number: &'a str,
    /// The member's name.
    pub name: &'a str,
    /// The member's status after the change (`left` for a deleted member).
    pub status: &'a str,
    /// For `member_left`: `left` (status set to left) or `deleted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// Emits a member event into the tenant's outbox, in the call's
/// transaction.
///
/// # Errors
///
/// A 500 problem when the host refuses the event (a bug: the types are
/// declared in module.yaml).
pub fn emit(event_type: &str, event: &MemberEvent<'_>) -> Result<(), Problem> {
    events::emit(event_type, event)
        .map(|_| ())
        .map_err(|error| Problem::internal(format!("emitting {event_type} failed: {error}")))
}
