//! One subscription per tenant per module: its state machine, its billing
//! periods, its grace period, and what a plan change costs.
//!
//! # States and transitions
//!
//! Every state change goes through [`transition`], which enforces this table
//! and nothing else; any pair not listed is refused with [`InvalidTransition`].
//!
//! | from       | event                       | to        | what else happens ([`Subscription::apply`])                 |
//! |------------|-----------------------------|-----------|-------------------------------------------------------------|
//! | active     | `TrialStarted`              | trialing  | (via [`Subscription::start_trial`]) plan changes, trial period begins now |
//! | expired    | `TrialStarted`              | trialing  | as above                                                    |
//! | trialing   | `TrialEnded { paid: true }` | active    | first paid period starts at the trial's end                 |
//! | trialing   | `TrialEnded { paid: false }`| past_due  | first period starts at the trial's end; grace starts        |
//! | trialing   | `CancelNow`                 | canceled  | period ends now                                             |
//! | trialing   | `CancelAtPeriodEnd`         | canceled  | access continues until the trial's end                      |
//! | active     | `PaymentSucceeded`          | active    | renewal: the next period starts                             |
//! | active     | `PaymentFailed`             | past_due  | renewal failed: the next period starts unpaid; grace starts |
//! | active     | `PeriodEnded`               | active    | free plan rolls into the next period (no payment needed)    |
//! | active     | `CancelNow`                 | canceled  | period ends now                                             |
//! | active     | `CancelAtPeriodEnd`         | canceled  | access continues until the period's end                     |
//! | past_due   | `PaymentSucceeded`          | active    | grace cleared; the unpaid period is now paid                |
//! | past_due   | `GraceExpired`              | expired   | access ends                                                 |
//! | past_due   | `CancelNow`                 | canceled  | period and grace end now                                    |
//! | canceled   | `Reactivate`                | active    | only before the period ends; billing continues as before    |
//! | canceled   | `PeriodEnded`               | expired   | access ends                                                 |
//! | expired    | `PaymentSucceeded`          | active    | resubscribed: a new period starts now                       |
//!
//! Events that wait for a moment (`TrialEnded`, `PeriodEnded`, renewals in
//! `active`, `GraceExpired`) are refused by [`Subscription::apply`] with
//! [`SubscriptionError::TooEarly`] before that moment, so a maintenance step
//! that runs early, or twice, changes nothing.
//!
//! # Access
//!
//! [`Subscription::has_access`]: trialing and active yes; past_due until the
//! grace period ends; canceled until the period ends; expired no.
//!
//! # Periods
//!
//! Periods are counted from an anchor instant: period *n* runs from
//! anchor + *n* intervals to anchor + *n*+1 intervals, where adding months
//! clamps the day to the end of a shorter month ([`crate::calendar`]: anchor
//! Jan 31 gives Feb 28 or 29, then Mar 31 — always computed from the anchor,
//! so the day never drifts).
//!
//! # Plan changes and rounding
//!
//! An upgrade (a higher price in the subscription's currency) takes effect
//! now and keeps the billing anchor: the tenant pays the new plan's price for
//! the unused part of the current period, less a credit for the unused part of
//! the old plan. Proration is by seconds. **Both roundings favour the tenant**:
//! the credit is rounded *up* to the next minor unit and the new plan's
//! prorated charge is rounded *down*, so the amount due is never more than
//! the exact value. A downgrade (same or lower price) takes effect at the end
//! of the current period and costs nothing now. [`Subscription::quote`]
//! computes exactly what [`Subscription::change_plan`] then charges.

use time::{Duration, OffsetDateTime};

use super::plans::{BillingInterval, Currency, Plan};
use crate::calendar::add_months;
use crate::clock::Clock;

/// The state of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionState {
    /// In a free trial of a paid plan.
    Trialing,
    /// Paid up, or on a free plan.
    Active,
    /// A payment is due and has not arrived; access continues during grace.
    PastDue,
    /// Canceled; access continues until the current period ends.
    Canceled,
    /// Over; no access.
    Expired,
}

/// Something that happens to a subscription. See the module docs for which
/// events each state accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionEvent {
    /// A trial of a paid plan begins.
    TrialStarted,
    /// The trial period is over; `paid` says whether payment was confirmed.
    TrialEnded {
        /// Whether payment for the first period was confirmed.
        paid: bool,
    },
    /// A payment was confirmed (a renewal, a late payment, or a resubscription).
    PaymentSucceeded,
    /// A renewal payment failed.
    PaymentFailed,
    /// The grace period after a missed payment is over.
    GraceExpired,
    /// Cancel with immediate loss of access.
    CancelNow,
    /// Cancel, keeping access until the current period ends.
    CancelAtPeriodEnd,
    /// The current period is over.
    PeriodEnded,
    /// Undo a cancellation before the period ends.
    Reactivate,
}

