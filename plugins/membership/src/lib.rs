//! The membership module: a tenant's members, their member numbers
//! (unique per tenant), contact email, status (active, suspended, left) and
//! the date they joined.
//!
//! It exports the `members` table, so modules that depend on `membership`
//! can read `membership.members`.
//!
//! Three releases are built from this source, so upgrade tests have real
//! older versions:
//! - 1.2.0 (this crate, module API 0.3.0, default features `member-notes`
//!   and `member-events`): members counted against `max_members` through
//!   the entitlements interface, and the events `member_created`,
//!   `member_updated` and `member_left` (migration `0003_member_counting`);
//! - 1.1.0 (`tests/modules/membership-v1_1`, API 0.2.0, `member-notes`
//!   only): migration `0002_member_notes` and the `/members/{number}/notes`
//!   routes;
//! - 1.0.0 (`tests/modules/membership-v1_0`, API 0.2.0, no feature).

mod member;
mod routes;
mod schema;
#[cfg(feature = "member-events")]
mod tally;

use souk_sdk::{Gates, HookError, LimitKind, Migration, Module, Request, Response};

/// The membership module, exported as the component's `guest` interface.
struct Membership;

impl Module for Membership {
    fn migrations() -> Vec<Migration> {
        schema::migrations()
    }

    fn install() -> Result<(), HookError> {
        schema::seed()
    }

    /// From 1.0.x or 1.1.x (and any later upgrade): the members already
    /// kept are counted against `max_members` at once, in the upgrade's
    /// transaction (see `tally`).
    #[cfg(feature = "member-events")]
    fn upgrade(_from: &str) -> Result<(), HookError> {
        tally::seed_from_rows()
    }

    fn gates() -> Gates {
        // Keys and descriptions match `features` and `limits` in module.yaml.
        let gates = Gates::new()
            .feature("member_export", "Export the member list as CSV.")
            .limit(
                "max_members",
                "How many members a tenant may keep.",
                LimitKind::Count,
            );
        #[cfg(feature = "member-notes")]
        let gates = gates.feature("member_notes", "Keep free-text notes on members.");
        gates
    }

    fn handle(request: Request) -> Response {
        routes::router().handle(request)
    }
}

souk_sdk::export_module!(Membership);
