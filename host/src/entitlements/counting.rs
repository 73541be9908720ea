//! Changing usage: consuming and releasing count-limit units, recording
//! metered events (with or without enforcing the allowance), undoing either
//! when the surrounding transaction rolled back, and the usage dashboard.

use std::sync::atomic::Ordering;

use time::OffsetDateTime;

use super::decision::{denial, limit_and_counter};
use super::engine::{MeterState, Slot, lock, read, write};
use super::period::Period;
use super::{Denial, DenialReason, EntitlementEngine};

/// Largest quantity one consume, release or usage event may carry (10^12).
/// Modules and API clients are outside the host: a bound per event keeps one
/// event from filling a counter, and keeps every sum of events far below
/// [`MAX_USAGE`].
pub const MAX_QUANTITY: u64 = 1_000_000_000_000;

/// The most a count limit or a meter's period sum can hold: `i64::MAX`, the
/// largest integer the tenant database stores exactly. Sums are checked
/// against it; a change that would pass it is refused, never wrapped or
/// saturated into a different value.
pub const MAX_USAGE: u64 = i64::MAX as u64;

/// A count limit's usage after a consume or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Units held once the consume or release applied (or, for a repeated
    /// idempotency key, as they stand).
    pub used: u64,
    /// The limit; `None` is unlimited.
    pub limit: Option<u64>,
}

/// A meter's state after a usage event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterReading {
    /// Sum of the events in `period`.
    pub used: u64,
    /// Per-period allowance; `None` is unmetered.
    pub allowance: Option<u64>,
    /// The period the event was attributed to.
    pub period: Period,
    /// False if the idempotency key had already been counted.
    pub counted: bool,
}

/// Errors from usage bookkeeping that a check cannot express as a denial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The engine holds no grant for the pair.
    #[error(
        "no entitlements loaded for tenant `{tenant}` and module `{module}`; install its grant first"
    )]
    NoGrant {
        /// The tenant's internal id (the engine's key), not its slug.
        tenant: String,
        /// The module's slug.
        module: String,
    },
    /// The key is neither a count limit nor a meter the engine has seen.
    #[error("`{key}` is not a count limit or meter of this module's plan")]
    UnknownKey {
        /// The key asked about.
        key: String,
    },
    /// The amount is 0 or more than [`MAX_QUANTITY`].
    #[error("an amount must be 1 to {max}, not {amount}")]
    AmountOutOfRange {
        /// The amount given.
        amount: u64,
        /// [`MAX_QUANTITY`].
        max: u64,
    },
    /// The meter's period sum would pass [`MAX_USAGE`].
    #[error(
        "meter `{meter}` holds {used} this period; {amount} more would pass the most a meter can hold ({max})"
    )]
    MeterFull {
        /// The meter's key, as the plan names it.
        meter: String,
        /// Its sum this period.
        used: u64,
        /// The amount refused.
        amount: u64,
        /// [`MAX_USAGE`].
        max: u64,
    },
    /// The event is older than the meter's current period, whose sum is the
    /// only one kept.
    #[error(
        "usage event for `{meter}` at {at} is before the current period starting {period_start}; record events in order"
    )]
    BeforeCurrentPeriod {
        /// The meter's key, as the plan names it.
        meter: String,
        /// When the event happened.
        at: OffsetDateTime,
        /// Start of the meter's current period.
        period_start: OffsetDateTime,
    },
}

/// What a line of the usage dashboard counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UsageKind {
    /// A count limit (`max_cards`).
    Count,
    /// A meter summed per period (`qr_scans_per_month`).
    Meter,
}

/// One line of a tenant's usage dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageLine {
    /// The limit or meter key as the plan names it (`max_cards`).
    pub key: String,
    /// Whether `used` is units held or a period's sum; the dashboard lists
    /// counts first.
    pub kind: UsageKind,
    /// Units held (count) or summed this period (meter).
    pub used: u64,
    /// Limit or allowance; `None` is unlimited.
    pub limit: Option<u64>,
    /// `used / limit × 100`; above 100 after a downgrade; `None` if
    /// unlimited.
    pub percent: Option<f64>,
    /// Meters only: the period `used` covers.
    pub period: Option<Period>,
}

impl EntitlementEngine {
    /// One line of [`EntitlementEngine::usage_view`]: the usage and limit
    /// of count limit or meter `key` as of `now`. `None` without a grant, or
    /// when the grant has no such limit or meter.
    pub fn usage_of(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        now: OffsetDateTime,
    ) -> Option<UsageLine> {
        self.with_slot(tenant, module, |slot| usage_line(slot, key, now))
            .flatten()
    }

