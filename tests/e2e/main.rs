//! End-to-end tests: each test starts the real `souk` binary on loopback
//! with its own data directory and drives it over HTTP (and the CLI).
//!
//! The guest components must be built first (`scripts/build-modules`; the
//! README's test command does it).

mod fake_providers;
mod oidc_provider;
mod smtp_sink;
mod support;

mod api_v0_3;
mod archives;
mod billing;
mod cli_api;
mod digital_card;
mod digital_card_export;
mod digital_card_templates;
mod email;
mod events;
mod fairness;
mod files;
mod forum;
mod hook_usage;
mod hooks;
mod hostile_input;
mod hostile_sql;
mod jobs;
mod lifecycle;
mod membership;
mod metering;
mod noticeboard;
mod packages;
mod pages;
mod payments;
mod payments_renewals;
mod payments_stripe;
mod people;
mod public_url;
mod registry;
mod removal;
mod retention;
mod sandbox;
mod sql_scope;
mod sso;
mod stale_snapshot;
mod tenancy;
