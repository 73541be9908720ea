//! Entitlements as one module call sees them: the checks of the
//! `entitlements` import (API 0.2.0), answered from the engine, and the
//! usage changes it makes, written through to the tenant database in the
//! call's own transaction and undone in the engine if that transaction rolls
//! back.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::capabilities::db::ModuleDb;
use crate::entitlements::{
    Decision, Denial, EntitlementEngine, MAX_QUANTITY, MeterReading, MeterRefusal, Period, Usage,
    UsageError, UsageKind, usage_db,
};

/// Why a usage change from a module call did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CallUsageError {
    /// The plan refuses it (the module sees the denial).
    #[error("{0}")]
    Denied(Denial),
    /// The key is not a count limit or meter of the module's plan.
    #[error("{0}")]
    UnknownKey(String),
    /// The idempotency key is empty or longer than
    /// [`MAX_IDEMPOTENCY_KEY`]; nothing changed.
    #[error("{0}")]
    InvalidKey(String),
    /// The quantity or amount is outside 1 to [`MAX_QUANTITY`], or would
    /// take a meter past [`MAX_USAGE`](crate::entitlements::MAX_USAGE); nothing changed.
    #[error("{0}")]
    OutOfRange(String),
    /// The host could not record it; the call is trapped and rolled back.
    #[error("{0:#}")]
    Host(anyhow::Error),
}

enum Undo {
    Counter {
        key: String,
        delta: i64,
        idempotency_key: Option<String>,
    },
    Meter {
        meter: String,
        amount: u64,
        period: Period,
        idempotency_key: String,
    },
}

/// One call's view of the entitlements of (tenant, module).
pub struct CallEntitlements {
    engine: Arc<EntitlementEngine>,
    tenant: String,
    module: String,
    now: OffsetDateTime,
    undo: Vec<Undo>,
    /// Limit keys the host counts itself (`kind: storage` and `kind:
    /// email`): the module's own `consume`, `release` and `record-usage`
    /// are refused for them.
    host_counted: Vec<String>,
    /// Count limits the module may seed ([`CallEntitlements::seed`]): its
    /// declared `kind: count` limits in an install or upgrade hook, none
    /// anywhere else.
    seedable: Vec<String>,
}

/// What a counting call did: the usage after it, and whether its
/// idempotency key had been counted already (a replay changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Usage after the call.
    pub usage: Usage,
    /// True when the idempotency key had been counted already.
    pub replay: bool,
}

impl std::fmt::Debug for CallEntitlements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallEntitlements")
            .field("tenant", &self.tenant)
            .field("module", &self.module)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Longest idempotency key a module may pass (keys are stored per event).
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

fn check_key(idempotency_key: Option<&str>) -> Result<(), CallUsageError> {
    match idempotency_key {
        Some(key) if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY => {
            Err(CallUsageError::InvalidKey(format!(
                "an idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} bytes, not {}",
                key.len()
            )))
        }
        _ => Ok(()),
    }
}

/// A quantity already checked against [`MAX_QUANTITY`], as the signed
/// delta the database stores.
fn signed_quantity(quantity: u64) -> Result<i64, CallUsageError> {
    i64::try_from(quantity).map_err(|_| {
        CallUsageError::OutOfRange(format!("a quantity must be at most {MAX_QUANTITY}"))
    })
}

/// The call's transaction, where usage is written beside the module's data.
async fn connection(db: &mut ModuleDb) -> Result<&mut sqlx::SqliteConnection, CallUsageError> {
    db.host_connection()
        .await
        .ok_or_else(|| CallUsageError::Host(anyhow::anyhow!("no transaction for this call")))?
        .map_err(host)
}

fn unknown(error: UsageError) -> CallUsageError {
    match error {
        UsageError::AmountOutOfRange { .. } | UsageError::MeterFull { .. } => {
            CallUsageError::OutOfRange(error.to_string())
        }
        other => CallUsageError::UnknownKey(other.to_string()),
    }
}

