//! Subscriptions Stripe renews (issue 14, section 2).
//!
//! A Stripe checkout of one paid plan (a new subscription, a free plan
//! left, a resubscription — not a trial converting, an upgrade, a renewal
//! or a bundle, which stay one-off payments) creates its Checkout Session
//! in `subscription` mode: a recurring price at the plan's interval for
//! the invoice's total. When that session's payment is granted, the Stripe
//! subscription it created is **linked** (table `stripe_subscriptions`) to
//! the tenant's subscription in the grant's own transaction
//! ([`super::stripe_links`]). From then on
//! Stripe's events drive it, each through the payment inbox (keyed by the
//! event id, so a replay changes nothing) and the subscription state
//! machine, in one `BEGIN IMMEDIATE` transaction:
//!
//! - `invoice.paid` (a renewal; the first invoice, `subscription_create`,
//!   is paid through the session and ignored here): the period moves
//!   forward once (or, paid before our period end, one prepaid period),
//!   and a **paid invoice of ours** is issued for it — numbered like every
//!   other, with Stripe's invoice id as the provider reference. An invoice
//!   for a period that is not newer than the newest one paid
//!   (`paid_through`) is ignored, so an older invoice arriving late never
//!   moves the subscription; an amount other than our price is flagged;
//! - `invoice.payment_failed`: past due with the grace period once the
//!   period has ended (before that, maintenance decides at the period end);
//! - `customer.subscription.updated`: `cancel_at_period_end` set is our
//!   cancellation at the period end, cleared is a reactivation;
//!   `metadata[plan]` naming another plan of the module is a plan change;
//!   an event older (by `created`) than the newest applied to the link is
//!   ignored, as is any after the Stripe subscription was deleted;
//! - `customer.subscription.deleted`: canceled now (a subscription already
//!   canceled at its period end keeps its access until then).
//!
//! An event about a Stripe subscription that is linked to nothing of ours
//! is recorded and flagged for the operator.
//!
//! Our own cancellation (and reactivation) of a linked subscription asks
//! Stripe first ([`Payments::cancel_subscription`]); a Stripe that does not
//! answer leaves everything as it was, with a retryable error.

use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::apply::Recorded;
use super::inbox::{self, AttemptStatus, InboxEntry, NewAttempt, Outcome, Provider};
use super::providers::stripe::{self, StripeEvent};
use super::providers::{ProviderError, Recurring};
use super::service::Payments;
use super::store::{self, Invoice, NewInvoice};
use super::stripe_links::{LinkUpdate, StripeLink, live_link, load_link, update_link};
use crate::billing::invoice::{
    self as lines, Line, LineKind, Purchase, PurchaseItem, PurchaseKind,
};
use crate::billing::plans::BillingInterval;
use crate::billing::service::{Actor, ProviderChange, SubscriptionView};
use crate::billing::subscription::{SubscriptionEvent, SubscriptionState, transition};
use crate::clock::rfc3339;
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// A plan Stripe is to renew: what the checkout's recurring price is made
/// of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurringPlan {
    /// The plan's interval.
    pub interval: BillingInterval,
    /// The module's slug.
    pub module: String,
    /// The plan's slug.
    pub plan: String,
}

impl RecurringPlan {
    /// As the provider adapter takes it.
    pub fn as_recurring<'a>(&'a self, tenant_id: &'a str) -> Recurring<'a> {
        Recurring {
            interval: self.interval,
            module: &self.module,
            plan: &self.plan,
            tenant_id,
        }
    }
}

/// What applying one Stripe subscription event decided.
struct Decision {
    outcome: Outcome,
    reason: Option<String>,
    /// The attempt the inbox row names (the renewal's, or the checkout's).
    attempt_id: Option<String>,
    /// Our invoice, for a paid renewal.
    invoice_id: Option<String>,
}

impl Decision {
    fn ignored(link: &StripeLink, why: &str) -> Self {
        Decision {
            outcome: Outcome::Ignored,
            reason: Some(why.to_owned()),
            attempt_id: Some(link.attempt_id.clone()),
            invoice_id: None,
        }
    }