    /// Undoes a [`EntitlementEngine::consume`] (positive `delta` given back)
    /// or a [`EntitlementEngine::release`] (negative `delta` taken again)
    /// whose surrounding transaction rolled back. No limit check: the units
    /// were held before. Forgets `idempotency_key` so a retry applies again.
    pub fn undo_counter(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        delta: i64,
        idempotency_key: Option<&str>,
    ) {
        self.with_slot(tenant, module, |slot| {
            let Some(counter) = slot.counters.get(key) else {
                return;
            };
            let mut keys = lock(&counter.keys);
            let amount = delta.unsigned_abs();
            let _ = counter
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    Some(if delta >= 0 {
                        used.saturating_sub(amount)
                    } else {
                        used.saturating_add(amount)
                    })
                });
            if let Some(idempotency_key) = idempotency_key {
                if delta >= 0 {
                    keys.consumed.remove(idempotency_key);
                } else {
                    keys.released.remove(idempotency_key);
                }
            }
        });
    }

    /// Undoes a [`EntitlementEngine::record_usage`] that was counted in
    /// `period` but whose surrounding transaction rolled back (or whose key
    /// the durable store had already seen). A no-op once the meter moved on
    /// to a later period.
    pub fn undo_usage(
        &self,
        tenant: &str,
        module: &str,
        meter: &str,
        amount: u64,
        period: Period,
        idempotency_key: &str,
    ) {
        self.with_slot(tenant, module, |slot| {
            if let Some(state) = slot.meters.get(meter) {
                let mut state = lock(state);
                if state.period == period && state.seen.remove(idempotency_key) {
                    state.used = state.used.saturating_sub(amount);
                }
            }
        });
    }

    /// Takes `quantity` units of count limit `key` (a created card consumes
    /// one of `max_cards`), atomically: concurrent consumers never take usage
    /// past the limit. With an `idempotency_key` already applied to this
    /// counter, nothing changes and the current usage is returned.
    ///
    /// # Errors
    /// A [`Denial`] if the subscription gives no access, the plan lacks the
    /// limit, or the units would exceed it (usage left unchanged). A
    /// `quantity` above [`MAX_QUANTITY`], or one that would take the counter
    /// past [`MAX_USAGE`] (even on an unlimited limit), is refused the same
    /// way (`limit_reached`).
    pub fn consume(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Usage, Denial> {
        self.with_slot(tenant, module, |slot| {
            let (limit, counter) = limit_and_counter(slot, key)?;
            let take = || {
                counter
                    .used
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                        if quantity > MAX_QUANTITY {
                            return None;
                        }
                        let next = used.checked_add(quantity).filter(|n| *n <= MAX_USAGE)?;
                        match limit {
                            Some(limit) if next > limit => None,
                            _ => Some(next),
                        }
                    })
                    .map(|before| Usage {
                        used: before + quantity,
                        limit,
                    })
                    .map_err(|used| {
                        denial(
                            &slot.grant,
                            key,
                            DenialReason::LimitReached,
                            Some(used),
                            limit,
                        )
                    })
            };
            match idempotency_key {
                None => take(),
                Some(idempotency_key) => {
                    let mut keys = lock(&counter.keys);
                    if keys.consumed.contains(idempotency_key) {
                        return Ok(Usage {
                            used: counter.used.load(Ordering::Acquire),
                            limit,
                        });
                    }
                    let usage = take()?;
                    keys.consumed.insert(idempotency_key);
                    Ok(usage)
                }
            }
        })
        .unwrap_or_else(|| Err(Denial::no_subscription(key)))
    }

    /// Gives back `quantity` units of count limit `key` (a deleted card
    /// releases one). Allowed in any access state and after a downgrade that
    /// dropped the limit, so tenants can always clean up; usage never goes
    /// below zero. With an `idempotency_key` already applied, nothing changes.
    ///
    /// # Errors
    /// [`UsageError::NoGrant`] without a grant; [`UsageError::UnknownKey`] if
    /// the pair never had a count limit `key`.
    pub fn release(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Usage, UsageError> {
        self.with_slot(tenant, module, |slot| {
            let counter = slot
                .counters
                .get(key)
                .ok_or_else(|| UsageError::UnknownKey {
                    key: key.to_owned(),
                })?;
            let limit = slot.grant.limits.get(key).copied().flatten();
            let give_back = || {
                let before = counter
                    .used
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                        Some(used.saturating_sub(quantity))
                    })
                    .unwrap_or_else(|used| used);
                Usage {
                    used: before.saturating_sub(quantity),
                    limit,
                }
            };
            match idempotency_key {
                None => Ok(give_back()),
                Some(idempotency_key) => {
                    let mut keys = lock(&counter.keys);
                    if !keys.released.insert(idempotency_key) {
                        return Ok(Usage {
                            used: counter.used.load(Ordering::Acquire),
                            limit,
                        });
                    }
                    Ok(give_back())
                }
            }
        })
        .unwrap_or_else(|| Err(no_grant(tenant, module)))
    }

    /// Sets count limit `key` to `used` units (a lifecycle hook seeding a
    /// count its rows predate), whatever the limit and the access state:
    /// what exists is counted, even above the limit, and later consumes are
    /// refused until usage falls below it. Creates the counter when the
    /// plan has no such limit yet, so a later plan that has one starts
    /// from the real count. Returns the usage before and after; undo with
    /// [`EntitlementEngine::undo_counter`] and a delta of `after - before`.
    ///
    /// # Errors
    /// [`UsageError::NoGrant`] without a grant; [`UsageError::AmountOutOfRange`]
    /// when `used` is above [`MAX_USAGE`].
    pub fn seed_counter(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        used: u64,
    ) -> Result<(u64, Usage), UsageError> {
        if used > MAX_USAGE {
            return Err(UsageError::AmountOutOfRange {
                amount: used,
                max: MAX_USAGE,
            });
        }
        let shard = read(self.shard(tenant));
        let slot = shard
            .get(tenant)
            .and_then(|modules| modules.get(module))
            .ok_or_else(|| no_grant(tenant, module))?;
        let mut slot = write(slot);
        let limit = slot.grant.limits.get(key).copied().flatten();
        let counter = slot
            .counters
            .entry(key.to_owned())
            .or_insert_with(|| self.fresh_counter());
        let before = counter.used.swap(used, Ordering::AcqRel);
        Ok((before, Usage { used, limit }))
    }

    /// Records a usage event of `amount` on meter `meter` at `at`, counted
    /// once per `idempotency_key` within a period. An event at or after the
    /// current period's end rolls the meter into the period containing `at`
    /// (sum and remembered keys restart). Events are facts, so they are
    /// recorded in any access state and beyond the allowance; use
    /// [`EntitlementEngine::check_meter`] to refuse work before it happens.
    ///
    /// # Errors
    /// [`UsageError::NoGrant`] without a grant; [`UsageError::UnknownKey`] if
    /// the plan has no such meter; [`UsageError::AmountOutOfRange`] for an
    /// amount of 0 or above [`MAX_QUANTITY`]; [`UsageError::MeterFull`] when
    /// the period's sum would pass [`MAX_USAGE`];
    /// [`UsageError::BeforeCurrentPeriod`] for an event older than the
    /// current period (only its sum is kept).
    pub fn record_usage(
        &self,
        tenant: &str,
        module: &str,
        meter: &str,
        amount: u64,
        idempotency_key: &str,
        at: OffsetDateTime,
    ) -> Result<MeterReading, UsageError> {
        self.with_slot(tenant, module, |slot| {
            record_in(slot, meter, amount, idempotency_key, at, false).map_err(|e| match e {
                MeterRefusal::Usage(e) => e,
                // Unreachable without enforcement; stay total.
                MeterRefusal::Denied(d) => UsageError::UnknownKey { key: d.key },
            })
        })
        .unwrap_or_else(|| Err(no_grant(tenant, module)))
    }

    /// Like [`EntitlementEngine::record_usage`], but refused — atomically,
    /// under the meter's lock — when the subscription gives no access or
    /// the event would take the period past its allowance. Concurrent
    /// callers racing for the last units of a period never exceed it. An
    /// event whose key was already counted is answered as such (not
    /// refused), whatever the allowance.
    ///
    /// # Errors
    /// [`MeterRefusal::Denied`] (no access, meter not in the plan, allowance
    /// used up); [`MeterRefusal::Usage`] for an event before the current
    /// period or without a grant.
    pub fn record_usage_within_allowance(
        &self,
        tenant: &str,
        module: &str,
        meter: &str,
        amount: u64,
        idempotency_key: &str,
        at: OffsetDateTime,
    ) -> Result<MeterReading, MeterRefusal> {
        self.with_slot(tenant, module, |slot| {
            record_in(slot, meter, amount, idempotency_key, at, true)
        })
        .unwrap_or_else(|| Err(MeterRefusal::Denied(Denial::no_subscription(meter))))
    }

    /// The tenant's usage dashboard for `module` as of `now`: one line per
    /// count limit and per meter of the current grant, counts first, each
    /// sorted by key. Meters whose period ended before `now` show the new,
    /// empty period. `None` without a grant.
    pub fn usage_view(
        &self,
        tenant: &str,
        module: &str,
        now: OffsetDateTime,
    ) -> Option<Vec<UsageLine>> {
        self.with_slot(tenant, module, |slot| {
            let grant = &slot.grant;
            let mut lines: Vec<UsageLine> = grant
                .limits
                .keys()
                .chain(grant.meters.keys())
                .filter_map(|key| usage_line(slot, key, now))
                .collect();
            lines.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
            lines
        })
    }
}