/// A state does not accept an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from:?} subscription does not accept {event:?}")]
pub struct InvalidTransition {
    /// The state the subscription was in.
    pub from: SubscriptionState,
    /// The event that was refused.
    pub event: SubscriptionEvent,
}

/// The state machine: the state after `event` in state `from`.
///
/// # Errors
/// [`InvalidTransition`] for any pair not in the table in the module docs.
pub fn transition(
    from: SubscriptionState,
    event: SubscriptionEvent,
) -> Result<SubscriptionState, InvalidTransition> {
    use SubscriptionEvent as E;
    use SubscriptionState as S;
    let to = match (from, event) {
        (S::Active | S::Expired, E::TrialStarted) => S::Trialing,
        (S::Trialing, E::TrialEnded { paid: true }) => S::Active,
        (S::Trialing, E::TrialEnded { paid: false }) => S::PastDue,
        (S::Trialing | S::Active | S::PastDue, E::CancelNow) => S::Canceled,
        (S::Trialing | S::Active, E::CancelAtPeriodEnd) => S::Canceled,
        (S::Active, E::PaymentSucceeded | E::PeriodEnded) => S::Active,
        (S::Active, E::PaymentFailed) => S::PastDue,
        (S::PastDue, E::PaymentSucceeded) => S::Active,
        (S::PastDue, E::GraceExpired) => S::Expired,
        (S::Canceled, E::Reactivate) => S::Active,
        (S::Canceled, E::PeriodEnded) => S::Expired,
        (S::Expired, E::PaymentSucceeded) => S::Active,
        _ => return Err(InvalidTransition { from, event }),
    };
    Ok(to)
}

/// Why a subscription operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The state machine does not allow the event in the current state.
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
    /// The event waits for a moment that has not come yet; retry at `at`.
    #[error("{event:?} cannot happen before {at}")]
    TooEarly {
        /// The refused event.
        event: SubscriptionEvent,
        /// The earliest instant it may happen.
        at: OffsetDateTime,
    },
    /// The event had to happen before `at`, which has passed.
    #[error("{event:?} had to happen before {at}")]
    TooLate {
        /// The refused event.
        event: SubscriptionEvent,
        /// The instant it had to happen before.
        at: OffsetDateTime,
    },
    /// The plan is not sold in the subscription's currency.
    #[error("plan {plan:?} has no price in {currency}")]
    NoPrice {
        /// Slug of the plan asked for.
        plan: String,
        /// The subscription's currency.
        currency: Currency,
    },
    /// A trial was asked for a plan that has none.
    #[error("plan {plan:?} has no trial")]
    NoTrial {
        /// Slug of the plan asked for.
        plan: String,
    },
    /// Changing between billing intervals is not supported; cancel and
    /// subscribe again instead.
    #[error("cannot change from a {from:?} plan to a {to:?} plan; cancel and resubscribe")]
    IntervalMismatch {
        /// The current plan's interval.
        from: BillingInterval,
        /// The new plan's interval.
        to: BillingInterval,
    },
    /// Plan changes are only possible on an active subscription.
    #[error("plan changes need an active subscription, this one is {state:?}")]
    NotActive {
        /// The state it is in instead.
        state: SubscriptionState,
    },
    /// The subscription is already on the plan.
    #[error("the subscription is already on plan {plan:?}")]
    SamePlan {
        /// Slug of the plan it is already on.
        plan: String,
    },
}

/// The default grace period after a missed payment.
pub const DEFAULT_GRACE: Duration = Duration::days(7);

/// The start of period `index` counted from `anchor`.
pub fn period_start(
    anchor: OffsetDateTime,
    interval: BillingInterval,
    index: u32,
) -> OffsetDateTime {
    add_months(anchor, index.saturating_mul(interval.months()))
}

/// What a plan change costs, shown before it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// Charged now, in minor units of the subscription's currency: the new
    /// plan's prorated price for the rest of the period less `credit`.
    pub amount_due_now: u64,
    /// The credit for the unused part of the old plan, minor units, rounded
    /// up (0 for a downgrade).
    pub credit: u64,
    /// The price of each period after the change, minor units.
    pub next_period_price: u64,
    /// When the new plan takes effect: now for an upgrade, the period end
    /// for a downgrade.
    pub effective_at: OffsetDateTime,
}