    fn flagged(link: &StripeLink, why: String) -> Self {
        Decision {
            outcome: Outcome::Flagged,
            reason: Some(why),
            attempt_id: Some(link.attempt_id.clone()),
            invoice_id: None,
        }
    }

    fn changed(link: &StripeLink, change: Option<ProviderChange>, outcome: Outcome) -> Self {
        match change {
            Some(change) => Decision {
                outcome,
                reason: Some(change.as_str().to_owned()),
                attempt_id: Some(link.attempt_id.clone()),
                invoice_id: None,
            },
            None => Decision::ignored(link, "the subscription is already there"),
        }
    }
}

/// A Stripe subscription event, parsed.
enum SubscriptionEventBody {
    InvoicePaid(stripe::StripeInvoice),
    InvoiceFailed(stripe::StripeInvoice),
    Updated(stripe::StripeSubscription),
    Deleted(stripe::StripeSubscription),
}

fn provider_error(e: ProviderError, what: &str) -> SoukError {
    match e {
        ProviderError::Refused { .. } => SoukError::Conflict(format!("{e}; {what}")),
        e => SoukError::ProviderUnavailable(format!("{e}; {what}")),
    }
}

impl Payments<'_> {
    /// Whether a Stripe checkout of `invoice` for `tenant` starts a
    /// subscription Stripe renews (see the module docs), and of which plan.
    ///
    /// # Errors
    /// Database failures.
    pub async fn stripe_recurring(
        &self,
        tenant: &Tenant,
        invoice: &Invoice,
    ) -> Result<Option<RecurringPlan>, SoukError> {
        let purchase = &invoice.purchase;
        let [item] = purchase.items.as_slice() else {
            return Ok(None);
        };
        if purchase.kind != PurchaseKind::Subscribe || purchase.bundle.is_some() {
            return Ok(None);
        }
        let catalog = self.billing.plans();
        let Some(plan) = catalog
            .modules
            .iter()
            .find(|m| m.module.as_str() == item.module)
            .and_then(|m| m.plan(&item.plan))
            .filter(|p| !p.free)
        else {
            return Ok(None);
        };
        // A trial converting is prepaid from the trial's end: a one-off
        // payment. So is a module Stripe already renews for the tenant.
        if let Some(record) = self.billing.get(tenant, &item.module).await?
            && record.subscription.state == SubscriptionState::Trialing
        {
            return Ok(None);
        }
        let mut conn = self.control.pool().acquire().await?;
        if live_link(&mut conn, &tenant.id, &item.module)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        Ok(Some(RecurringPlan {
            interval: plan.interval,
            module: item.module.clone(),
            plan: plan.slug.clone(),
        }))
    }

    /// Applies a verified Stripe event about a subscription (see the module
    /// docs); `None` for other event types (acknowledged, unrecorded).
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for an event whose object cannot be read
    /// (nothing recorded); database failures.
    pub async fn stripe_subscription_event(
        &self,
        event: &StripeEvent,
        occurred_at: OffsetDateTime,
    ) -> Result<Option<Recorded>, SoukError> {
        let invalid = |_| SoukError::Invalid("the event's object cannot be read".into());
        let body = match event.kind.as_str() {
            "invoice.paid" => SubscriptionEventBody::InvoicePaid(
                stripe::parse_invoice(&event.object, true).map_err(invalid)?,
            ),
            "invoice.payment_failed" => SubscriptionEventBody::InvoiceFailed(
                stripe::parse_invoice(&event.object, false).map_err(invalid)?,
            ),
            "customer.subscription.updated" => SubscriptionEventBody::Updated(
                stripe::parse_subscription(&event.object).map_err(invalid)?,
            ),
            "customer.subscription.deleted" => SubscriptionEventBody::Deleted(
                stripe::parse_subscription(&event.object).map_err(invalid)?,
            ),
            _ => return Ok(None),
        };
        let (subscription, amount, currency) = match &body {
            SubscriptionEventBody::InvoicePaid(i) | SubscriptionEventBody::InvoiceFailed(i) => {
                (i.subscription.clone(), i.amount, i.currency)
            }
            SubscriptionEventBody::Updated(s) | SubscriptionEventBody::Deleted(s) => {
                (Some(s.id.clone()), None, None)
            }
        };
        let created = occurred_at.unix_timestamp();
        let now = self.clock.now();
        let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        if let Some((outcome, reason)) = inbox::recorded(&mut tx, Provider::Stripe, &event.id)
            .await
            .map_err(super::apply::internal)?
        {
            return Ok(Some(Recorded {
                outcome,
                reason,
                repeated: true,
                attempt_id: None,
                invoice_id: None,
            }));
        }
        let link = match &subscription {
            Some(id) => load_link(&mut tx, id).await?,
            None => None,
        };
        let mut touched = None;
        let decision = match link {
            None => Decision {
                outcome: Outcome::Flagged,
                reason: Some(
                    "no subscription of ours is linked to this Stripe subscription".into(),
                ),
                attempt_id: None,
                invoice_id: None,
            },
            Some(link) => {
                touched = Some((link.tenant_id.clone(), link.module.clone()));
                let mut savepoint = sqlx::Acquire::begin(&mut *tx).await?;
                let decided = self
                    .decide(&mut savepoint, &link, &body, created, now)
                    .await;
                match decided {
                    Ok(decision) if decision.outcome != Outcome::Flagged => {
                        savepoint.commit().await?;
                        decision
                    }
                    Ok(decision) => {
                        savepoint.rollback().await?;
                        decision
                    }
                    Err(
                        SoukError::Conflict(why)
                        | SoukError::Invalid(why)
                        | SoukError::NotFound(why),
                    ) => {
                        savepoint.rollback().await?;
                        Decision::flagged(&link, format!("not applied: {why}"))
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        inbox::record(
            &mut tx,
            InboxEntry {
                provider: Provider::Stripe,
                event_id: &event.id,
                attempt_id: decision.attempt_id.as_deref(),
                status: &event.kind,
                amount,
                currency,
                occurred_at: created,
                outcome: decision.outcome,
                reason: decision.reason.as_deref(),
            },
            now,
        )
        .await
        .map_err(super::apply::internal)?;
        tx.commit().await?;
        if decision.outcome == Outcome::Flagged {
            tracing::warn!(
                event = %event.id,
                kind = %event.kind,
                reason = decision.reason.as_deref().unwrap_or(""),
                "Stripe subscription event flagged for the operator"
            );
        }
        if let Some((tenant_id, module)) = touched {
            self.billing.forget_grant(&tenant_id, &module);
        }
        Ok(Some(Recorded {
            outcome: decision.outcome,
            reason: decision.reason,
            repeated: false,
            attempt_id: decision.attempt_id,
            invoice_id: decision.invoice_id,
        }))
    }

    async fn decide(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        link: &StripeLink,
        body: &SubscriptionEventBody,
        created: i64,
        now: OffsetDateTime,
    ) -> Result<Decision, SoukError> {
        let (tenant_id, module) = (link.tenant_id.as_str(), link.module.as_str());
        let older = link.last_event_at.is_some_and(|last| created < last);
        match body {
            SubscriptionEventBody::InvoicePaid(_) if link.status == "canceled" => {
                Ok(Decision::flagged(
                    link,
                    "paid at Stripe for a subscription Stripe deleted".into(),
                ))
            }
            SubscriptionEventBody::InvoicePaid(invoice) => {
                if invoice.billing_reason == "subscription_create" {
                    return Ok(Decision::ignored(
                        link,
                        "the first invoice is paid through its Checkout Session",
                    ));
                }
                let Some(period_end) = invoice.period_end else {
                    return Ok(Decision::flagged(
                        link,
                        "the invoice names no period".into(),
                    ));
                };
                if link.paid_through.is_some_and(|p| period_end <= p) {
                    return Ok(Decision::ignored(link, "a newer period is already paid"));
                }
                self.renewal_paid(tx, link, invoice, period_end, created, now)
                    .await
            }
            SubscriptionEventBody::InvoiceFailed(invoice) => {
                if invoice
                    .period_end
                    .is_some_and(|end| link.paid_through.is_some_and(|p| end <= p))
                {
                    return Ok(Decision::ignored(link, "a newer period is already paid"));
                }
                let change = self
                    .billing
                    .provider_renewal_failed(
                        tx,
                        tenant_id,
                        module,
                        &format!("stripe {}", invoice.id),
                    )
                    .await?;
                update_link(
                    tx,
                    &link.id,
                    &LinkUpdate {
                        status: Some("past_due"),
                        event_at: Some(created),
                        ..LinkUpdate::none()
                    },
                    now,
                )
                .await?;
                Ok(match change {
                    Some(change) => Decision::changed(link, Some(change), Outcome::Failed),
                    None => Decision::ignored(
                        link,
                        "the period has not ended or is already past due; maintenance decides at its end",
                    ),
                })
            }
            SubscriptionEventBody::Updated(_) | SubscriptionEventBody::Deleted(_)
                if link.status == "canceled" =>
            {
                Ok(Decision::ignored(
                    link,
                    "the Stripe subscription was deleted",
                ))
            }
            SubscriptionEventBody::Updated(_) if older => Ok(Decision::ignored(
                link,
                "older than the newest event applied to the subscription",
            )),
            SubscriptionEventBody::Updated(sub) if sub.status == "canceled" => {
                self.stripe_deleted(tx, link, sub, created, now).await
            }
            SubscriptionEventBody::Updated(sub) => {
                let detail = format!("stripe {}", sub.id);
                let mut changes = Vec::new();
                if let Some(plan) = sub.plan.as_deref().filter(|p| *p != link.plan) {
                    changes.push(
                        self.billing
                            .provider_plan_changed(tx, tenant_id, module, plan, &detail)
                            .await?,
                    );
                }
                if sub.cancel_at_period_end && !link.cancel_at_period_end {
                    changes.push(
                        self.billing
                            .provider_cancel(tx, tenant_id, module, true, "payment", &detail)
                            .await?,
                    );
                } else if !sub.cancel_at_period_end && link.cancel_at_period_end {
                    changes.push(
                        self.billing
                            .provider_reactivate(tx, tenant_id, module, &detail)
                            .await?,
                    );
                }
                if matches!(sub.status.as_str(), "past_due" | "unpaid") {
                    changes.push(
                        self.billing
                            .provider_renewal_failed(tx, tenant_id, module, &detail)
                            .await?,
                    );
                }
                update_link(
                    tx,
                    &link.id,
                    &LinkUpdate {
                        status: Some(&sub.status),
                        cancel_at_period_end: Some(sub.cancel_at_period_end),
                        current_period_end: sub.current_period_end,
                        plan: sub.plan.as_deref(),
                        customer: sub.customer.as_deref(),
                        event_at: Some(created),
                        ..LinkUpdate::none()
                    },
                    now,
                )
                .await?;
                let done: Vec<&str> = changes.iter().flatten().map(|c| c.as_str()).collect();
                Ok(if done.is_empty() {
                    Decision::ignored(link, "the subscription is already there")
                } else {
                    Decision {
                        outcome: Outcome::Applied,
                        reason: Some(done.join(", ")),
                        attempt_id: Some(link.attempt_id.clone()),
                        invoice_id: None,
                    }
                })
            }
            // Deleted is final at Stripe: applied even when it was created
            // before an update that arrived first.
            SubscriptionEventBody::Deleted(sub) => {
                self.stripe_deleted(tx, link, sub, created, now).await
            }
        }
    }

    async fn stripe_deleted(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        link: &StripeLink,
        sub: &stripe::StripeSubscription,
        created: i64,
        now: OffsetDateTime,
    ) -> Result<Decision, SoukError> {
        let change = self
            .billing
            .provider_cancel(
                tx,
                &link.tenant_id,
                &link.module,
                false,
                "payment",
                &format!("stripe {} deleted", sub.id),
            )
            .await?;
        update_link(
            tx,
            &link.id,
            &LinkUpdate {
                status: Some("canceled"),
                event_at: Some(created),
                ..LinkUpdate::none()
            },
            now,
        )
        .await?;
        Ok(Decision::changed(link, change, Outcome::Applied))
    }

    /// A renewal paid at Stripe: our invoice for it (issued, numbered,
    /// paid), an attempt recording the payment, the subscription moved.
    async fn renewal_paid(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        link: &StripeLink,
        paid: &stripe::StripeInvoice,
        period_end: i64,
        created: i64,
        now: OffsetDateTime,
    ) -> Result<Decision, SoukError> {
        let record = crate::billing::store::load(tx, &link.tenant_id, &link.module)
            .await?
            .ok_or_else(|| SoukError::Conflict(format!("no subscription to {}", link.module)))?;
        let s = &record.subscription;
        let plan = match &s.scheduled {
            // A downgrade takes effect with the period this invoice pays.
            Some((plan, price)) if now >= s.period_end => (plan.clone(), *price),
            _ => (s.plan.clone(), s.price),
        };
        let price = i64::try_from(plan.1).unwrap_or(i64::MAX);
        let (lines, totals) = lines::with_tax(
            vec![Line {
                kind: LineKind::Plan,
                description: format!(
                    "{} — {}, one period until {} (renewed by Stripe)",
                    link.module,
                    plan.0,
                    OffsetDateTime::from_unix_timestamp(period_end)
                        .map(rfc3339)
                        .unwrap_or_default()
                ),
                module: Some(link.module.clone()),
                plan: Some(plan.0.clone()),
                amount: price,
            }],
            s.currency,
            &self.config.tax_rates,
        )
        .map_err(|e| SoukError::Conflict(e.to_string()))?;
        if paid.amount != Some(totals.total) || paid.currency.is_some_and(|c| c != s.currency) {
            return Ok(Decision::flagged(
                link,
                format!(
                    "Stripe was paid {} {}, the plan costs {} {}",
                    paid.amount.map_or("?".into(), |a| a.to_string()),
                    paid.currency.unwrap_or(s.currency),
                    totals.total,
                    s.currency
                ),
            ));
        }
        let reference = format!("stripe {}", paid.id);
        let change = self
            .billing
            .provider_renewal_paid(tx, &link.tenant_id, &link.module, &reference)
            .await?;
        let (buyer_name, buyer_pan) = self.buyer(tx, link).await?;
        let purchase = Purchase {
            kind: PurchaseKind::Renew,
            bundle: None,
            items: vec![PurchaseItem {
                module: link.module.clone(),
                plan: plan.0.clone(),
            }],
        };
        let new = NewInvoice {
            tenant_id: &link.tenant_id,
            currency: s.currency,
            lines: &lines,
            totals,
            purchase: &purchase,
            seller: &self.config.seller,
            buyer_name: &buyer_name,
            buyer_pan: buyer_pan.as_deref(),
        };
        let invoice_id = store::insert_draft(tx, &new, now).await?;
        store::issue(tx, &invoice_id, self.config.fiscal_year.year_of(now), now).await?;
        store::mark_paid(tx, &invoice_id, Provider::Stripe.as_str(), &paid.id, now).await?;
        let attempt_id = inbox::create_attempt(
            tx,
            NewAttempt {
                invoice_id: &invoice_id,
                tenant_id: &link.tenant_id,
                provider: Provider::Stripe,
                provider_ref: &paid.id,
                amount: totals.total,
                currency: s.currency,
                status: AttemptStatus::Paid,
            },
            now,
        )
        .await
        .map_err(super::apply::internal)?;
        inbox::update_attempt(
            tx,
            &attempt_id,
            AttemptStatus::Paid,
            Some(created),
            None,
            now,
        )
        .await
        .map_err(super::apply::internal)?;
        update_link(
            tx,
            &link.id,
            &LinkUpdate {
                status: Some("active"),
                paid_through: Some(period_end),
                event_at: Some(created),
                ..LinkUpdate::none()
            },
            now,
        )
        .await?;
        Ok(Decision {
            outcome: Outcome::Granted,
            reason: change.map(|c| c.as_str().to_owned()),
            attempt_id: Some(attempt_id),
            invoice_id: Some(invoice_id),
        })
    }

    /// The buyer printed on a renewal's invoice: the tenant's name now,
    /// and the PAN of the invoice that started the subscription.
    async fn buyer(
        &self,
        conn: &mut SqliteConnection,
        link: &StripeLink,
    ) -> Result<(String, Option<String>), SoukError> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT t.name, i.buyer_pan FROM tenants t \
             LEFT JOIN payment_attempts a ON a.id = ? \
             LEFT JOIN invoices i ON i.id = a.invoice_id WHERE t.id = ?",
        )
        .bind(&link.attempt_id)
        .bind(&link.tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.ok_or_else(|| SoukError::Internal(anyhow::anyhow!("a linked tenant is gone")))
    }

    /// Cancels `module` of `tenant` (at the period end, or now). When
    /// Stripe renews it, Stripe is asked first — `cancel_at_period_end`
    /// with an `Idempotency-Key`, or a `DELETE` — and only its answer lets
    /// ours change; a Stripe that does not answer leaves both as they
    /// were.
    ///
    /// # Errors
    /// As [`crate::billing::service::Billing::cancel`];
    /// [`SoukError::ProviderUnavailable`] when Stripe does not answer
    /// (nothing changed; retry).
    pub async fn cancel_subscription(
        &self,
        tenant: &Tenant,
        module: &str,
        at_period_end: bool,
        actor: Actor<'_>,
    ) -> Result<SubscriptionView, SoukError> {
        let event = if at_period_end {
            SubscriptionEvent::CancelAtPeriodEnd
        } else {
            SubscriptionEvent::CancelNow
        };
        self.at_stripe_first(tenant, module, event).await?;
        self.billing
            .cancel(tenant, module, at_period_end, actor)
            .await
    }

    /// Undoes a cancellation at the period end; Stripe is asked first to
    /// renew again (`cancel_at_period_end=false`) when it renews the
    /// subscription.
    ///
    /// # Errors
    /// As [`Payments::cancel_subscription`].
    pub async fn reactivate_subscription(
        &self,
        tenant: &Tenant,
        module: &str,
        actor: Actor<'_>,
    ) -> Result<SubscriptionView, SoukError> {
        self.at_stripe_first(tenant, module, SubscriptionEvent::Reactivate)
            .await?;
        self.billing.reactivate(tenant, module, actor).await
    }

    async fn at_stripe_first(
        &self,
        tenant: &Tenant,
        module: &str,
        event: SubscriptionEvent,
    ) -> Result<(), SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        let Some(link) = live_link(&mut conn, &tenant.id, module).await? else {
            return Ok(());
        };
        drop(conn);
        // Stripe is not asked for what our state machine would refuse.
        let Some(record) = self.billing.get(tenant, module).await? else {
            return Ok(());
        };
        if transition(record.subscription.state, event).is_err() {
            return Ok(());
        }
        let stripe = self.providers.stripe().ok_or_else(|| {
            SoukError::ProviderUnavailable(
                "Stripe renews this subscription but is not configured on this host; nothing was changed"
                    .into(),
            )
        })?;
        let what = "nothing was changed; try again";
        let answer = match event {
            SubscriptionEvent::CancelNow => stripe.cancel_now(&link.id).await,
            _ => {
                let cancel = event == SubscriptionEvent::CancelAtPeriodEnd;
                // One key per change of our subscription: a retry is the
                // same request, a later change a new one.
                let key = format!("{}-{}-r{}", link.id, cancel, record.revision);
                stripe
                    .set_cancel_at_period_end(&link.id, cancel, &key)
                    .await
            }
        }
        .map_err(|e| provider_error(e, what))?;
        let now = self.clock.now();
        let mut conn = self.control.pool().acquire().await?;
        update_link(
            &mut conn,
            &link.id,
            &LinkUpdate {
                status: Some(&answer.status),
                cancel_at_period_end: Some(answer.cancel_at_period_end),
                current_period_end: answer.current_period_end,
                ..LinkUpdate::none()
            },
            now,
        )
        .await
    }

    /// Stops Stripe renewing `module` of `tenant_id` at once (a refund
    /// ended it); nothing when Stripe does not renew it.
    ///
    /// # Errors
    /// [`SoukError::ProviderUnavailable`] when Stripe does not answer.
    pub(super) async fn stripe_stop(
        &self,
        tenant_id: &str,
        module: &str,
    ) -> Result<Option<String>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        let Some(link) = live_link(&mut conn, tenant_id, module).await? else {
            return Ok(None);
        };
        drop(conn);
        let stripe = self.providers.stripe().ok_or_else(|| {
            SoukError::ProviderUnavailable(
                "Stripe renews this subscription but is not configured on this host".into(),
            )
        })?;
        let answer = stripe
            .cancel_now(&link.id)
            .await
            .map_err(|e| provider_error(e, "the refund was made; retry to finish it"))?;
        let mut conn = self.control.pool().acquire().await?;
        update_link(
            &mut conn,
            &link.id,
            &LinkUpdate {
                status: Some(&answer.status),
                ..LinkUpdate::none()
            },
            self.clock.now(),
        )
        .await?;
        Ok(Some(link.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::service::PurchaseRequest;
    use crate::clock::Clock;
    use crate::payments::apply::{PaymentStatus, ProviderEvent};
    use crate::payments::tests::{Host, at};

    /// A USD tenant whose digital-card pro (USD 19.99) Stripe renews as
    /// `sub_1`, granted at the host's now.
    async fn subscribed(host: &Host) {
        let payments = host.payments();
        let tenant = &host.tenants[0];
        let invoice = payments
            .issue_invoice(
                tenant,
                PurchaseRequest::Plan {
                    module: "digital-card",
                    plan: "pro",
                    currency: Some("USD"),
                },
                None,
            )
            .await
            .unwrap();
        let recurring = payments.stripe_recurring(tenant, &invoice).await.unwrap();
        assert_eq!(
            recurring.map(|r| (r.module, r.plan, r.interval)),
            Some((
                "digital-card".into(),
                "pro".into(),
                BillingInterval::Monthly
            ))
        );
        let mut conn = host.control.pool().acquire().await.unwrap();
        inbox::create_attempt(
            &mut conn,
            NewAttempt {
                invoice_id: &invoice.id,
                tenant_id: &tenant.id,
                provider: Provider::Stripe,
                provider_ref: "cs_1",
                amount: invoice.totals.total,
                currency: invoice.currency,
                status: AttemptStatus::Pending,
            },
            host.clock.now(),
        )
        .await
        .unwrap();
        drop(conn);
        let done = payments
            .record_event(ProviderEvent {
                provider: Provider::Stripe,
                event_id: "evt_start",
                provider_ref: "cs_1",
                status: PaymentStatus::Completed,
                raw_status: "checkout.session.completed",
                amount: Some(1999),
                currency: Some(invoice.currency),
                occurred_at: host.clock.now(),
                payment_reference: "in_first",
                subscription: Some("sub_1"),
            })
            .await
            .unwrap();
        assert_eq!(done.outcome, Outcome::Granted);
        // Stripe renews it now: a second checkout would be a one-off.
        assert_eq!(
            payments.stripe_recurring(tenant, &invoice).await.unwrap(),
            None
        );
    }

    fn event(id: &str, kind: &str, object: serde_json::Value) -> StripeEvent {
        StripeEvent {
            id: id.into(),
            kind: kind.into(),
            created: 0,
            object,
        }
    }

    async fn outcome(host: &Host, event: StripeEvent, when: &str) -> Recorded {
        match host
            .payments()
            .stripe_subscription_event(&event, at(when))
            .await
            .unwrap()
        {
            Some(r) => r,
            None => panic!("unhandled"),
        }
    }

    #[tokio::test]
    async fn a_renewal_paid_before_our_period_end_is_a_prepaid_period_maintenance_uses() {
        let host = Host::new(1, "2027-01-01T00:00:00Z").await;
        subscribed(&host).await;
        let tenant = &host.tenants[0];
        // Stripe's clock runs a little ahead of ours.
        host.clock.set(at("2027-01-31T23:59:00Z"));
        let failed = serde_json::json!({"id": "in_early", "subscription": "sub_1",
            "billing_reason": "subscription_cycle", "amount_due": 1999, "currency": "usd",
            "lines": {"data": [{"period": {"start": 1801440000, "end": 1803859200}}]}});
        let r = outcome(
            &host,
            event("evt_f", "invoice.payment_failed", failed),
            "2027-01-31T23:59:00Z",
        )
        .await;
        assert_eq!(
            r.outcome,
            Outcome::Ignored,
            "not past due before the period ends"
        );
        let paid = serde_json::json!({"id": "in_early", "subscription": "sub_1",
            "billing_reason": "subscription_cycle", "amount_paid": 1999, "currency": "usd",
            "lines": {"data": [{"period": {"start": 1801440000, "end": 1803859200}}]}});
        let r = outcome(
            &host,
            event("evt_p", "invoice.paid", paid),
            "2027-01-31T23:59:30Z",
        )
        .await;
        assert_eq!(
            (r.outcome, r.reason.as_deref()),
            (Outcome::Granted, Some("paid"))
        );
        let record = host
            .billing
            .get(tenant, "digital-card")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.prepaid_periods, 1);
        assert_eq!(record.subscription.state, SubscriptionState::Active);
        let invoices = host.payments().invoices(Some(tenant), 10).await.unwrap();
        assert_eq!(invoices.len(), 2);
        assert_eq!(invoices[0].status, store::InvoiceStatus::Paid);
        assert_eq!(invoices[0].provider_reference.as_deref(), Some("in_early"));
        assert_eq!(invoices[0].totals.total, 1999);
        // At our period end maintenance renews with it: not past due.
        host.clock.set(at("2027-02-01T00:00:00Z"));
        host.billing.run_maintenance().await.unwrap();
        let record = host
            .billing
            .get(tenant, "digital-card")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.subscription.state, SubscriptionState::Active);
        assert_eq!(record.prepaid_periods, 0);
        assert_eq!(record.subscription.period_end, at("2027-03-01T00:00:00Z"));
    }

    #[tokio::test]
    async fn a_plan_changed_at_stripe_changes_ours_and_unknown_objects_are_refused() {
        let host = Host::new(1, "2027-01-01T00:00:00Z").await;
        subscribed(&host).await;
        let tenant = &host.tenants[0];
        host.clock.set(at("2027-01-10T00:00:00Z"));
        let upgraded = serde_json::json!({"id": "sub_1", "status": "active",
            "cancel_at_period_end": false, "metadata": {"plan": "business"}});
        let r = outcome(
            &host,
            event("evt_u", "customer.subscription.updated", upgraded),
            "2027-01-10T00:00:00Z",
        )
        .await;
        assert_eq!(
            (r.outcome, r.reason.as_deref()),
            (Outcome::Applied, Some("plan_changed"))
        );
        let record = host
            .billing
            .get(tenant, "digital-card")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.subscription.plan, "business");
        // A plan the catalog does not have: flagged, nothing changed.
        let odd = serde_json::json!({"id": "sub_1", "status": "active",
            "cancel_at_period_end": false, "metadata": {"plan": "platinum"}});
        let r = outcome(
            &host,
            event("evt_v", "customer.subscription.updated", odd),
            "2027-01-11T00:00:00Z",
        )
        .await;
        assert_eq!(r.outcome, Outcome::Flagged);
        let record = host
            .billing
            .get(tenant, "digital-card")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.subscription.plan, "business");
        // An object that is not one: refused, recorded nowhere.
        let refused = host
            .payments()
            .stripe_subscription_event(
                &event(
                    "evt_w",
                    "customer.subscription.deleted",
                    serde_json::json!({}),
                ),
                at("2027-01-11T00:00:00Z"),
            )
            .await;
        assert!(matches!(refused, Err(SoukError::Invalid(_))));
        let mut conn = host.control.pool().acquire().await.unwrap();
        assert!(
            inbox::recorded(&mut conn, Provider::Stripe, "evt_w")
                .await
                .unwrap()
                .is_none()
        );
    }
}
