//! Release 1.2.0: members counted against the plan's `max_members` through
//! the entitlements interface, and member events for dependants
//! (`member_created`, `member_updated`, `member_left`).
//!
//! # How the count starts
//!
//! Every member row (any status) holds one unit of `max_members`. A fresh
//! install has no members, so its count starts at zero. A tenant upgrading
//! from 1.0.0 or 1.1.0 already has members that no counter knows of: the
//! `upgrade` hook, which runs with the tenant's entitlements, seeds the
//! count from the rows ([`seed_from_rows`]), so the usage is right as soon
//! as the upgrade commits. The count is seeded as it is, even above the
//! plan's limit: a tenant with more members than its plan allows keeps them
//! all, and `POST /members` is refused with the host's 402 until deletions
//! make room. Migration `0003_member_counting`'s marker row records that the
//! rows were counted.

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
    mark_counted()
}

fn mark_counted() -> Result<(), HookError> {
    db::execute(
        "UPDATE member_counting SET counted = 1 WHERE id = 1",
        params![],
    )?;
    Ok(())
}

/// Sets `max_members` to the number of member rows and marks the list
/// counted: run by the `upgrade` hook, in the upgrade's transaction.
///
/// # Errors
///
/// When the rows cannot be read or the host refuses the count (the module
/// does not declare the limit, or runs without the tenant's
/// subscription); the upgrade rolls back.
pub fn seed_from_rows() -> Result<(), HookError> {
    let (existing,): (i64,) = db::query_one("SELECT COUNT(*) FROM members", params![])?;
    let existing = u64::try_from(existing).unwrap_or(0);
    entitlements::seed_usage(MEMBER_LIMIT, existing).map_err(|error| {
        HookError::new(format!(
            "counting the {existing} existing members against {MEMBER_LIMIT} failed: {error}"
        ))
    })?;
    mark_counted()
}

/// Takes the unit of one new member.
///
/// # Errors
///
/// The plan's 402 denial when the member does not fit.
pub fn take_one() -> Result<(), Problem> {
    entitlements::consume(MEMBER_LIMIT, 1).map_err(Problem::from)?;
    Ok(())
}

/// Gives the unit of a deleted member back.
///
/// # Errors
///
/// The module's own failure when the limit is not declared.
pub fn give_back_one() -> Result<(), Problem> {
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
