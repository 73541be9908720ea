//! Tests of invoices and payments over a real control plane.

use std::sync::Arc;

use time::OffsetDateTime;

use super::service::{InvoiceConfig, Payments};
use super::store::{InvoiceStatus, Seller};
use crate::billing::invoice::{LineKind, PurchaseKind, Totals};
use crate::billing::plans::{Currency, PlanCatalog};
use crate::billing::service::{Billing, PurchaseRequest};
use crate::clock::ManualClock;
use crate::control_plane::ControlPlane;
use crate::error::SoukError;
use crate::tenancy::Tenant;

pub(super) const CATALOG: &str = "modules:
  digital-card:
    plans:
      - { slug: free, name: Free, free: true, interval: monthly }
      - { slug: pro, name: Pro, prices: { NPR: 33333, USD: 1999 }, interval: monthly, trial_days: 30 }
      - { slug: business, name: Business, prices: { NPR: 99999, USD: 4999 }, interval: monthly, trial_days: 30 }
  forum:
    plans:
      - { slug: free, name: Free, free: true, interval: monthly }
      - { slug: premium, name: Premium 1, prices: { NPR: 39900 }, interval: monthly, trial_days: 30 }
bundles:
  - { slug: starter, name: Starter, discount_bps: 1500, plans: { digital-card: pro, forum: premium } }
";

pub(super) fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

pub(super) fn npr() -> Currency {
    Currency::parse("NPR").unwrap()
}

pub(super) fn config() -> InvoiceConfig {
    InvoiceConfig {
        seller: Seller {
            name: "Souk Pvt. Ltd.".into(),
            address: "Kathmandu".into(),
            pan: "601234567".into(),
        },
        ..InvoiceConfig::default()
    }
}

/// A test host: a control plane (in a file, so connections run
/// concurrently), billing over [`CATALOG`], a manual clock, and `count`
/// tenants `t0`, `t1`, ...
pub(super) struct Host {
    pub _dir: tempfile::TempDir,
    pub control: ControlPlane,
    pub billing: Billing,
    pub clock: Arc<ManualClock>,
    pub config: InvoiceConfig,
    pub tenants: Vec<Tenant>,
}

impl Host {
    pub async fn new(count: usize, now: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let control = ControlPlane::open(&dir.path().join("control.db"))
            .await
            .unwrap();
        let mut tenants = Vec::new();
        for i in 0..count {
            let tenant = Tenant {
                id: format!("t{i}"),
                slug: format!("tenant-{i}"),
                name: format!("Tenant {i}"),
                created_at: "now".into(),
            };
            sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES (?, ?, ?, 'now')")
                .bind(&tenant.id)
                .bind(&tenant.slug)
                .bind(&tenant.name)
                .execute(control.pool())
                .await
                .unwrap();
            tenants.push(tenant);
        }
        let clock = Arc::new(ManualClock::new(at(now)));
        let billing = Billing::new(
            control.clone(),
            PlanCatalog::parse(CATALOG).unwrap(),
            clock.clone(),
            npr(),
        );
        Host {
            _dir: dir,
            control,
            billing,
            clock,
            config: config(),
            tenants,
        }
    }

    pub fn payments(&self) -> Payments<'_> {
        Payments::new(
            &self.control,
            &self.billing,
            self.clock.clone(),
            &self.config,
        )
    }
}

pub(super) fn plan<'a>(module: &'a str, plan: &'a str) -> PurchaseRequest<'a> {
    PurchaseRequest::Plan {
        module,
        plan,
        currency: None,
    }
}