/// A requested plan change.
#[derive(Debug, Clone, Copy)]
pub struct PlanChange<'a> {
    /// The plan to move to, from the catalog.
    pub to: &'a Plan,
}

/// One tenant's subscription to one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The tenant's internal id (not its slug).
    pub tenant: String,
    /// The module's slug.
    pub module: String,
    /// Slug of the plan in effect now; a downgrade waits in `scheduled`
    /// until the period ends.
    pub plan: String,
    /// The price of one period of `plan` in `currency`, fixed when the plan
    /// was taken.
    pub price: u64,
    /// Fixed when the subscription starts: renewals and plan changes are
    /// priced in it.
    pub currency: Currency,
    /// `plan`'s interval; a plan change must keep it
    /// ([`SubscriptionError::IntervalMismatch`]).
    pub interval: BillingInterval,
    /// Moved by the methods below, each through [`transition`].
    pub state: SubscriptionState,
    /// The instant billing periods are counted from: the start, the end of
    /// the trial, or a resubscription.
    pub anchor: OffsetDateTime,
    /// Which period since `anchor` is current (0: the first).
    pub period_index: u32,
    /// Start of the current period (or of the trial).
    pub period_start: OffsetDateTime,
    /// End of the current period (or of the trial); access of a canceled
    /// subscription ends here.
    pub period_end: OffsetDateTime,
    /// How long access continues after a missed payment
    /// ([`DEFAULT_GRACE`] for every subscription the host starts).
    pub grace: Duration,
    /// When grace ends; set only while past due.
    pub grace_ends: Option<OffsetDateTime>,
    /// A downgrade waiting for the period end: (plan, its price).
    pub scheduled: Option<(String, u64)>,
}

impl Subscription {
    /// A subscription that starts `plan` now, active (a free plan, or a paid
    /// plan whose first payment is confirmed or granted by an operator).
    ///
    /// # Errors
    /// [`SubscriptionError::NoPrice`] when a paid plan is not sold in `currency`.
    pub fn start(
        tenant: &str,
        module: &str,
        plan: &Plan,
        currency: Currency,
        clock: &dyn Clock,
    ) -> Result<Self, SubscriptionError> {
        let now = clock.now();
        let price = price_of(plan, currency)?;
        Ok(Subscription {
            tenant: tenant.to_owned(),
            module: module.to_owned(),
            plan: plan.slug.clone(),
            price,
            currency,
            interval: plan.interval,
            state: SubscriptionState::Active,
            anchor: now,
            period_index: 0,
            period_start: now,
            period_end: period_start(now, plan.interval, 1),
            grace: DEFAULT_GRACE,
            grace_ends: None,
            scheduled: None,
        })
    }

    /// A subscription that starts a trial of `plan` now.
    ///
    /// # Errors
    /// [`SubscriptionError::NoTrial`] when the plan has no trial days,
    /// [`SubscriptionError::NoPrice`] when it is not sold in `currency`.
    pub fn start_new_trial(
        tenant: &str,
        module: &str,
        plan: &Plan,
        currency: Currency,
        clock: &dyn Clock,
    ) -> Result<Self, SubscriptionError> {
        let mut s = Subscription::start(tenant, module, plan, currency, clock)?;
        s.start_trial(plan, clock)?;
        Ok(s)
    }

    /// Moves an active (e.g. free) or expired subscription into a trial of
    /// `plan`, starting now and lasting the plan's trial days.
    ///
    /// # Errors
    /// [`SubscriptionError::Transition`] unless active or expired;
    /// [`SubscriptionError::NoTrial`] or [`SubscriptionError::NoPrice`] as for
    /// [`Subscription::start_new_trial`].
    pub fn start_trial(&mut self, plan: &Plan, clock: &dyn Clock) -> Result<(), SubscriptionError> {
        let to = transition(self.state, SubscriptionEvent::TrialStarted)?;
        if plan.trial_days == 0 || plan.free {
            return Err(SubscriptionError::NoTrial {
                plan: plan.slug.clone(),
            });
        }
        let price = price_of(plan, self.currency)?;
        let now = clock.now();
        self.state = to;
        self.plan = plan.slug.clone();
        self.price = price;
        self.interval = plan.interval;
        self.period_start = now;
        self.period_end = now + Duration::days(i64::from(plan.trial_days));
        self.grace_ends = None;
        self.scheduled = None;
        Ok(())
    }

