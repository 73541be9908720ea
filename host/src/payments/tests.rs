//! Tests of invoices and payments over a real control plane.

use std::sync::Arc;

use time::OffsetDateTime;

use super::service::{Payments, PaymentsConfig};
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

pub(super) fn config() -> PaymentsConfig {
    PaymentsConfig {
        // These tests number in Gregorian fiscal years (the `MM-DD` rule);
        // the default `bs` rule is tested in fiscal.rs and renewal_link.rs.
        fiscal_year: super::fiscal::FiscalYearStart::parse("07-17", "+05:45").unwrap(),
        seller: Seller {
            name: "Souk Pvt. Ltd.".into(),
            address: "Kathmandu".into(),
            pan: "601234567".into(),
        },
        ..PaymentsConfig::default()
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
    pub config: PaymentsConfig,
    pub providers: crate::payments::providers::Providers,
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
            providers: crate::payments::providers::Providers::new(&config().providers).unwrap(),
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
            &self.providers,
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

mod inbox_rules {
    use super::*;
    use crate::billing::store::state_name;
    use crate::payments::apply::{PaymentStatus, ProviderEvent};
    use crate::payments::inbox::{self, AttemptStatus, NewAttempt, Outcome, Provider};
    use crate::payments::store::Invoice;

    /// An issued invoice for `request` and an attempt to pay it with eSewa
    /// known as `reference`.
    async fn attempt(
        host: &Host,
        tenant: usize,
        request: PurchaseRequest<'_>,
        reference: &str,
    ) -> (Invoice, String) {
        let invoice = host
            .payments()
            .issue_invoice(&host.tenants[tenant], request, None)
            .await
            .unwrap();
        let mut conn = host.control.pool().acquire().await.unwrap();
        let id = inbox::create_attempt(
            &mut conn,
            NewAttempt {
                invoice_id: &invoice.id,
                tenant_id: &invoice.tenant_id,
                provider: Provider::Esewa,
                provider_ref: reference,
                amount: invoice.totals.total,
                currency: invoice.currency,
                status: AttemptStatus::Pending,
            },
            at("2026-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
        (invoice, id)
    }

    fn event<'a>(
        id: &'a str,
        reference: &'a str,
        status: PaymentStatus,
        amount: i64,
        when: &str,
    ) -> ProviderEvent<'a> {
        ProviderEvent {
            provider: Provider::Esewa,
            event_id: id,
            provider_ref: reference,
            status,
            raw_status: "COMPLETE",
            amount: Some(amount),
            currency: Some(npr()),
            occurred_at: at(when),
            payment_reference: "0007ABC",
            subscription: None,
        }
    }

    async fn state(
        host: &Host,
        tenant: usize,
        module: &str,
    ) -> Option<(String, &'static str, u32, i64)> {
        host.billing
            .get(&host.tenants[tenant], module)
            .await
            .unwrap()
            .map(|r| {
                (
                    r.subscription.plan.clone(),
                    state_name(r.subscription.state),
                    r.prepaid_periods,
                    r.revision,
                )
            })
    }

    #[tokio::test]
    async fn a_confirmed_payment_grants_once_and_the_same_event_twice_changes_nothing() {
        let host = Host::new(1, "2026-01-01T00:00:00Z").await;
        let (invoice, attempt_id) = attempt(&host, 0, plan("digital-card", "pro"), "uuid-1").await;
        let total = invoice.totals.total;
        let payments = host.payments();
        let first = payments
            .record_event(event(
                "t1",
                "uuid-1",
                PaymentStatus::Completed,
                total,
                "2026-01-01T00:01:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(first.outcome, Outcome::Granted);
        assert_eq!(first.attempt_id.as_deref(), Some(attempt_id.as_str()));
        let after = state(&host, 0, "digital-card").await;
        assert_eq!(after, Some(("pro".into(), "active", 0, 1)));
        let paid = payments.invoice(None, &invoice.id).await.unwrap();
        assert_eq!(paid.status, InvoiceStatus::Paid);
        assert_eq!(paid.provider.as_deref(), Some("esewa"));
        assert_eq!(paid.provider_reference.as_deref(), Some("0007ABC"));
        // The same event again: recorded outcome, nothing moves.
        let again = payments
            .record_event(event(
                "t1",
                "uuid-1",
                PaymentStatus::Completed,
                total,
                "2026-01-01T00:01:00Z",
            ))
            .await
            .unwrap();
        assert!(again.repeated);
        assert_eq!(again.outcome, Outcome::Granted);
        assert_eq!(state(&host, 0, "digital-card").await, after);
        // Another confirmation of the same payment (webhook after lookup):
        // ignored, not a second period.
        let other = payments
            .record_event(event(
                "t1-lookup",
                "uuid-1",
                PaymentStatus::Completed,
                total,
                "2026-01-01T00:02:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(other.outcome, Outcome::Ignored);
        assert_eq!(state(&host, 0, "digital-card").await, after);
    }

    #[tokio::test]
    async fn a_mismatched_amount_or_a_canceled_attempt_is_flagged_never_granted() {
        let host = Host::new(2, "2026-01-01T00:00:00Z").await;
        let (invoice, _) = attempt(&host, 0, plan("digital-card", "pro"), "uuid-a").await;
        let payments = host.payments();
        let short = payments
            .record_event(event(
                "e1",
                "uuid-a",
                PaymentStatus::Completed,
                invoice.totals.total - 1,
                "2026-01-01T00:01:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(short.outcome, Outcome::Flagged);
        assert!(short.reason.unwrap().contains("37665"));
        assert_eq!(state(&host, 0, "digital-card").await, None);
        let mut usd = event(
            "e2",
            "uuid-a",
            PaymentStatus::Completed,
            invoice.totals.total,
            "2026-01-01T00:01:00Z",
        );
        usd.currency = Some(Currency::parse("USD").unwrap());
        assert_eq!(
            payments.record_event(usd).await.unwrap().outcome,
            Outcome::Flagged
        );
        assert_eq!(state(&host, 0, "digital-card").await, None);

        let (invoice, id) = attempt(&host, 1, plan("digital-card", "pro"), "uuid-b").await;
        let mut conn = host.control.pool().acquire().await.unwrap();
        inbox::update_attempt(
            &mut conn,
            &id,
            AttemptStatus::Canceled,
            None,
            None,
            at("2026-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
        drop(conn);
        let late = payments
            .record_event(event(
                "e3",
                "uuid-b",
                PaymentStatus::Completed,
                invoice.totals.total,
                "2026-01-01T00:01:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(late.outcome, Outcome::Flagged);
        assert_eq!(state(&host, 1, "digital-card").await, None);
        let unknown = payments
            .record_event(event(
                "e4",
                "uuid-nobody",
                PaymentStatus::Completed,
                1,
                "2026-01-01T00:01:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(unknown.outcome, Outcome::Flagged);
        let mut conn = host.control.pool().acquire().await.unwrap();
        let flagged = inbox::flagged(&mut conn, 10).await.unwrap();
        assert_eq!(flagged.len(), 4);
        assert_eq!(
            payments.invoice(None, &invoice.id).await.unwrap().status,
            InvoiceStatus::Open
        );
    }

    #[tokio::test]
    async fn pending_is_held_and_an_older_event_never_moves_an_attempt_back() {
        let host = Host::new(1, "2026-01-01T00:00:00Z").await;
        let (invoice, id) = attempt(&host, 0, plan("digital-card", "pro"), "uuid-p").await;
        let total = invoice.totals.total;
        let payments = host.payments();
        let held = payments
            .record_event(event(
                "p1",
                "uuid-p",
                PaymentStatus::Pending,
                total,
                "2026-01-01T00:05:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(held.outcome, Outcome::Held);
        let mut conn = host.control.pool().acquire().await.unwrap();
        let a = inbox::attempt_by_id(&mut conn, &id, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.status, AttemptStatus::Pending);
        // Next check 5 minutes (the default delay) from the host's now.
        assert_eq!(
            a.next_check_at,
            Some(at("2026-01-01T00:05:00Z").unix_timestamp())
        );
        drop(conn);
        // A failure older than the pending event: ignored.
        let old = payments
            .record_event(event(
                "f0",
                "uuid-p",
                PaymentStatus::Failed,
                total,
                "2026-01-01T00:04:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(old.outcome, Outcome::Ignored);
        let granted = payments
            .record_event(event(
                "c1",
                "uuid-p",
                PaymentStatus::Completed,
                total,
                "2026-01-01T00:06:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(granted.outcome, Outcome::Granted);
        // A pending event arriving late (older) does not unpay it.
        let late = payments
            .record_event(event(
                "p0",
                "uuid-p",
                PaymentStatus::Pending,
                total,
                "2026-01-01T00:03:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(late.outcome, Outcome::Ignored);
        let mut conn = host.control.pool().acquire().await.unwrap();
        let a = inbox::attempt_by_id(&mut conn, &id, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.status, AttemptStatus::Paid);
        assert_eq!(state(&host, 0, "digital-card").await.unwrap().1, "active");
        // A refund of the paid attempt is for the operator.
        let refund = payments
            .record_event(event(
                "r1",
                "uuid-p",
                PaymentStatus::Refunded,
                total,
                "2026-01-02T00:00:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(refund.outcome, Outcome::Flagged);
    }

    #[tokio::test]
    async fn a_paid_trial_converts_through_the_state_machine_and_renewals_prepay() {
        let host = Host::new(1, "2026-01-01T00:00:00Z").await;
        let tenant = &host.tenants[0];
        host.billing
            .subscribe(
                tenant,
                "digital-card",
                "pro",
                None,
                crate::billing::service::Actor::Tenant("tenant-0"),
            )
            .await
            .unwrap();
        assert_eq!(state(&host, 0, "digital-card").await.unwrap().1, "trialing");
        let (invoice, _) = attempt(&host, 0, plan("digital-card", "pro"), "uuid-t").await;
        assert_eq!(invoice.purchase.kind, PurchaseKind::Subscribe);
        let done = host
            .payments()
            .record_event(event(
                "t",
                "uuid-t",
                PaymentStatus::Completed,
                invoice.totals.total,
                "2026-01-02T00:00:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(done.outcome, Outcome::Granted);
        let (plan_slug, st, prepaid, _) = state(&host, 0, "digital-card").await.unwrap();
        assert_eq!((plan_slug.as_str(), st, prepaid), ("pro", "trialing", 1));
        // The trial ends paid at maintenance.
        host.clock.set(at("2026-01-31T00:00:01Z"));
        host.billing.run_maintenance().await.unwrap();
        let (_, st, prepaid, _) = state(&host, 0, "digital-card").await.unwrap();
        assert_eq!((st, prepaid), ("active", 0));
    }

    #[tokio::test]
    async fn a_bundle_grants_every_module_or_none() {
        let host = Host::new(2, "2026-01-01T00:00:00Z").await;
        let bundle = PurchaseRequest::Bundle {
            bundle: "starter",
            currency: None,
        };
        let (invoice, _) = attempt(&host, 0, bundle, "uuid-s").await;
        let ok = host
            .payments()
            .record_event(event(
                "s",
                "uuid-s",
                PaymentStatus::Completed,
                invoice.totals.total,
                "2026-01-01T00:01:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(ok.outcome, Outcome::Granted);
        assert_eq!(state(&host, 0, "digital-card").await.unwrap().1, "active");
        assert_eq!(state(&host, 0, "forum").await.unwrap().1, "active");
        // Tenant 1: forum got paid by the operator meanwhile; the bundle
        // is flagged and digital-card is not half-granted.
        let (invoice, _) = attempt(&host, 1, bundle, "uuid-s2").await;
        host.billing
            .grant(&host.tenants[1], "forum", "premium", 1, None)
            .await
            .unwrap();
        let forum_before = state(&host, 1, "forum").await;
        let flagged = host
            .payments()
            .record_event(event(
                "s2",
                "uuid-s2",
                PaymentStatus::Completed,
                invoice.totals.total,
                "2026-01-01T00:01:00Z",
            ))
            .await
            .unwrap();
        assert_eq!(flagged.outcome, Outcome::Flagged, "{flagged:?}");
        assert_eq!(state(&host, 1, "digital-card").await, None);
        assert_eq!(state(&host, 1, "forum").await, forum_before);
    }
}

#[tokio::test]
async fn the_pdf_parses_and_shows_the_totals_and_the_html_escapes_names() {
    let host = Host::new(1, "2026-01-01T00:00:00Z").await;
    sqlx::query("UPDATE tenants SET name = '<script>alert(1)</script> Sangh' WHERE id = 't0'")
        .execute(host.control.pool())
        .await
        .unwrap();
    let mut tenant = host.tenants[0].clone();
    tenant.name = "<script>alert(1)</script> Sangh".into();
    let invoice = host
        .payments()
        .issue_invoice(&tenant, plan("digital-card", "pro"), Some("301234567"))
        .await
        .unwrap();
    let bytes = super::document::pdf(&invoice).unwrap();
    let shown = super::pdf_extract::pdf_text(&bytes).unwrap();
    for expected in [
        "Souk Pvt. Ltd.",
        "PAN/VAT: 601234567",
        "Tax Invoice INV-2025/26-000001",
        "Buyer PAN: 301234567",
        "digital-card — Pro, one monthly period",
        "NPR 333.33",
        "VAT 13%",
        "NPR 43.33",
        "Total",
        "NPR 376.66",
    ] {
        assert!(
            shown.iter().any(|s| s == expected),
            "{expected:?} not in {shown:?}"
        );
    }
    // Truncated or corrupted bytes do not parse.
    assert!(super::pdf_extract::pdf_text(&bytes[..bytes.len() / 2]).is_err());
    let html = super::document::html(&invoice);
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; Sangh"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("NPR 376.66") && html.contains("VAT 13%"));
}

#[tokio::test]
async fn the_pdf_prints_devanagari_and_accented_names_that_extract_as_text() {
    let host = Host::new(1, "2026-01-01T00:00:00Z").await;
    let mut tenant = host.tenants[0].clone();
    for name in ["नेपाल युवा क्लब", "Café Zürich – Ñandú", "श्री कृष्ण प्रज्ञा समिति"]
    {
        tenant.name = name.into();
        let invoice = host
            .payments()
            .issue_invoice(&tenant, plan("digital-card", "pro"), None)
            .await
            .unwrap();
        let bytes = super::document::pdf(&invoice).unwrap();
        let shown = super::pdf_extract::pdf_text(&bytes).unwrap();
        let bill_to = format!("Bill to: {name}");
        for expected in [bill_to.as_str(), "NPR 333.33", "NPR 43.33", "NPR 376.66"] {
            assert!(
                shown.iter().any(|s| s == expected),
                "{expected:?} not in {shown:?}"
            );
        }
        // The fonts are embedded subsets, not the standard Helvetica.
        let raw = String::from_utf8_lossy(&bytes);
        assert!(raw.contains("/FontFile2") && raw.contains("/Identity-H"));
        assert!(!raw.contains("Helvetica"));
        assert!(bytes.len() < 200_000, "{} bytes", bytes.len());
    }
}

#[tokio::test]
async fn a_payment_link_shows_only_its_own_invoice_and_only_until_it_expires() {
    use super::inbox::Provider;
    use super::pay_token::{PayLinkGrant, PayLinkSigner};
    let host = Host::new(2, "2026-01-01T00:00:00Z").await;
    let signer = PayLinkSigner::with_key([3; 32]);
    let payments = host.payments().with_pay_links(&signer);
    let invoice = payments
        .issue_invoice(&host.tenants[0], plan("digital-card", "pro"), None)
        .await
        .unwrap();
    let link = payments.pay_link(&invoice).unwrap();
    assert!(
        link.url.starts_with("http://127.0.0.1:8080/pay/"),
        "{link:?}"
    );
    assert_eq!(link.expires_at, at("2026-01-31T00:00:00Z"));
    let token = link.url.rsplit('/').next().unwrap();
    let page = payments.pay_page(token).await.unwrap();
    assert_eq!(page.invoice.id, invoice.id);
    // No provider is configured here: nothing to pay with.
    assert!(page.providers.is_empty());
    assert!(matches!(
        payments
            .pay_by_link(token, Provider::Esewa, "http://127.0.0.1")
            .await,
        Err(SoukError::Invalid(_))
    ));
    // The same invoice claimed for another tenant, under the right key:
    // not found.
    let other = signer.sign(&PayLinkGrant {
        invoice_id: invoice.id.clone(),
        tenant_id: host.tenants[1].id.clone(),
        expires: at("2027-01-01T00:00:00Z").unix_timestamp(),
    });
    assert!(matches!(
        payments.pay_page(&other).await,
        Err(SoukError::NotFound(_))
    ));
    // A host without the key has no links.
    assert!(matches!(
        host.payments().pay_page(token).await,
        Err(SoukError::NotFound(_))
    ));
    // Expired: not found.
    host.clock.set(at("2026-01-31T00:00:01Z"));
    assert!(matches!(
        payments.pay_page(token).await,
        Err(SoukError::NotFound(_))
    ));
}