/// Refuses a quantity outside 1 to [`MAX_QUANTITY`] before anything counts.
fn check_quantity(quantity: u64) -> Result<(), CallUsageError> {
    if quantity == 0 || quantity > MAX_QUANTITY {
        return Err(CallUsageError::OutOfRange(format!(
            "a quantity must be 1 to {MAX_QUANTITY}, not {quantity}"
        )));
    }
    Ok(())
}

fn host(error: sqlx::Error) -> CallUsageError {
    CallUsageError::Host(error.into())
}

impl CallEntitlements {
    /// The view of `tenant_id`'s grant for `module`, at `now` (the host
    /// clock's time when the call started).
    pub fn new(
        engine: Arc<EntitlementEngine>,
        tenant_id: &str,
        module: &str,
        now: OffsetDateTime,
    ) -> Self {
        CallEntitlements {
            engine,
            tenant: tenant_id.to_owned(),
            module: module.to_owned(),
            now,
            undo: Vec::new(),
            host_counted: Vec::new(),
            seedable: Vec::new(),
        }
    }

    /// The same view, with the keys of `limits` the host counts itself
    /// (`kind: storage`, `kind: email`) closed to the module's own counting.
    #[must_use]
    pub fn with_host_counted<'a>(
        mut self,
        limits: impl IntoIterator<Item = &'a souk_module_registry::LimitDecl>,
    ) -> Self {
        self.host_counted = limits
            .into_iter()
            .filter(|l| l.kind.is_host_counted())
            .map(|l| l.key.clone())
            .collect();
        self
    }

    /// The same view for an install or upgrade hook: the module's declared
    /// count limits (`kind: count` in `limits`) may be seeded
    /// ([`CallEntitlements::seed`]).
    #[must_use]
    pub fn with_seeding<'a>(
        mut self,
        limits: impl IntoIterator<Item = &'a souk_module_registry::LimitDecl>,
    ) -> Self {
        self.seedable = limits
            .into_iter()
            .filter(|l| l.kind == souk_module_registry::LimitKind::Count)
            .map(|l| l.key.clone())
            .collect();
        self
    }

    /// Refuses `key` when the host counts it itself.
    ///
    /// # Errors
    /// [`CallUsageError::UnknownKey`] naming the key.
    pub fn refuse_host_counted(&self, key: &str) -> Result<(), CallUsageError> {
        if self.host_counted.iter().any(|k| k == key) {
            return Err(CallUsageError::UnknownKey(format!(
                "`{key}` is counted by the host (files stored, emails sent); a module cannot count it itself"
            )));
        }
        Ok(())
    }

    /// May the tenant use feature `key`?
    pub fn check_feature(&self, key: &str) -> Decision {
        self.engine.check_feature(&self.tenant, &self.module, key)
    }

    /// Do `quantity` more units of count limit or meter `key` fit?
    pub fn check_limit(&self, key: &str, quantity: u64) -> Decision {
        match self.engine.kind_of(&self.tenant, &self.module, key) {
            Some(UsageKind::Meter) => {
                self.engine
                    .check_meter(&self.tenant, &self.module, key, quantity, self.now)
            }
            _ => self
                .engine
                .check_limit(&self.tenant, &self.module, key, quantity),
        }
    }

    /// Usage and limit of count limit or meter `key` (meters: this period).
    pub fn usage(&self, key: &str) -> Option<Usage> {
        self.engine
            .usage_of(&self.tenant, &self.module, key, self.now)
            .map(|line| Usage {
                used: line.used,
                limit: line.limit,
            })
    }

    /// Takes `quantity` units of count limit `key`, never past the limit;
    /// with an `idempotency_key` already applied, nothing changes.
    ///
    /// # Errors
    /// [`CallUsageError::Denied`] when the plan refuses it (or the counter
    /// would pass [`MAX_USAGE`](crate::entitlements::MAX_USAGE)),
    /// [`CallUsageError::OutOfRange`] for a quantity outside 1 to
    /// [`MAX_QUANTITY`], [`CallUsageError::InvalidKey`] for an idempotency
    /// key outside 1 to [`MAX_IDEMPOTENCY_KEY`] bytes,
    /// [`CallUsageError::Host`] when the tenant database fails.
    pub async fn consume(
        &mut self,
        db: &mut ModuleDb,
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Counted, CallUsageError> {
        self.change_counter(db, key, quantity, idempotency_key, true)
            .await
    }

    /// Gives back `quantity` units of count limit `key`, never below zero;
    /// allowed in any subscription state.
    ///
    /// # Errors
    /// [`CallUsageError::UnknownKey`] for a key the module never had,
    /// [`CallUsageError::OutOfRange`] and [`CallUsageError::InvalidKey`] as
    /// for [`CallEntitlements::consume`], [`CallUsageError::Host`] when the
    /// tenant database fails.
    pub async fn release(
        &mut self,
        db: &mut ModuleDb,
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Counted, CallUsageError> {
        self.change_counter(db, key, quantity, idempotency_key, false)
            .await
    }

    async fn change_counter(
        &mut self,
        db: &mut ModuleDb,
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
        consume: bool,
    ) -> Result<Counted, CallUsageError> {
        check_key(idempotency_key)?;
        check_quantity(quantity)?;
        let conn = connection(db).await?;
        let direction = if consume { "consume" } else { "release" };
        if let Some(idem) = idempotency_key
            && usage_db::key_applied(conn, &self.module, key, direction, idem)
                .await
                .map_err(host)?
        {
            let usage = self.usage(key).ok_or_else(|| {
                CallUsageError::UnknownKey(format!("`{key}` is not a count limit"))
            })?;
            return Ok(Counted {
                usage,
                replay: true,
            });
        }
        let (usage, delta) = if consume {
            let usage = self
                .engine
                .consume(&self.tenant, &self.module, key, quantity, idempotency_key)
                .map_err(CallUsageError::Denied)?;
            (usage, signed_quantity(quantity)?)
        } else {
            let usage = self
                .engine
                .release(&self.tenant, &self.module, key, quantity, idempotency_key)
                .map_err(unknown)?;
            (usage, -signed_quantity(quantity)?)
        };
        self.undo.push(Undo::Counter {
            key: key.to_owned(),
            delta,
            idempotency_key: idempotency_key.map(str::to_owned),
        });
        usage_db::apply_counter(conn, &self.module, key, delta, idempotency_key, self.now)
            .await
            .map_err(host)?;
        Ok(Counted {
            usage,
            replay: false,
        })
    }

    /// Sets count limit `key` to `used` units, in the engine and in the
    /// call's transaction, even above the plan's limit (what exists is
    /// counted; later consumes are refused until usage falls below it).
    /// Only for the calls [`CallEntitlements::with_seeding`] opened it to,
    /// and only for a count limit the module declares; undone with the rest
    /// of the call's usage if its transaction rolls back.
    ///
    /// # Errors
    /// [`CallUsageError::UnknownKey`] outside an install or upgrade hook,
    /// or for a key that is not a declared count limit;
    /// [`CallUsageError::OutOfRange`] above [`MAX_USAGE`](crate::entitlements::MAX_USAGE);
    /// [`CallUsageError::Host`] when the tenant database fails.
    pub async fn seed(
        &mut self,
        db: &mut ModuleDb,
        key: &str,
        used: u64,
    ) -> Result<Usage, CallUsageError> {
        if self.seedable.is_empty() {
            return Err(CallUsageError::UnknownKey(format!(
                "`{key}`: a count can be seeded only in the install and upgrade hooks"
            )));
        }
        if !self.seedable.iter().any(|k| k == key) {
            return Err(CallUsageError::UnknownKey(format!(
                "`{key}` is not a count limit this module declares"
            )));
        }
        let conn = connection(db).await?;
        let (before, usage) = self
            .engine
            .seed_counter(&self.tenant, &self.module, key, used)
            .map_err(unknown)?;
        // Both are at most MAX_USAGE (i64::MAX): each fits an i64, and so
        // does their difference.
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let delta = signed(used) - signed(before);
        self.undo.push(Undo::Counter {
            key: key.to_owned(),
            delta,
            idempotency_key: None,
        });
        let counters = std::collections::BTreeMap::from([(key.to_owned(), used)]);
        usage_db::set_counters(conn, &self.module, &counters)
            .await
            .map_err(host)?;
        Ok(usage)
    }

    /// Records `amount` of meter `meter`, counted once per
    /// `idempotency_key` in a period; refused when the period's allowance
    /// would be exceeded.
    ///
    /// # Errors
    /// [`CallUsageError::Denied`] (allowance used up, or no access),
    /// [`CallUsageError::UnknownKey`], [`CallUsageError::OutOfRange`],
    /// [`CallUsageError::InvalidKey`], [`CallUsageError::Host`].
    pub async fn record_usage(
        &mut self,
        db: &mut ModuleDb,
        meter: &str,
        amount: u64,
        idempotency_key: &str,
    ) -> Result<Counted, CallUsageError> {
        check_key(Some(idempotency_key))?;
        check_quantity(amount)?;
        let conn = connection(db).await?;
        let event = MeterEvent {
            tenant_id: &self.tenant,
            module: &self.module,
            meter,
            amount,
            idempotency_key,
            at: self.now,
        };
        let reading = reserve(&self.engine, event, true)?;
        let reading = persist(&self.engine, conn, event, reading).await?;
        if reading.counted {
            self.undo.push(Undo::Meter {
                meter: meter.to_owned(),
                amount,
                period: reading.period,
                idempotency_key: idempotency_key.to_owned(),
            });
        }
        Ok(Counted {
            usage: Usage {
                used: reading.used,
                limit: reading.allowance,
            },
            replay: !reading.counted,
        })
    }

    /// The call's transaction rolled back: undoes every usage change it
    /// made in the engine (the database rolled back with the transaction).
    pub fn rollback(mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Counter {
                    key,
                    delta,
                    idempotency_key,
                } => self.engine.undo_counter(
                    &self.tenant,
                    &self.module,
                    &key,
                    delta,
                    idempotency_key.as_deref(),
                ),
                Undo::Meter {
                    meter,
                    amount,
                    period,
                    idempotency_key,
                } => self.engine.undo_usage(
                    &self.tenant,
                    &self.module,
                    &meter,
                    amount,
                    period,
                    &idempotency_key,
                ),
            }
        }
    }
}