/// Why [`EntitlementEngine::record_usage_within_allowance`] refused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterRefusal {
    /// The plan refuses it.
    Denied(Denial),
    /// The event cannot be recorded at all.
    Usage(UsageError),
}

/// Records an event on `meter` of `slot`; with `enforce`, refuses it when
/// access is lost or the allowance would be exceeded (checked under the
/// meter's lock, so the check and the record are one step).
fn record_in(
    slot: &Slot,
    meter: &str,
    amount: u64,
    idempotency_key: &str,
    at: OffsetDateTime,
    enforce: bool,
) -> Result<MeterReading, MeterRefusal> {
    let grant = &slot.grant;
    if enforce && let Some(reason) = grant.state.denial_reason() {
        return Err(MeterRefusal::Denied(denial(
            grant, meter, reason, None, None,
        )));
    }
    let unknown = || {
        if enforce {
            MeterRefusal::Denied(denial(
                grant,
                meter,
                DenialReason::FeatureNotInPlan,
                None,
                None,
            ))
        } else {
            MeterRefusal::Usage(UsageError::UnknownKey {
                key: meter.to_owned(),
            })
        }
    };
    if amount == 0 || amount > MAX_QUANTITY {
        return Err(MeterRefusal::Usage(UsageError::AmountOutOfRange {
            amount,
            max: MAX_QUANTITY,
        }));
    }
    let allowance = grant.meters.get(meter).ok_or_else(unknown)?;
    let mut state = lock(slot.meters.get(meter).ok_or_else(unknown)?);
    let period = state.clock.roll_to(state.period, at).ok_or_else(|| {
        MeterRefusal::Usage(UsageError::BeforeCurrentPeriod {
            meter: meter.to_owned(),
            at,
            period_start: state.period.start,
        })
    })?;
    if period != state.period {
        state.period = period;
        state.used = 0;
        state.seen.clear();
    }
    let reading = |state: &MeterState, counted| MeterReading {
        used: state.used,
        allowance: allowance.per_period,
        period: state.period,
        counted,
    };
    if state.seen.contains(idempotency_key) {
        return Ok(reading(&state, false));
    }
    if enforce
        && let Some(limit) = allowance.per_period
        && state.used.saturating_add(amount) > limit
    {
        return Err(MeterRefusal::Denied(denial(
            grant,
            meter,
            DenialReason::LimitReached,
            Some(state.used),
            Some(limit),
        )));
    }
    let Some(used) = state.used.checked_add(amount).filter(|n| *n <= MAX_USAGE) else {
        return Err(if enforce {
            MeterRefusal::Denied(denial(
                grant,
                meter,
                DenialReason::LimitReached,
                Some(state.used),
                allowance.per_period,
            ))
        } else {
            MeterRefusal::Usage(UsageError::MeterFull {
                meter: meter.to_owned(),
                used: state.used,
                amount,
                max: MAX_USAGE,
            })
        });
    };
    state.seen.insert(idempotency_key);
    state.used = used;
    Ok(reading(&state, true))
}

