//! The time-driven step: trials end, renewals use a prepaid period or go
//! past due, grace and canceled periods run out, expired subscriptions fall
//! back to the free plan, notifications go to the outbox, and ended meter
//! periods are closed with their totals.

use serde::Serialize;
use sqlx::{Sqlite, Transaction};
use time::{Duration, OffsetDateTime};

use super::{Actor, Billing};
use crate::billing::store::{self, Change, SubscriptionRecord};
use crate::billing::subscription::{Subscription, SubscriptionEvent, SubscriptionState};
use crate::calendar::monthly_period;
use crate::clock::{ManualClock, rfc3339};
use crate::entitlements::Period;
use crate::error::SoukError;

/// How long before a trial ends the `trial_ending` notification is written.
pub const TRIAL_ENDING_NOTICE: Duration = Duration::days(3);

/// What one maintenance run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaintenanceReport {
    /// When it ran (host clock), RFC 3339.
    pub at: String,
    /// Subscriptions that were due for a step (a period or grace end
    /// reached, or a trial ending soon); the others were not read.
    pub examined: usize,
    /// Changes made, as `tenant/module: action`.
    pub changes: Vec<String>,
    /// Events written to the outbox; a repeated run writes none (each event
    /// has a dedupe key).
    pub notifications: usize,
    /// Metering periods that ended since the last run and were closed
    /// (their total written to the outbox as `usage_period_closed`).
    pub periods_closed: usize,
    /// Subscriptions (or their meters) this run could not maintain, each
    /// isolated: its own changes are rolled back and retried by the next
    /// run, and every other subscription is maintained as usual. Also
    /// logged as warnings.
    pub failed: Vec<MaintenanceFailure>,
}

/// One subscription maintenance could not move on, and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaintenanceFailure {
    /// The tenant's internal id.
    pub tenant: String,
    /// The module's slug.
    pub module: String,
    /// What failed (e.g. `renewal` or `meter qr_scans_per_month`).
    pub step: String,
    /// The error, as an operator would read it.
    pub error: String,
}

impl MaintenanceReport {
    /// Records (and logs) that `step` of (`tenant`, `module`) failed.
    fn fail(&mut self, tenant: &str, module: &str, step: String, error: &SoukError) {
        tracing::warn!(tenant, module, step, error = %error, "maintenance step failed; the others proceed");
        self.failed.push(MaintenanceFailure {
            tenant: tenant.to_owned(),
            module: module.to_owned(),
            step,
            error: error.to_string(),
        });
    }
}

impl Billing {
    /// The time-driven step: ends trials, renews or moves renewals to
    /// past_due, expires subscriptions after grace or a canceled period and
    /// moves them to the module's free plan, and writes notifications to the
    /// outbox. Idempotent: a second run at the same time changes nothing.
    ///
    /// # Errors
    /// Database failures (changes made before the failure are kept; the next
    /// run continues from there).
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport, SoukError> {
        let now = self.clock.now();
        let mut report = MaintenanceReport {
            at: rfc3339(now),
            ..MaintenanceReport::default()
        };
        let due = {
            let mut conn = self.control.pool().acquire().await?;
            store::due(&mut conn, now, TRIAL_ENDING_NOTICE).await?
        };
        for (tenant_id, module) in due {
            report.examined += 1;
            // One subscription's failure (its transaction rolls back) must
            // not stop the others: it is reported and retried next run.
            let mut own = MaintenanceReport::default();
            match self.maintain_one(&tenant_id, &module, now, &mut own).await {
                Ok(()) => {
                    report.changes.append(&mut own.changes);
                    report.notifications += own.notifications;
                }
                Err(e) => report.fail(&tenant_id, &module, "subscription".to_owned(), &e),
            }
        }
        Ok(report)
    }

