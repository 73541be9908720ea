//! Digital Card: membership cards a tenant issues to the members of its
//! Membership module, each with a QR code that opens a public verification
//! page, rendered from templates, shared by revocable links.
//!
//! See README.md for the routes, the features by plan and the data kept.
//!
//! Three releases are built from this source: 1.2.0 (this crate, default
//! feature `release-1-2`: migration `0004_templates`, the tenant's own
//! templates and the bulk QR zip), 1.1.0 (`tests/modules/digital-card-v1_1`,
//! feature `release-1-1` only: migrations `0002_custom_fields` and
//! `0003_branding`, the `/fields` and `/branding` routes) and 1.0.0
//! (`tests/modules/digital-card-v1_0`, neither), so each upgrade is tested
//! with data.

mod analytics;
mod batch;
#[cfg(feature = "release-1-1")]
mod branding;
mod card;
mod dates;
mod export;
mod face;
#[cfg(feature = "release-1-1")]
mod fields;
mod fonts;
mod image;
mod lifecycle;
mod members;
mod qr;
#[cfg(feature = "release-1-2")]
mod qr_zip;
mod raster;
mod render;
mod routes;
mod schema;
mod settings;
#[cfg(feature = "release-1-2")]
mod templates;
mod token;
mod verify;
#[cfg(feature = "release-1-2")]
mod zipfile;

use souk_sdk::{
    Event, Gates, HookError, Job, JobOutput, LimitKind, Migration, Module, Request, Response,
};

/// The module, exported as the component's `guest` interface.
struct DigitalCard;

/// The features the module declares, as `catalog/digital-card.yaml` sells
/// them (module.yaml lists the same keys).
const FEATURES: [(&str, &str); 16] = [
    ("card_creation", "Issue, renew and revoke membership cards."),
    (
        "basic_templates",
        "The three basic card templates, rendered to SVG.",
    ),
    (
        "qr_code_generation",
        "A QR code per card that opens its verification page.",
    ),
    (
        "share_links",
        "Revocable, optionally expiring links to a card's public page.",
    ),
    (
        "advanced_templates",
        "Advanced templates and templates of the tenant's own.",
    ),
    (
        "custom_branding",
        "The tenant's logo, colours and font on cards and public pages.",
    ),
    (
        "batch_generation",
        "Issue cards to every member matching a filter, as a job.",
    ),
    ("card_export", "Export cards as SVG, PNG and PDF."),
    (
        "basic_analytics",
        "Cards issued, verifications and shares per month.",
    ),
    ("premium_templates", "Premium templates."),
    ("white_label", "No Souk mark on cards and public pages."),
    (
        "api_access",
        "Issue, revoke and look up cards with a module API key.",
    ),
    (
        "advanced_analytics",
        "Analytics per day, template, status and card.",
    ),
    (
        "webhooks",
        "card.* events delivered to the tenant's webhook endpoints.",
    ),
    ("bulk_qr", "QR codes for many cards at once."),
    ("custom_fields", "Extra card fields the tenant defines."),
];

impl Module for DigitalCard {
    fn migrations() -> Vec<Migration> {
        schema::migrations()
    }

    fn install() -> Result<(), HookError> {
        schema::seed()
    }

    fn gates() -> Gates {
        FEATURES
            .iter()
            .fold(Gates::new(), |gates, (key, description)| {
                gates.feature(key, description)
            })
            .limit(
                "max_cards",
                "How many cards a tenant may keep (any status).",
                LimitKind::Count,
            )
            .limit(
                "max_templates",
                "How many templates of its own a tenant may keep.",
                LimitKind::Count,
            )
            .limit(
                verify::SCAN_METER,
                "Verifications of the tenant's cards per month.",
                LimitKind::Meter,
            )
    }

    fn handle(request: Request) -> Response {
        routes::router().handle(request)
    }

    fn on_event(event: Event) -> Result<(), HookError> {
        lifecycle::on_event(&event)
    }

    fn run_job(job: Job) -> Result<JobOutput, HookError> {
        lifecycle::run_job(&job)
    }
}

souk_sdk::export_module!(DigitalCard);