/// The usage line of `key` in `slot` as of `now`: a count limit's units
/// held, or a meter's sum in the period containing `now` (a period that
/// ended shows the new, empty one).
fn usage_line(slot: &Slot, key: &str, now: OffsetDateTime) -> Option<UsageLine> {
    if let Some(limit) = slot.grant.limits.get(key) {
        let used = slot
            .counters
            .get(key)
            .map_or(0, |counter| counter.used.load(Ordering::Acquire));
        return Some(UsageLine {
            key: key.to_owned(),
            kind: UsageKind::Count,
            used,
            limit: *limit,
            percent: percent(used, *limit),
            period: None,
        });
    }
    let allowance = slot.grant.meters.get(key)?;
    let (used, period) = match slot.meters.get(key) {
        None => (0, allowance.period),
        Some(meter) => {
            let meter = lock(meter);
            match meter.clock.roll_to(meter.period, now) {
                Some(period) if period != meter.period => (0, period),
                _ => (meter.used, meter.period),
            }
        }
    };
    Some(UsageLine {
        key: key.to_owned(),
        kind: UsageKind::Meter,
        used,
        limit: allowance.per_period,
        percent: percent(used, allowance.per_period),
        period: Some(period),
    })
}

fn percent(used: u64, limit: Option<u64>) -> Option<f64> {
    match limit {
        None => None,
        Some(0) => Some(if used == 0 { 0.0 } else { 100.0 }),
        Some(limit) => Some(used as f64 * 100.0 / limit as f64),
    }
}

fn no_grant(tenant: &str, module: &str) -> UsageError {
    UsageError::NoGrant {
        tenant: tenant.to_owned(),
        module: module.to_owned(),
    }
}