    async fn maintain_one(
        &self,
        tenant_id: &str,
        module: &str,
        now: OffsetDateTime,
        report: &mut MaintenanceReport,
    ) -> Result<(), SoukError> {
        let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        let Some(mut record) = store::load(&mut tx, tenant_id, module).await? else {
            return Ok(());
        };
        // One run sees one "now": a clock that is never moved.
        let clock = ManualClock::new(now);
        let label = Actor::Maintenance.label();
        // A notification is written once per pair, kind and instant it is
        // about (its dedupe key); true when this call wrote it.
        let notify = async |tx: &mut Transaction<'_, Sqlite>,
                            kind: &str,
                            about: OffsetDateTime,
                            payload: &serde_json::Value|
               -> Result<bool, SoukError> {
            let key = format!("{tenant_id}/{module}/{kind}/{}", about.unix_timestamp());
            Ok(store::push_outbox(tx, now, kind, tenant_id, module, &key, payload).await?)
        };
        // A subscription left alone for several periods catches up one step
        // at a time; each step is one transition of the state machine.
        for _ in 0..1000 {
            let from = record.subscription.state;
            let s = &record.subscription;
            let payload = serde_json::json!({
                "module": module,
                "plan": s.plan,
                "period_end": rfc3339(s.period_end),
            });
            let (event, action, notice): (SubscriptionEvent, &str, Option<&str>) = match s.state {
                SubscriptionState::Trialing if now >= s.period_end => {
                    let paid = record.prepaid_periods > 0;
                    let kind = if paid {
                        "trial_converted"
                    } else {
                        "trial_ended"
                    };
                    (SubscriptionEvent::TrialEnded { paid }, kind, Some(kind))
                }
                SubscriptionState::Trialing => {
                    if now + TRIAL_ENDING_NOTICE >= s.period_end {
                        report.notifications += usize::from(
                            notify(&mut tx, "trial_ending", s.period_end, &payload).await?,
                        );
                    }
                    break;
                }
                SubscriptionState::Active if now >= s.period_end => {
                    if s.price == 0 {
                        (SubscriptionEvent::PeriodEnded, "renewed", None)
                    } else if record.prepaid_periods > 0 {
                        (
                            SubscriptionEvent::PaymentSucceeded,
                            "renewed",
                            Some("renewed"),
                        )
                    } else {
                        (
                            SubscriptionEvent::PaymentFailed,
                            "payment_failed",
                            Some("payment_due"),
                        )
                    }
                }
                SubscriptionState::PastDue if s.grace_ends.is_some_and(|end| now >= end) => {
                    (SubscriptionEvent::GraceExpired, "expired", Some("expired"))
                }
                SubscriptionState::Canceled if now >= s.period_end => {
                    (SubscriptionEvent::PeriodEnded, "expired", Some("expired"))
                }
                _ => break,
            };
            let period_end = record.subscription.period_end;
            record.subscription.apply(event, &clock).map_err(|e| {
                SoukError::Internal(anyhow::anyhow!("maintenance of {tenant_id}/{module}: {e}"))
            })?;
            match event {
                SubscriptionEvent::TrialEnded { paid: true }
                | SubscriptionEvent::PaymentSucceeded => record.prepaid_periods -= 1,
                SubscriptionEvent::TrialEnded { paid: false } => record.trial_unpaid = true,
                _ => {}
            }
            let change = Change {
                action,
                actor: &label,
                detail: None,
                at: now,
            };
            store::save(&mut tx, &mut record, Some(from), &change).await?;
            report
                .changes
                .push(format!("{tenant_id}/{module}: {action}"));
            if let Some(kind) = notice {
                report.notifications +=
                    usize::from(notify(&mut tx, kind, period_end, &payload).await?);
            }
            if record.subscription.state == SubscriptionState::Expired
                && let Some(free) = self
                    .module_plans(module)
                    .and_then(|plans| plans.free_plan().cloned())
            {
                let subscription = Subscription::start(
                    tenant_id,
                    module,
                    &free,
                    record.subscription.currency,
                    &clock,
                )
                .map_err(|e| SoukError::Internal(e.into()))?;
                let revision = record.revision;
                record = SubscriptionRecord::new(subscription);
                record.revision = revision;
                let change = Change {
                    action: "downgraded",
                    actor: &label,
                    detail: Some(format!("to the free plan {}", free.slug)),
                    at: now,
                };
                store::save(
                    &mut tx,
                    &mut record,
                    Some(SubscriptionState::Expired),
                    &change,
                )
                .await?;
                report
                    .changes
                    .push(format!("{tenant_id}/{module}: downgraded to {}", free.slug));
                let payload = serde_json::json!({"module": module, "plan": free.slug});
                report.notifications +=
                    usize::from(notify(&mut tx, "downgraded", period_end, &payload).await?);
            }
        }
        tx.commit().await?;
        self.fresh_map()
            .remove(&(tenant_id.to_owned(), module.to_owned()));
        Ok(())
    }