/// A metered event to record: which meter, how much, under which key, when.
#[derive(Debug, Clone, Copy)]
pub struct MeterEvent<'a> {
    /// The tenant's internal id (not its slug).
    pub tenant_id: &'a str,
    /// The module's slug.
    pub module: &'a str,
    /// The meter's key, as the module declares it.
    pub meter: &'a str,
    /// How much to add, in the meter's own unit; the engine refuses 0 and
    /// more than [`MAX_QUANTITY`].
    pub amount: u64,
    /// Counted once per key per period.
    pub idempotency_key: &'a str,
    /// When it happened, by the host clock; decides the period it counts in.
    pub at: OffsetDateTime,
}

/// Records `event` in the engine only, first: with `enforce`, refused
/// atomically when access is lost or the allowance would be exceeded
/// (module calls, metered routes); without, recorded as a fact (reported
/// usage). Follow with [`persist`] in the caller's transaction, or undo.
///
/// # Errors
/// [`CallUsageError::Denied`] (enforced), [`CallUsageError::UnknownKey`],
/// [`CallUsageError::OutOfRange`].
fn reserve(
    engine: &EntitlementEngine,
    event: MeterEvent<'_>,
    enforce: bool,
) -> Result<MeterReading, CallUsageError> {
    let MeterEvent {
        tenant_id,
        module,
        meter,
        amount,
        idempotency_key,
        at,
    } = event;
    if enforce {
        engine
            .record_usage_within_allowance(tenant_id, module, meter, amount, idempotency_key, at)
            .map_err(|refusal| match refusal {
                MeterRefusal::Denied(denial) => CallUsageError::Denied(denial),
                MeterRefusal::Usage(error) => unknown(error),
            })
    } else {
        engine
            .record_usage(tenant_id, module, meter, amount, idempotency_key, at)
            .map_err(unknown)
    }
}