#[tokio::test]
async fn a_new_npr_subscription_is_invoiced_with_13_percent_vat_and_numbered() {
    let host = Host::new(1, "2026-08-01T00:00:00Z").await;
    let invoice = host
        .payments()
        .issue_invoice(
            &host.tenants[0],
            plan("digital-card", "pro"),
            Some("123456789"),
        )
        .await
        .unwrap();
    assert_eq!(invoice.status, InvoiceStatus::Open);
    assert_eq!(invoice.number.as_deref(), Some("INV-2026/27-000001"));
    assert_eq!(invoice.purchase.kind, PurchaseKind::Subscribe);
    assert_eq!(invoice.lines.len(), 2);
    assert_eq!(invoice.lines[0].amount, 33_333);
    assert_eq!(invoice.lines[1].kind, LineKind::Tax);
    // 13 % of 333.33 = 43.3329 -> 43.33
    assert_eq!(invoice.lines[1].amount, 4_333);
    assert_eq!(
        invoice.totals,
        Totals {
            subtotal: 33_333,
            tax: 4_333,
            total: 37_666
        }
    );
    assert_eq!(invoice.seller.pan, "601234567");
    assert_eq!(invoice.buyer_name, "Tenant 0");
    assert_eq!(invoice.buyer_pan.as_deref(), Some("123456789"));
    // Issuing an invoice grants nothing.
    assert!(
        host.billing
            .get(&host.tenants[0], "digital-card")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_upgrade_17_days_into_31_is_prorated_to_the_paisa() {
    let host = Host::new(1, "2026-01-01T00:00:00Z").await;
    let tenant = &host.tenants[0];
    host.billing
        .grant(tenant, "digital-card", "pro", 1, None)
        .await
        .unwrap();
    host.clock.set(at("2026-01-15T00:00:00Z")); // 17 of 31 days left
    let invoice = host
        .payments()
        .issue_invoice(tenant, plan("digital-card", "business"), None)
        .await
        .unwrap();
    assert_eq!(invoice.purchase.kind, PurchaseKind::Upgrade);
    let kinds: Vec<_> = invoice.lines.iter().map(|l| (l.kind, l.amount)).collect();
    // business 999.99 * 17/31 = 548.3816.. -> 548.38 (down);
    // credit for pro 333.33 * 17/31 = 182.7938.. -> 182.80 (up);
    // VAT 13 % of 365.58 = 47.5254 -> 47.53.
    assert_eq!(
        kinds,
        vec![
            (LineKind::Plan, 54_838),
            (LineKind::ProrationCredit, -18_280),
            (LineKind::Tax, 4_753)
        ]
    );
    assert_eq!(
        invoice.totals,
        Totals {
            subtotal: 36_558,
            tax: 4_753,
            total: 41_311
        }
    );
    assert_eq!(
        invoice.lines.iter().map(|l| l.amount).sum::<i64>(),
        invoice.totals.total
    );
}

#[tokio::test]
async fn a_usd_invoice_has_no_vat_and_a_renewal_is_a_full_period() {
    let host = Host::new(1, "2026-01-01T00:00:00Z").await;
    let tenant = &host.tenants[0];
    host.billing
        .grant(tenant, "digital-card", "pro", 1, Some("USD"))
        .await
        .unwrap();
    let invoice = host
        .payments()
        .issue_invoice(tenant, plan("digital-card", "pro"), None)
        .await
        .unwrap();
    assert_eq!(invoice.purchase.kind, PurchaseKind::Renew);
    assert_eq!(invoice.currency.as_str(), "USD");
    assert_eq!(invoice.lines.len(), 1);
    assert_eq!(invoice.totals.total, 1_999);
}

#[tokio::test]
async fn a_bundle_is_one_invoice_with_its_discount_before_vat() {
    let host = Host::new(1, "2026-01-01T00:00:00Z").await;
    let invoice = host
        .payments()
        .issue_invoice(
            &host.tenants[0],
            PurchaseRequest::Bundle {
                bundle: "starter",
                currency: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(invoice.purchase.bundle.as_deref(), Some("starter"));
    assert_eq!(invoice.purchase.items.len(), 2);
    let amounts: Vec<_> = invoice.lines.iter().map(|l| (l.kind, l.amount)).collect();
    // 333.33 + 399.00 = 732.33; 15 % = 109.8495 -> 109.85 (up);
    // 622.48 taxable; VAT 80.9224 -> 80.92.
    assert_eq!(
        amounts,
        vec![
            (LineKind::Plan, 33_333),
            (LineKind::Plan, 39_900),
            (LineKind::BundleDiscount, -10_985),
            (LineKind::Tax, 8_092)
        ]
    );
    assert_eq!(invoice.totals.total, 70_340);
}

#[tokio::test]
async fn purchases_that_cost_nothing_or_make_no_sense_are_refused_without_a_number() {
    let host = Host::new(1, "2026-01-01T00:00:00Z").await;
    let tenant = &host.tenants[0];
    let payments = host.payments();
    let free = payments
        .issue_invoice(tenant, plan("digital-card", "free"), None)
        .await;
    assert!(matches!(free, Err(SoukError::Invalid(_))), "{free:?}");
    host.billing
        .grant(tenant, "digital-card", "business", 1, None)
        .await
        .unwrap();
    let down = payments
        .issue_invoice(tenant, plan("digital-card", "pro"), None)
        .await;
    assert!(matches!(down, Err(SoukError::Conflict(_))), "{down:?}");
    let unknown = payments
        .issue_invoice(tenant, plan("digital-card", "gold"), None)
        .await;
    assert!(matches!(unknown, Err(SoukError::Invalid(_))));
    let bad_pan = payments
        .issue_invoice(tenant, plan("forum", "premium"), Some("12 34"))
        .await;
    assert!(matches!(bad_pan, Err(SoukError::Invalid(_))));
    // None of them took a number: the next invoice is the first.
    let first = payments
        .issue_invoice(tenant, plan("forum", "premium"), None)
        .await
        .unwrap();
    assert_eq!(first.number.as_deref(), Some("INV-2025/26-000001"));
}

#[tokio::test]
async fn invoice_numbers_are_gap_free_under_50_concurrent_checkouts() {
    let host = Host::new(50, "2026-07-16T18:00:00Z").await;
    let payments = host.payments();
    let all = futures_util::future::join_all(
        host.tenants
            .iter()
            .map(|t| payments.issue_invoice(t, plan("digital-card", "pro"), None)),
    )
    .await;
    let mut numbers: Vec<String> = all
        .into_iter()
        .map(|r| r.unwrap().number.unwrap())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=50).map(|n| format!("INV-2025/26-{n:06}")).collect();
    assert_eq!(numbers, expected);
    // 18:15 UTC is Shrawan 1 (17 July) in Kathmandu: a new fiscal year
    // starts again from 1.
    host.clock.set(at("2026-07-16T18:15:00Z"));
    let next = payments
        .issue_invoice(&host.tenants[0], plan("forum", "premium"), None)
        .await
        .unwrap();
    assert_eq!(next.number.as_deref(), Some("INV-2026/27-000001"));
    let listed = payments.invoices(None, 100).await.unwrap();
    assert_eq!(listed.len(), 51);
    assert_eq!(listed[0].id, next.id);
    let own = payments
        .invoices(Some(&host.tenants[1]), 100)
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    // Another tenant's invoice is not found.
    let other = payments.invoice(Some(&host.tenants[1]), &next.id).await;
    assert!(matches!(other, Err(SoukError::NotFound(_))));
}

#[tokio::test]
async fn a_rolled_back_issue_gives_its_number_back() {
    let host = Host::new(1, "2026-01-01T00:00:00Z").await;
    let year = host
        .config
        .fiscal_year
        .year_of(crate::clock::Clock::now(host.clock.as_ref()));
    {
        let mut tx = host
            .control
            .pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .unwrap();
        let lines = vec![];
        let purchase = crate::billing::invoice::Purchase {
            kind: PurchaseKind::Subscribe,
            bundle: None,
            items: vec![],
        };
        let new = super::store::NewInvoice {
            tenant_id: "t0",
            currency: npr(),
            lines: &lines,
            totals: Totals {
                subtotal: 1,
                tax: 0,
                total: 1,
            },
            purchase: &purchase,
            seller: &host.config.seller,
            buyer_name: "Tenant 0",
            buyer_pan: None,
        };
        let id = super::store::insert_draft(
            &mut tx,
            &new,
            crate::clock::Clock::now(host.clock.as_ref()),
        )
        .await
        .unwrap();
        let number = super::store::issue(
            &mut tx,
            &id,
            year,
            crate::clock::Clock::now(host.clock.as_ref()),
        )
        .await
        .unwrap();
        assert_eq!(number, "INV-2025/26-000001");
        // dropped: rolled back
    }
    let invoice = host
        .payments()
        .issue_invoice(&host.tenants[0], plan("digital-card", "pro"), None)
        .await
        .unwrap();
    assert_eq!(invoice.number.as_deref(), Some("INV-2025/26-000001"));
}
