//! What the billing tests share: a time parser, the digital-card plans and
//! manifest, and an in-memory control plane with one tenant (a `Billing`
//! over it is `service::fixtures::billing`, beside the service, so the
//! store's tests can use these without importing the service).

use souk_module_registry::Manifest;
use time::OffsetDateTime;

use crate::billing::plans::{Currency, ModulePlans, PlanCatalog};
use crate::control_plane::ControlPlane;

/// An RFC 3339 instant.
pub(in crate::billing) fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

/// The tests' currency.
pub(in crate::billing) fn npr() -> Currency {
    Currency::parse("NPR").unwrap()
}

/// The plans of `catalog/digital-card.yaml`.
pub(in crate::billing) fn digital_card() -> ModulePlans {
    let catalog = PlanCatalog::parse(include_str!("../../../catalog/digital-card.yaml")).unwrap();
    catalog.modules[0].clone()
}

/// A digital-card manifest declaring two features, a count and a meter.
pub(in crate::billing) const MANIFEST: &str = "slug: digital-card\nname: Digital Card\nversion: 1.0.0\n\
    description: Cards.\ncategory: community\napi: 0.2.0\n\
    features:\n  - key: card_creation\n  - key: premium_templates\n\
    limits:\n  - key: max_cards\n    kind: count\n  - key: qr_scans_per_month\n    kind: meter\n";

/// An in-memory control plane holding one tenant, `acme` (id `t1`).
pub(in crate::billing) async fn control_with_tenant() -> ControlPlane {
    let control = ControlPlane::in_memory().await.unwrap();
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, created_at) VALUES ('t1', 'acme', 'Acme', 'now')",
    )
    .execute(control.pool())
    .await
    .unwrap();
    control
}

/// [`MANIFEST`], parsed.
pub(in crate::billing) fn manifest() -> Manifest {
    Manifest::parse(MANIFEST).unwrap()
}
