//! Souk: a multi-tenant host for business modules that run as sandboxed
//! WebAssembly components.
//!
//! The modules, by layer; imports run from the edges down, never back up
//! (the layout, the request path and the install path are in
//! `docs/architecture.md`):
//! - edges: [`api`], the HTTP API; [`cli`], the `souk` command;
//! - composition root: [`souk`], which builds every part once and lends
//!   each service the parts it needs;
//! - services: [`dispatch`] (serving tenant requests with a module),
//!   [`installer`] (install, upgrade and uninstall, atomically),
//!   [`billing`] (plans, subscriptions, maintenance), [`usage`] (usage
//!   events reported from outside a module, the usage report),
//!   [`catalog`] (module versions available to install), [`archive`] (the
//!   data export written before an uninstall), [`auth`] (operator and
//!   tenant tokens), [`tenancy`] (tenants and their databases),
//!   [`registry`] (pulling from a module registry), [`people`] (tenant
//!   users, invitations, sessions, API keys), [`events`] (webhook
//!   endpoints, event delivery to webhooks and subscribing modules);
//! - [`runtime`]: the wasmtime engine, compile cache, admission, module
//!   calls;
//! - [`capabilities`]: the host interfaces modules import (context, db,
//!   log, entitlements, events), one folder each, and the per-call state;
//! - domain and stores: [`entitlements`] (the engine that answers what a
//!   subscription allows), [`control_plane`] (the host's own database, one
//!   repository per table group), [`tenant_migrations`] (the host's own
//!   tables in every tenant database), [`event_store`] (the event outbox and
//!   delivery logs in a tenant database);
//! - foundation: [`error`], [`clock`], [`calendar`], [`secrets`], [`wit`]
//!   (the generated bindings of each module API version).

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
pub mod downloads;
pub mod entitlements;
pub mod error;
pub mod event_store;
pub mod events;
pub mod installer;
pub mod job_queue;
pub mod jobs;
pub mod mail;
pub mod payments;
pub mod people;
pub mod public_url;
pub mod registry;
pub mod retention;
pub mod runtime;
pub mod secrets;
pub mod souk;
pub mod sso;
pub mod tenancy;
pub mod tenant_migrations;
pub mod usage;
pub mod wit;
pub mod work;

pub use souk::{Souk, SoukConfig};