    /// Closes the metering periods that ended: for every subscription whose
    /// plan has meters, the period before the current one gets a
    /// `usage_period_closed` outbox event with its total (read through
    /// `used`), once. The engine and the database start the new period from
    /// zero on their own (usage is keyed by period), so closing is about
    /// telling the tenant, and it is idempotent like the rest.
    ///
    /// # Errors
    /// Database failures.
    pub async fn close_meter_periods<F, Fut>(
        &self,
        report: &mut MaintenanceReport,
        used: F,
    ) -> Result<(), SoukError>
    where
        F: Fn(String, String, String, Period) -> Fut,
        Fut: std::future::Future<Output = Result<u64, SoukError>>,
    {
        let now = self.clock.now();
        let all = {
            let mut conn = self.control.pool().acquire().await?;
            store::all(&mut conn).await?
        };
        for record in all {
            let s = &record.subscription;
            let (tenant_id, module) = (&s.tenant, &s.module);
            let Some(plans) = self.module_plans(module) else {
                continue;
            };
            let Some(plan) = plans.plan(&s.plan) else {
                continue;
            };
            if plan.meters.is_empty() {
                continue;
            }
            let current = monthly_period(s.anchor, now);
            if current.start <= s.anchor {
                continue;
            }
            let previous = Period::from(monthly_period(
                s.anchor,
                current.start - Duration::seconds(1),
            ));
            for (meter, allowance) in &plan.meters {
                let key = format!(
                    "{tenant_id}/{module}/usage_period_closed/{meter}/{}",
                    previous.start.unix_timestamp()
                );
                let seen: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM outbox WHERE dedupe_key = ?")
                        .bind(&key)
                        .fetch_optional(self.control.pool())
                        .await?;
                if seen.is_some() {
                    continue;
                }
                let total =
                    match used(tenant_id.clone(), module.clone(), meter.clone(), previous).await {
                        Ok(total) => total,
                        Err(e) => {
                            report.fail(tenant_id, module, format!("meter {meter}"), &e);
                            continue;
                        }
                    };
                let payload = serde_json::json!({
                    "module": module,
                    "meter": meter,
                    "plan": s.plan,
                    "period_start": rfc3339(previous.start),
                    "period_end": rfc3339(previous.end),
                    "used": total,
                    "allowance": allowance.amount.limit(),
                });
                let mut tx = self.control.pool().begin().await?;
                let added = store::push_outbox(
                    &mut tx,
                    now,
                    "usage_period_closed",
                    tenant_id,
                    module,
                    &key,
                    &payload,
                )
                .await?;
                tx.commit().await?;
                if added {
                    report.periods_closed += 1;
                    report.notifications += 1;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::billing::service::fixtures::{at, billing, manifest};
    use crate::clock::{Clock, ManualClock};
    use crate::entitlements::{DenialReason, EntitlementEngine};

    #[tokio::test]
    async fn maintenance_walks_a_trial_to_the_free_plan_and_repeats_nothing() {
        let clock = Arc::new(ManualClock::new(at("2026-01-01T00:00:00Z")));
        let (billing, tenant) = billing(clock.clone()).await;
        let tenant_actor = Actor::Tenant("acme");
        billing
            .subscribe(&tenant, "digital-card", "pro", None, tenant_actor)
            .await
            .unwrap();
        // A second trial is refused while the first gives access.
        let again = billing
            .subscribe(&tenant, "digital-card", "business", None, tenant_actor)
            .await;
        assert!(matches!(again, Err(SoukError::Conflict(_))), "{again:?}");
        let mut notices = 0;
        for (day, state) in [
            ("2026-01-20T00:00:00Z", "trialing"),
            ("2026-01-29T00:00:00Z", "trialing"),
            ("2026-01-31T00:00:00Z", "past_due"),
            ("2026-02-07T00:00:00Z", "active"),
        ] {
            clock.set(at(day));
            let first = billing.run_maintenance().await.unwrap();
            let second = billing.run_maintenance().await.unwrap();
            assert!(second.changes.is_empty(), "{day}: {second:?}");
            assert_eq!(second.notifications, 0, "{day}: {second:?}");
            notices += first.notifications;
            let view = billing.show(&tenant, "digital-card").await.unwrap();
            assert_eq!(view.state, state, "{day}");
        }
        let view = billing.show(&tenant, "digital-card").await.unwrap();
        assert_eq!(view.plan, "free");
        let kinds: Vec<String> = billing
            .outbox(Some(&tenant), 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            ["trial_ending", "trial_ended", "expired", "downgraded"]
        );
        assert_eq!(notices, 4);
        // The grant on the free plan names the upgrade for a pro feature.
        let manifest = manifest();
        let record = billing.get(&tenant, "digital-card").await.unwrap();
        let grant = billing.grant_for(&manifest, record.as_ref(), clock.now());
        assert_eq!(grant.plan.as_deref(), Some("free"));
        assert_eq!(grant.limits["max_cards"], Some(100));
        assert_eq!(grant.upgrades["premium_templates"], "business");
        let engine = EntitlementEngine::new();
        engine.replace_grant("t1", "digital-card", grant);
        match engine.check_feature("t1", "digital-card", "premium_templates") {
            crate::entitlements::Decision::Denied(d) => {
                assert_eq!(d.reason, DenialReason::FeatureNotInPlan);
                assert_eq!(d.upgrade_plan.as_deref(), Some("business"));
            }
            allowed => panic!("{allowed:?}"),
        }
    }

    #[tokio::test]
    async fn a_trial_converts_when_a_period_was_prepaid() {
        let clock = Arc::new(ManualClock::new(at("2026-01-01T00:00:00Z")));
        let (billing, tenant) = billing(clock.clone()).await;
        billing
            .subscribe(&tenant, "digital-card", "pro", None, Actor::Operator)
            .await
            .unwrap();
        let view = billing.extend(&tenant, "digital-card", 1).await.unwrap();
        assert_eq!((view.state, view.prepaid_periods), ("trialing", 1));
        clock.set(at("2026-01-31T00:00:00Z"));
        let report = billing.run_maintenance().await.unwrap();
        assert_eq!(report.changes, ["t1/digital-card: trial_converted"]);
        let view = billing.show(&tenant, "digital-card").await.unwrap();
        assert_eq!((view.state, view.prepaid_periods), ("active", 0));
        assert_eq!(view.period_end, "2026-02-28T00:00:00Z");
        // Quotes and changes agree; a tenant's paid upgrade needs payment.
        clock.set(at("2026-02-14T00:00:00Z"));
        let quote = billing
            .quote(&tenant, "digital-card", "business")
            .await
            .unwrap();
        assert_eq!(quote.kind, "upgrade");
        let refused = billing
            .change_plan(&tenant, "digital-card", "business", Actor::Tenant("acme"))
            .await;
        assert!(
            matches!(refused, Err(SoukError::PaymentRequired(_))),
            "{refused:?}"
        );
        let (view, charged) = billing
            .change_plan(&tenant, "digital-card", "business", Actor::Operator)
            .await
            .unwrap();
        assert_eq!(view.plan, "business");
        assert_eq!(charged.amount_due_now, quote.amount_due_now);
        assert_eq!(charged.credit, quote.credit);
        // A downgrade waits for the period end.
        let (view, _) = billing
            .change_plan(&tenant, "digital-card", "pro", Actor::Tenant("acme"))
            .await
            .unwrap();
        assert_eq!(
            (view.plan.as_str(), view.scheduled_plan.as_deref()),
            ("business", Some("pro"))
        );
    }
}
