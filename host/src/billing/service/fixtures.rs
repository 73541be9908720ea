//! A [`Billing`] for the service's tests, over the shared billing fixtures.

use std::sync::Arc;

pub(in crate::billing) use crate::billing::fixtures::*;

use super::Billing;
use crate::billing::plans::PlanCatalog;
use crate::clock::ManualClock;
use crate::tenancy::Tenant;

/// Billing over an in-memory control plane with the digital-card plans,
/// and its one tenant, `acme` (id `t1`).
pub(in crate::billing) async fn billing(clock: Arc<ManualClock>) -> (Billing, Tenant) {
    let control = control_with_tenant().await;
    let catalog =
        PlanCatalog::parse(include_str!("../../../../catalog/digital-card.yaml")).unwrap();
    let billing = Billing::new(control, catalog, clock, npr());
    let tenant = Tenant {
        id: "t1".into(),
        slug: "acme".into(),
        name: "Acme".into(),
        created_at: "now".into(),
    };
    (billing, tenant)
}
