//! The membership module: a tenant's members, their member numbers
//! (unique per tenant), contact email, status (active, suspended, left) and
//! the date they joined.
//!
//! It exports the `members` table, so modules that depend on `membership`
//! can read `membership.members`.
//!
//! Two releases are built from this source: 1.1.0 (this crate, with the
//! default feature `member-notes`) and 1.0.0 (the crate in
//! `tests/modules/membership-v1_0`, without it), so upgrade tests have a
//! real older version. 1.1.0 adds migration `0002_member_notes` and the
//! `/members/{number}/notes` routes.

mod member;
mod routes;
mod schema;

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