/// Writes an event [`reserve`] counted to the tenant database (`conn`,
/// inside the caller's transaction). The database's record of keys is
/// unbounded, the engine's is not: an event the engine took for new but the
/// database had seen is taken back out of the engine and reported as not
/// counted. On a database failure the engine is restored too.
///
/// # Errors
/// [`CallUsageError::Host`] for database failures.
async fn persist(
    engine: &EntitlementEngine,
    conn: &mut sqlx::SqliteConnection,
    event: MeterEvent<'_>,
    mut reading: MeterReading,
) -> Result<MeterReading, CallUsageError> {
    if !reading.counted {
        return Ok(reading);
    }
    let undo = || {
        engine.undo_usage(
            event.tenant_id,
            event.module,
            event.meter,
            event.amount,
            reading.period,
            event.idempotency_key,
        );
    };
    match usage_db::record_event(
        conn,
        event.module,
        event.meter,
        reading.period,
        event.idempotency_key,
        event.amount,
        event.at,
    )
    .await
    {
        Ok(true) => Ok(reading),
        Ok(false) => {
            undo();
            reading.counted = false;
            reading.used = reading.used.saturating_sub(event.amount);
            Ok(reading)
        }
        Err(e) => {
            undo();
            Err(host(e))
        }
    }
}