    /// Applies `event` at the clock's current instant.
    ///
    /// # Errors
    /// [`SubscriptionError::Transition`] when the state does not accept the
    /// event (see the table in the module docs); [`SubscriptionError::TooEarly`]
    /// when the event waits for the period end or the grace end and that
    /// moment has not come; [`SubscriptionError::TooLate`] for `Reactivate`
    /// once the canceled period has ended.
    pub fn apply(
        &mut self,
        event: SubscriptionEvent,
        clock: &dyn Clock,
    ) -> Result<(), SubscriptionError> {
        use SubscriptionEvent as E;
        use SubscriptionState as S;
        let to = transition(self.state, event)?;
        let now = clock.now();
        let not_before = |at: OffsetDateTime| {
            if now < at {
                Err(SubscriptionError::TooEarly { event, at })
            } else {
                Ok(())
            }
        };
        match (self.state, event) {
            (S::Trialing, E::TrialEnded { paid }) => {
                not_before(self.period_end)?;
                self.anchor = self.period_end;
                self.period_index = 0;
                self.set_period();
                self.grace_ends = (!paid).then(|| self.period_start + self.grace);
            }
            (S::Active, E::PaymentSucceeded | E::PeriodEnded | E::PaymentFailed) => {
                not_before(self.period_end)?;
                self.period_index = self.period_index.saturating_add(1);
                self.set_period();
                if let Some((plan, price)) = self.scheduled.take() {
                    self.plan = plan;
                    self.price = price;
                }
                self.grace_ends =
                    (event == E::PaymentFailed).then(|| self.period_start + self.grace);
            }
            (S::PastDue, E::PaymentSucceeded) => self.grace_ends = None,
            (S::PastDue, E::GraceExpired) => {
                let ends = self.grace_ends.unwrap_or(self.period_start + self.grace);
                not_before(ends)?;
            }
            (_, E::CancelNow) => {
                self.period_end = now;
                self.grace_ends = None;
                self.scheduled = None;
            }
            (_, E::CancelAtPeriodEnd) => self.scheduled = None,
            (S::Canceled, E::Reactivate) if now >= self.period_end => {
                return Err(SubscriptionError::TooLate {
                    event,
                    at: self.period_end,
                });
            }
            (S::Canceled, E::PeriodEnded) => not_before(self.period_end)?,
            (S::Expired, E::PaymentSucceeded) => {
                self.anchor = now;
                self.period_index = 0;
                self.set_period();
                self.grace_ends = None;
            }
            _ => {}
        }
        self.state = to;
        Ok(())
    }

    fn set_period(&mut self) {
        self.period_start = period_start(self.anchor, self.interval, self.period_index);
        self.period_end = period_start(
            self.anchor,
            self.interval,
            self.period_index.saturating_add(1),
        );
    }

    /// Whether the tenant may use the module at `now`.
    pub fn has_access(&self, now: OffsetDateTime) -> bool {
        match self.state {
            SubscriptionState::Trialing | SubscriptionState::Active => true,
            SubscriptionState::PastDue => self.grace_ends.is_some_and(|end| now < end),
            SubscriptionState::Canceled => now < self.period_end,
            SubscriptionState::Expired => false,
        }
    }

    /// What moving to `change.to` would cost at `now`, without changing anything.
    ///
    /// # Errors
    /// [`SubscriptionError::NotActive`] unless active;
    /// [`SubscriptionError::SamePlan`], [`SubscriptionError::NoPrice`],
    /// [`SubscriptionError::IntervalMismatch`] when the change makes no sense.
    pub fn quote(
        &self,
        change: PlanChange<'_>,
        now: OffsetDateTime,
    ) -> Result<Quote, SubscriptionError> {
        if self.state != SubscriptionState::Active {
            return Err(SubscriptionError::NotActive { state: self.state });
        }
        let to = change.to;
        if to.slug == self.plan {
            return Err(SubscriptionError::SamePlan {
                plan: to.slug.clone(),
            });
        }
        if to.interval != self.interval {
            return Err(SubscriptionError::IntervalMismatch {
                from: self.interval,
                to: to.interval,
            });
        }
        let new_price = price_of(to, self.currency)?;
        if new_price <= self.price {
            return Ok(Quote {
                amount_due_now: 0,
                credit: 0,
                next_period_price: new_price,
                effective_at: self.period_end,
            });
        }
        let now = now.clamp(self.period_start, self.period_end);
        let total = seconds(self.period_end - self.period_start);
        let unused = seconds(self.period_end - now);
        let credit = prorate(self.price, unused, total, Rounding::Up);
        let charge = prorate(new_price, unused, total, Rounding::Down);
        Ok(Quote {
            amount_due_now: charge.saturating_sub(credit),
            credit,
            next_period_price: new_price,
            effective_at: now,
        })
    }

