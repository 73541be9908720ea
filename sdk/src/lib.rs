//! Write Souk modules in Rust.
//!
//! A Souk module is a WebAssembly component that targets the module API
//! (`wit/since_v0.2.0/module.wit`). This crate owns everything between a
//! module author and that API: the generated bindings stay private, and an
//! author implements one trait, [`Module`], and exports it with
//! [`export_module!`]:
//!
//! ```
//! use souk_sdk::{Migration, Module, Request, Response, Router};
//!
//! struct Guestbook;
//!
//! impl Module for Guestbook {
//!     fn migrations() -> Vec<Migration> {
//!         vec![Migration::new(
//!             "0001_entries",
//!             "CREATE TABLE entries (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
//!             "DROP TABLE entries",
//!         )]
//!     }
//!
//!     fn handle(request: Request) -> Response {
//!         Router::new()
//!             .get("/entries", |_request: &Request| Response::json(200, &["hello"]))
//!             .handle(request)
//!     }
//! }
//!
//! souk_sdk::export_module!(Guestbook);
//! ```
//!
//! The pieces:
//! - [`db`]: SQL against the module's own tables, with typed parameters
//!   ([`params!`]) and typed row decoding ([`db::FromRow`], [`db::Row::get`]).
//! - [`Router`], [`Request`], [`Response`] and [`Problem`]: the HTTP side, with
//!   RFC 9457 problem documents for errors.
//! - [`context()`]: the tenant, module and caller of the call being served.
//! - [`log`]: structured logging into the host's log.
//! - [`entitlements`]: what the tenant's plan allows — feature checks, count
//!   limits ([`entitlements::consume`], [`entitlements::release`]) and meters
//!   ([`entitlements::record_usage`]); a [`entitlements::Denial`] converts into
//!   the same problem response the host's route gate sends.
//! - [`files`] (API 0.3.0): bytes the host stores for the module — put, get,
//!   read, delete, list — and signed download URLs; a [`files::FileError`]
//!   converts into the matching problem (402 for the storage limit).
//! - [`events`]: events into the tenant's outbox, sent after the call
//!   commits to webhooks and to subscribing modules ([`Module::on_event`]).
//! - [`notify`]: email to the tenant's users, queued in the call's
//!   transaction and delivered by the host (API 0.3.0).
//!
//! - [`jobs`]: work queued for after the request ([`jobs::enqueue`]), run by
//!   [`Module::run_job`], with progress ([`jobs::progress`]).
//!
//! # Native builds
//!
//! The crate compiles for the host target too, so module crates can be
//! unit-tested and linted natively. Outside a component there is no host to
//! talk to: [`db`] functions return a [`db::DbError`] of kind
//! [`db::DbErrorKind::Other`], [`log`] writes to standard error,
//! [`entitlements`] answers as for a call without a subscription,
//! [`events`] answers unavailable, and
//! [`notify::email`] answers unavailable, and
//! [`context()`] panics.

#![warn(missing_docs)]

mod context;
pub mod db;
pub mod entitlements;
pub mod events;
pub mod files;
mod http;
pub mod jobs;
pub mod log;
mod module;
pub mod notify;
mod router;
mod runtime;

pub use context::{CallContext, Caller, CallerKind, Role, context};
pub use http::{BodyError, IntoResponse, Problem, Request, Response};
pub use module::{
    Event, Feature, FeatureKind, Gates, HookError, Job, JobOutput, Limit, LimitKind, Migration,
    Module,
};
pub use router::Router;

/// Exports a type implementing [`Module`] as the component's `guest`
/// interface.
///
/// Call it once per crate, at the top level, with the module type:
/// `souk_sdk::export_module!(Membership);`. The crate must be built as a
/// `cdylib` for `wasm32-wasip2`; on other targets the macro only checks that
/// the type implements [`Module`], so the crate still builds, tests and lints
/// natively.
#[macro_export]
macro_rules! export_module {
    ($module:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type SoukModuleExport = $crate::__private::GuestAdapter<$module>;
            $crate::__private::bindings::__export_module_world!(
                SoukModuleExport with_types_in $crate::__private::bindings
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = $crate::__private::assert_module::<$module>;
    };
}

/// Implementation details of [`export_module!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::GuestAdapter;
    pub use crate::runtime::bindings;

    /// Compiles only when `M` implements [`crate::Module`].
    pub fn assert_module<M: crate::Module>() {}
}