/// A metered event taken in the engine before the transaction that writes
/// it commits (a metered route's unit, a reported usage event). Dropped
/// without [`MeterHold::commit`], it is given back to the engine, so every
/// early return (a failed instantiation, a module error, a non-2xx answer, a
/// later event of a batch refused, a failed commit) leaves the meter as it
/// was.
pub struct MeterHold<'a> {
    engine: &'a EntitlementEngine,
    event: MeterEvent<'a>,
    reading: MeterReading,
    kept: bool,
}

impl<'a> MeterHold<'a> {
    /// Takes `event` in the engine; with `enforce`, from the allowance
    /// (atomically: refused when access is lost or the allowance would be
    /// exceeded), without, as a fact (reported usage).
    ///
    /// # Errors
    /// [`CallUsageError::Denied`] (enforced), [`CallUsageError::UnknownKey`]
    /// for a key that is not a meter of the plan,
    /// [`CallUsageError::OutOfRange`] for an amount out of range or a full
    /// meter.
    pub fn take(
        engine: &'a EntitlementEngine,
        event: MeterEvent<'a>,
        enforce: bool,
    ) -> Result<Self, CallUsageError> {
        let reading = reserve(engine, event, enforce)?;
        Ok(MeterHold {
            engine,
            event,
            reading,
            kept: false,
        })
    }

    /// Writes the unit into the request's transaction (`conn`); still given
    /// back on drop unless [`MeterHold::commit`] follows. An event the
    /// database had already seen (the engine remembers fewer keys) is given
    /// back at once and reads as not counted.
    ///
    /// # Errors
    /// [`CallUsageError::Host`] when the tenant database fails.
    pub async fn write(&mut self, conn: &mut sqlx::SqliteConnection) -> Result<(), CallUsageError> {
        match persist(self.engine, conn, self.event, self.reading).await {
            Ok(reading) => {
                self.reading = reading;
                Ok(())
            }
            Err(error) => {
                // `persist` has given the unit back already: the drop must
                // not give back a unit another call counted under the same
                // key since.
                self.reading.counted = false;
                Err(error)
            }
        }
    }

    /// The event as recorded so far (after [`MeterHold::write`]: whether
    /// the database counted it).
    pub fn reading(&self) -> MeterReading {
        self.reading
    }

    /// The transaction holding the unit committed: keep it.
    pub fn commit(mut self) {
        self.kept = true;
    }
}

impl Drop for MeterHold<'_> {
    fn drop(&mut self) {
        if !self.kept && self.reading.counted {
            self.engine.undo_usage(
                self.event.tenant_id,
                self.event.module,
                self.event.meter,
                self.event.amount,
                self.reading.period,
                self.event.idempotency_key,
            );
        }
    }
}