    /// Makes the change [`Subscription::quote`] describes and returns that
    /// quote: an upgrade switches the plan now (the caller charges
    /// `amount_due_now`); a downgrade is scheduled for the period end.
    ///
    /// # Errors
    /// As for [`Subscription::quote`].
    pub fn change_plan(
        &mut self,
        change: PlanChange<'_>,
        clock: &dyn Clock,
    ) -> Result<Quote, SubscriptionError> {
        let now = clock.now();
        let quote = self.quote(change, now)?;
        if quote.next_period_price > self.price {
            self.plan = change.to.slug.clone();
            self.price = quote.next_period_price;
            self.scheduled = None;
        } else {
            self.scheduled = Some((change.to.slug.clone(), quote.next_period_price));
        }
        Ok(quote)
    }
}

fn price_of(plan: &Plan, currency: Currency) -> Result<u64, SubscriptionError> {
    plan.price(currency)
        .ok_or_else(|| SubscriptionError::NoPrice {
            plan: plan.slug.clone(),
            currency,
        })
}

fn seconds(d: Duration) -> u128 {
    u128::try_from(d.whole_seconds()).unwrap_or(0)
}

#[derive(Clone, Copy)]
enum Rounding {
    Up,
    Down,
}

/// `price * part / whole` in integer minor units, rounded as asked.
fn prorate(price: u64, part: u128, whole: u128, rounding: Rounding) -> u64 {
    if whole == 0 {
        return 0;
    }
    let numerator = u128::from(price) * part.min(whole);
    let value = match rounding {
        Rounding::Down => numerator / whole,
        Rounding::Up => numerator.div_ceil(whole),
    };
    u64::try_from(value).unwrap_or(price)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::plans::PlanCatalog;
    use crate::clock::{ManualClock, SystemClock};
    use SubscriptionEvent as E;
    use SubscriptionState as S;
    use souk_module_registry::Slug;

    const DIGITAL_CARD_CATALOG: &str = include_str!("../../../catalog/digital-card.yaml");

    fn plans() -> (Plan, Plan, Plan) {
        let catalog = PlanCatalog::parse(DIGITAL_CARD_CATALOG).unwrap();
        let m = catalog
            .module(&Slug::parse("digital-card").unwrap())
            .unwrap();
        (
            m.plan("free").unwrap().clone(),
            m.plan("pro").unwrap().clone(),
            m.plan("business").unwrap().clone(),
        )
    }

    fn dt(rfc3339: &str) -> OffsetDateTime {
        OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
            .expect("test timestamp parses")
    }

    fn npr() -> Currency {
        Currency::parse("NPR").unwrap()
    }

    fn active_pro(clock: &ManualClock) -> Subscription {
        let (_, pro, _) = plans();
        Subscription::start("acme", "digital-card", &pro, npr(), clock).unwrap()
    }

    const ALL_STATES: [SubscriptionState; 5] =
        [S::Trialing, S::Active, S::PastDue, S::Canceled, S::Expired];
    const ALL_EVENTS: [SubscriptionEvent; 10] = [
        E::TrialStarted,
        E::TrialEnded { paid: true },
        E::TrialEnded { paid: false },
        E::PaymentSucceeded,
        E::PaymentFailed,
        E::GraceExpired,
        E::CancelNow,
        E::CancelAtPeriodEnd,
        E::PeriodEnded,
        E::Reactivate,
    ];

    /// The table in the module docs, row by row.
    const ALLOWED: [(SubscriptionState, SubscriptionEvent, SubscriptionState); 17] = [
        (S::Active, E::TrialStarted, S::Trialing),
        (S::Expired, E::TrialStarted, S::Trialing),
        (S::Trialing, E::TrialEnded { paid: true }, S::Active),
        (S::Trialing, E::TrialEnded { paid: false }, S::PastDue),
        (S::Trialing, E::CancelNow, S::Canceled),
        (S::Trialing, E::CancelAtPeriodEnd, S::Canceled),
        (S::Active, E::PaymentSucceeded, S::Active),
        (S::Active, E::PaymentFailed, S::PastDue),
        (S::Active, E::PeriodEnded, S::Active),
        (S::Active, E::CancelNow, S::Canceled),
        (S::Active, E::CancelAtPeriodEnd, S::Canceled),
        (S::PastDue, E::PaymentSucceeded, S::Active),
        (S::PastDue, E::GraceExpired, S::Expired),
        (S::PastDue, E::CancelNow, S::Canceled),
        (S::Canceled, E::Reactivate, S::Active),
        (S::Canceled, E::PeriodEnded, S::Expired),
        (S::Expired, E::PaymentSucceeded, S::Active),
    ];

    #[test]
    fn every_allowed_transition_reaches_its_documented_state() {
        for (from, event, to) in ALLOWED {
            assert_eq!(transition(from, event), Ok(to), "{from:?} + {event:?}");
        }
    }

    #[test]
    fn every_pair_outside_the_table_is_refused() {
        for from in ALL_STATES {
            for event in ALL_EVENTS {
                if ALLOWED.iter().any(|(f, e, _)| *f == from && *e == event) {
                    continue;
                }
                assert_eq!(
                    transition(from, event),
                    Err(InvalidTransition { from, event }),
                    "{from:?} + {event:?} should be refused"
                );
            }
        }
    }

    #[test]
    fn expired_subscription_cannot_be_reactivated_or_canceled() {
        assert!(transition(S::Expired, E::Reactivate).is_err());
        assert!(transition(S::Expired, E::CancelNow).is_err());
        assert!(transition(S::Trialing, E::TrialStarted).is_err());
        assert!(transition(S::PastDue, E::CancelAtPeriodEnd).is_err());
        assert!(transition(S::Canceled, E::PaymentSucceeded).is_err());
    }

    #[test]
    fn month_end_anchor_clamps_to_shorter_months_without_drifting() {
        let anchor = dt("2027-01-31T10:30:00Z");
        let m = BillingInterval::Monthly;
        assert_eq!(period_start(anchor, m, 1), dt("2027-02-28T10:30:00Z"));
        assert_eq!(period_start(anchor, m, 2), dt("2027-03-31T10:30:00Z"));
        assert_eq!(period_start(anchor, m, 3), dt("2027-04-30T10:30:00Z"));
        assert_eq!(period_start(anchor, m, 12), dt("2028-01-31T10:30:00Z"));
        assert_eq!(period_start(anchor, m, 13), dt("2028-02-29T10:30:00Z"));
        let leap_day = dt("2028-02-29T00:00:00Z");
        assert_eq!(
            period_start(leap_day, BillingInterval::Yearly, 1),
            dt("2029-02-28T00:00:00Z")
        );
        assert_eq!(
            period_start(leap_day, BillingInterval::Yearly, 4),
            dt("2032-02-29T00:00:00Z")
        );
        assert_eq!(
            add_months(dt("2027-12-15T00:00:00Z"), 1),
            dt("2028-01-15T00:00:00Z")
        );
    }

    #[test]
    fn renewals_follow_the_anchor_across_month_ends() {
        let clock = ManualClock::new(dt("2027-01-31T00:00:00Z"));
        let mut s = active_pro(&clock);
        assert_eq!(s.period_end, dt("2027-02-28T00:00:00Z"));
        clock.set(s.period_end);
        s.apply(E::PaymentSucceeded, &clock).unwrap();
        assert_eq!(
            (s.period_start, s.period_end),
            (dt("2027-02-28T00:00:00Z"), dt("2027-03-31T00:00:00Z"))
        );
    }

    #[test]
    fn pro_trial_ending_unpaid_goes_past_due_then_grace_then_expired() {
        let (free, pro, _) = plans();
        let start = dt("2027-03-01T09:00:00Z");
        let clock = ManualClock::new(start);
        let mut s = Subscription::start("acme", "digital-card", &free, npr(), &clock).unwrap();
        s.start_trial(&pro, &clock).unwrap();
        assert_eq!((s.state, s.plan.as_str()), (S::Trialing, "pro"));
        assert_eq!(s.period_end, start + Duration::days(30));

        clock.advance(Duration::days(29));
        assert!(matches!(
            s.apply(E::TrialEnded { paid: false }, &clock),
            Err(SubscriptionError::TooEarly { .. })
        ));
        assert_eq!(s.state, S::Trialing);

        clock.advance(Duration::days(1));
        s.apply(E::TrialEnded { paid: false }, &clock).unwrap();
        assert_eq!(s.state, S::PastDue);
        assert!(s.has_access(clock.now()), "access continues during grace");

        clock.advance(Duration::days(6));
        assert!(s.has_access(clock.now()));
        assert!(matches!(
            s.apply(E::GraceExpired, &clock),
            Err(SubscriptionError::TooEarly { .. })
        ));

        clock.advance(Duration::days(1));
        assert!(!s.has_access(clock.now()), "grace is seven days");
        s.apply(E::GraceExpired, &clock).unwrap();
        assert_eq!(s.state, S::Expired);
        assert!(!s.has_access(clock.now()));
    }

    #[test]
    fn trial_ending_paid_starts_the_first_period_at_the_trial_end() {
        let (_, pro, _) = plans();
        let clock = ManualClock::new(dt("2027-01-01T00:00:00Z"));
        let mut s =
            Subscription::start_new_trial("acme", "digital-card", &pro, npr(), &clock).unwrap();
        clock.advance(Duration::days(30));
        s.apply(E::TrialEnded { paid: true }, &clock).unwrap();
        assert_eq!(s.state, S::Active);
        assert_eq!(
            (s.period_start, s.period_end),
            (dt("2027-01-31T00:00:00Z"), dt("2027-02-28T00:00:00Z"))
        );
    }

    #[test]
    fn free_plan_has_no_trial() {
        let (free, _, _) = plans();
        let clock = ManualClock::new(dt("2027-01-01T00:00:00Z"));
        assert!(matches!(
            Subscription::start_new_trial("acme", "digital-card", &free, npr(), &clock),
            Err(SubscriptionError::NoTrial { .. })
        ));
    }

    #[test]
    fn failed_renewal_keeps_access_in_grace_and_late_payment_restores_active() {
        let clock = ManualClock::new(dt("2027-01-10T00:00:00Z"));
        let mut s = active_pro(&clock);
        clock.set(s.period_end);
        s.apply(E::PaymentFailed, &clock).unwrap();
        assert_eq!(s.state, S::PastDue);
        assert_eq!(s.grace_ends, Some(dt("2027-02-17T00:00:00Z")));
        clock.advance(Duration::days(3));
        s.apply(E::PaymentSucceeded, &clock).unwrap();
        assert_eq!((s.state, s.grace_ends), (S::Active, None));
        assert_eq!(s.period_end, dt("2027-03-10T00:00:00Z"));
    }

    #[test]
    fn renewal_before_the_period_ends_is_refused() {
        let clock = ManualClock::new(dt("2027-01-10T00:00:00Z"));
        let mut s = active_pro(&clock);
        clock.advance(Duration::days(5));
        assert!(matches!(
            s.apply(E::PaymentSucceeded, &clock),
            Err(SubscriptionError::TooEarly { .. })
        ));
        assert_eq!(s.period_index, 0);
    }

    #[test]
    fn cancel_at_period_end_keeps_access_until_then() {
        let clock = ManualClock::new(dt("2027-01-10T00:00:00Z"));
        let mut s = active_pro(&clock);
        clock.advance(Duration::days(10));
        s.apply(E::CancelAtPeriodEnd, &clock).unwrap();
        assert_eq!(s.state, S::Canceled);
        assert!(s.has_access(clock.now()));
        assert!(s.has_access(s.period_end - Duration::seconds(1)));
        assert!(!s.has_access(s.period_end));
        assert!(matches!(
            s.apply(E::PeriodEnded, &clock),
            Err(SubscriptionError::TooEarly { .. })
        ));
        clock.set(s.period_end);
        s.apply(E::PeriodEnded, &clock).unwrap();
        assert_eq!(s.state, S::Expired);
    }

    #[test]
    fn cancel_now_ends_access_at_once() {
        let clock = ManualClock::new(dt("2027-01-10T00:00:00Z"));
        let mut s = active_pro(&clock);
        clock.advance(Duration::days(3));
        s.apply(E::CancelNow, &clock).unwrap();
        assert_eq!(s.state, S::Canceled);
        assert!(!s.has_access(clock.now()));
    }

    #[test]
    fn reactivate_undoes_cancel_before_period_end_only() {
        let clock = ManualClock::new(dt("2027-01-10T00:00:00Z"));
        let mut s = active_pro(&clock);
        s.apply(E::CancelAtPeriodEnd, &clock).unwrap();
        s.apply(E::Reactivate, &clock).unwrap();
        assert_eq!(s.state, S::Active);
        s.apply(E::CancelAtPeriodEnd, &clock).unwrap();
        clock.set(s.period_end);
        assert!(matches!(
            s.apply(E::Reactivate, &clock),
            Err(SubscriptionError::TooLate { .. })
        ));
        assert_eq!(s.state, S::Canceled);
    }

    #[test]
    fn upgrade_after_ten_of_thirty_days_credits_the_unused_two_thirds() {
        let (_, _, business) = plans();
        // April has 30 days.
        let clock = ManualClock::new(dt("2027-04-01T00:00:00Z"));
        let s = active_pro(&clock);
        let now = dt("2027-04-11T00:00:00Z");
        let q = s.quote(PlanChange { to: &business }, now).unwrap();
        // 49900 * 20/30 = 33266.67, rounded up for the tenant.
        assert_eq!(q.credit, 33_267);
        // 149900 * 20/30 = 99933.33, rounded down for the tenant.
        assert_eq!(q.amount_due_now, 99_933 - 33_267);
        assert_eq!(q.next_period_price, 149_900);
        assert_eq!(q.effective_at, now);
    }

    #[test]
    fn quote_equals_what_applying_the_upgrade_charges() {
        let (_, _, business) = plans();
        let clock = ManualClock::new(dt("2027-04-01T00:00:00Z"));
        let mut s = active_pro(&clock);
        clock.set(dt("2027-04-11T07:13:29Z"));
        let quoted = s.quote(PlanChange { to: &business }, clock.now()).unwrap();
        let before = s.clone();
        let charged = s.change_plan(PlanChange { to: &business }, &clock).unwrap();
        assert_eq!(quoted, charged);
        assert_eq!((s.plan.as_str(), s.price), ("business", 149_900));
        assert_eq!(
            (s.period_start, s.period_end),
            (before.period_start, before.period_end)
        );
    }

    #[test]
    fn downgrade_is_scheduled_for_the_period_end() {
        let (free, pro, _) = plans();
        let clock = ManualClock::new(dt("2027-04-01T00:00:00Z"));
        let mut s = active_pro(&clock);
        clock.advance(Duration::days(10));
        let q = s.change_plan(PlanChange { to: &free }, &clock).unwrap();
        assert_eq!(
            q,
            Quote {
                amount_due_now: 0,
                credit: 0,
                next_period_price: 0,
                effective_at: s.period_end
            }
        );
        assert_eq!(s.plan, "pro", "pro stays in effect until the period ends");
        clock.set(s.period_end);
        s.apply(E::PaymentSucceeded, &clock).unwrap();
        assert_eq!((s.plan.as_str(), s.price), ("free", 0));
        assert_eq!(pro.price(npr()), Some(49_900));
    }

    #[test]
    fn plan_change_needs_an_active_subscription_and_a_different_plan() {
        let (_, pro, business) = plans();
        let clock = ManualClock::new(dt("2027-04-01T00:00:00Z"));
        let mut s = active_pro(&clock);
        assert!(matches!(
            s.quote(PlanChange { to: &pro }, clock.now()),
            Err(SubscriptionError::SamePlan { .. })
        ));
        s.apply(E::CancelAtPeriodEnd, &clock).unwrap();
        assert!(matches!(
            s.quote(PlanChange { to: &business }, clock.now()),
            Err(SubscriptionError::NotActive { .. })
        ));
    }

    #[test]
    fn expired_subscription_resubscribes_with_a_new_period_from_payment() {
        let clock = ManualClock::new(dt("2027-01-10T00:00:00Z"));
        let mut s = active_pro(&clock);
        s.apply(E::CancelNow, &clock).unwrap();
        s.apply(E::PeriodEnded, &clock).unwrap();
        assert_eq!(s.state, S::Expired);
        clock.set(dt("2027-06-05T00:00:00Z"));
        s.apply(E::PaymentSucceeded, &clock).unwrap();
        assert_eq!(s.state, S::Active);
        assert_eq!(
            (s.period_start, s.period_end),
            (dt("2027-06-05T00:00:00Z"), dt("2027-07-05T00:00:00Z"))
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(dt("2027-01-01T00:00:00Z"));
        assert_eq!(clock.now(), dt("2027-01-01T00:00:00Z"));
        clock.advance(Duration::hours(2));
        assert_eq!(clock.now(), dt("2027-01-01T02:00:00Z"));
        assert!(SystemClock.now() > dt("2020-01-01T00:00:00Z"));
    }
}
