//! Souk: a multi-tenant host for business modules that run as sandboxed
//! WebAssembly components.
//!
//! The nouns of the system, one module each:
//! - [`runtime`]: wasmtime engine, compile cache, limits, module calls;
//! - [`capabilities`]: the host interfaces modules import (context, db,
//!   log, entitlements), one folder each, and the per-call state;
//! - [`wit`]: the generated bindings of each module API version;
//! - [`tenancy`]: tenants and their databases; [`tenant_migrations`]: the
//!   host's own tables in every tenant database;
//! - [`auth`]: operator and tenant tokens;
//! - [`catalog`]: module versions available to install;
//! - [`installer`]: install, upgrade and uninstall, atomically, with the
//!   migration ledger and the audit log;
//! - [`archive`]: the data export written before an uninstall;
//! - [`dispatch`]: serving tenant requests with a module;
//! - [`usage`]: usage events reported from outside a module, the usage
//!   report, and making an installation's grant current;
//! - [`api`]: the HTTP API; [`cli`]: the `souk` command.

pub mod api;
pub mod archive;
pub mod auth;
pub mod billing;
pub mod calendar;
pub mod capabilities;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod control_plane;
pub mod dispatch;
pub mod entitlements;
pub mod error;
pub mod installer;
pub mod registry;
pub mod runtime;
pub mod secrets;
pub mod souk;
pub mod tenancy;
pub mod tenant_migrations;
pub mod usage;
pub mod wit;

pub use souk::{Souk, SoukConfig};
