//! Usage: metered events reported from outside a module call (a tenant's
//! own backend, the operator) and the usage report, for the API
//! (`POST /v1/tenants/{t}/usage-events`, `GET /v1/tenants/{t}/usage`) and the
//! CLI (`souk usage record`, `souk usage show`) alike.
//!
//! Events are written by group commit ([`group`]): concurrent requests for
//! one tenant share a transaction, each answered with its own result once
//! it has committed.
//!
//! [`Usage`] also owns the one step both need before reading or writing an
//! installation's usage, and that the request path needs before its gate:
//! [`Usage::ensure_grant`], which makes the entitlement engine's grant for
//! the installation current, with its counts loaded from the tenant database.
//!
//! The JSON of the views below has its object keys in alphabetical order
//! (what the API has always written), so their fields are declared in that
//! order.

pub mod group;

use serde::{Deserialize, Serialize};

use self::group::{Submission, UsageGroups, Written};
use crate::billing::service::Billing;
use crate::capabilities::entitlements::call;
use crate::catalog::{Catalog, ResolvedVersion};
use crate::clock::rfc3339;
use crate::control_plane::ControlPlane;
use crate::control_plane::installations::{self, Installation};
use crate::entitlements::{MAX_QUANTITY, MeterReading, UsageKind, usage_db};
use crate::error::SoukError;
use crate::tenancy::{Tenancy, Tenant};

/// Most events one batch may carry.
pub const MAX_EVENTS_PER_BATCH: usize = 1000;

/// One metered event as a caller reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    /// Slug of an installed module.
    pub module: String,
    /// A meter of the module's plan.
    pub meter: String,
    /// Units, 1 to [`MAX_QUANTITY`]; 1 when the JSON leaves it out.
    #[serde(default = "one_unit")]
    pub amount: u64,
    /// The event is counted once per key per metering period; 1 to
    /// [`call::MAX_IDEMPOTENCY_KEY`] bytes.
    pub idempotency_key: String,
}

fn one_unit() -> u64 {
    1
}

/// What recording one event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recorded {
    /// False when its key had already been counted in its period (nothing
    /// changed).
    pub counted: bool,
    /// The event's key, in the results of a batch (they are in the order
    /// of its events); `None` for a single event, whose caller just sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The meter's allowance per period; `None` is unmetered.
    pub limit: Option<u64>,
    /// The meter key, copied from the [`UsageEvent`].
    pub meter: String,
    /// The module slug, copied from the [`UsageEvent`].
    pub module: String,
    /// End (exclusive) of the metering period the event counts in, RFC 3339.
    pub period_end: String,
    /// Start of that period, RFC 3339.
    pub period_start: String,
    /// Units of the meter used in the period, this event included.
    pub used: u64,
}

/// The usage report: every count limit and meter of the tenant's
/// installed modules, as of `at`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// The host clock's instant the report was read at, RFC 3339.
    pub at: String,
    /// One entry per installed module, by module slug.
    pub modules: Vec<ModuleUsage>,
}

/// One installed module in a [`UsageReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleUsage {
    /// The module slug.
    pub module: String,
    /// The plan the grant is for; `None` for an unpriced module.
    pub plan: Option<String>,
    /// Count limits first, then meters, each sorted by key.
    pub usage: Vec<UsageLineView>,
}

/// One count limit or meter of a [`ModuleUsage`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageLineView {
    /// The limit or meter key.
    pub key: String,
    /// `count` (a standing quantity) or `meter` (a sum per period).
    pub kind: &'static str,
    /// The grant's limit (count) or allowance per period (meter); `None` is
    /// unlimited.
    pub limit: Option<u64>,
    /// `used / limit × 100`, rounded to two decimals; above 100 after a
    /// downgrade; `None` when unlimited.
    pub percent: Option<f64>,
    /// Meters only: end (exclusive) of the period `used` covers, RFC 3339.
    pub period_end: Option<String>,
    /// Meters only: start of that period, RFC 3339.
    pub period_start: Option<String>,
    /// Units held (count) or summed this period (meter).
    pub used: u64,
}

/// The usage service: borrows the parts it reads, holds no state of its own
/// (build one per operation, `souk.usage().report(..)`).
pub struct Usage<'a> {
    /// The entitlement engine (counts and grants) and the clock.
    pub billing: &'a Billing,
    /// The tenant databases the events are written to.
    pub tenancy: &'a Tenancy,
    /// The installed versions' manifests, which a grant is built for.
    pub catalog: &'a Catalog,
    /// The installations the events and the report are about.
    pub control: &'a ControlPlane,
    /// The per-tenant queues events are written through.
    pub groups: &'a UsageGroups,
}

impl Usage<'_> {
    /// Makes the engine's grant for `installation` current: built from the
    /// tenant's subscription when the engine has none or an older revision,
    /// with the installation's usage counts loaded from the tenant database
    /// the first time. One map lookup beyond the resolution when nothing
    /// changed. Returns the installed version, resolved.
    ///
    /// # Errors
    /// The installed version is no longer available; database errors.
    pub async fn ensure_grant(
        &self,
        tenant: &Tenant,
        installation: &Installation,
    ) -> Result<ResolvedVersion, SoukError> {
        let module = installation.module.as_str();
        let resolved = self
            .catalog
            .resolve(module, Some(&installation.version))
            .await?;
        let tenancy = self.tenancy;
        self.billing
            .ensure_grant(
                tenant,
                &resolved.manifest,
                installation.subscription_revision,
                |grant| async move {
                    let pool = tenancy.database(tenant).await?;
                    Ok(usage_db::load(&pool, module, &grant).await?)
                },
            )
            .await?;
        Ok(resolved)
    }

    /// Makes `module`'s installation for `tenant` ready for usage events:
    /// installed, and the engine's grant for it current
    /// ([`Usage::ensure_grant`]). A group of events runs it once per module
    /// ([`group::GroupHost::prepare`]).
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the module is not installed; as
    /// [`Usage::ensure_grant`].
    pub async fn prepare(&self, tenant: &Tenant, module: &str) -> Result<(), SoukError> {
        // The control plane's cached read, as the request path's: current
        // with every write, this process's or another's.
        let installation = self
            .control
            .installation(&tenant.id, module)
            .await?
            .ok_or_else(|| not_installed(module))?;
        self.ensure_grant(tenant, &installation).await?;
        Ok(())
    }

    /// Records one event for `tenant`, answered once it has committed.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for an amount, key or meter the module's plan
    /// does not accept; [`SoukError::NotFound`] when the module is not
    /// installed; database errors. Nothing is counted on an error.
    pub async fn record_one(
        &self,
        tenant: &Tenant,
        event: UsageEvent,
    ) -> Result<Recorded, SoukError> {
        let Written {
            submission,
            readings,
        } = self.record(tenant, Submission::One(event)).await?;
        match (submission, readings.first()) {
            (Submission::One(event), Some(reading)) => Ok(recorded(event, *reading, false)),
            _ => Err(SoukError::Internal(anyhow::anyhow!(
                "one event recorded, no result"
            ))),
        }
    }

    /// Records 1 to [`MAX_EVENTS_PER_BATCH`] events, all or nothing (one
    /// unit inside its group's transaction); one result per event, in
    /// order, once they have committed.
    ///
    /// # Errors
    /// As [`Usage::record_one`], the message naming the event by its index
    /// (`events[3]: ...`); [`SoukError::Invalid`] for an empty or
    /// oversized batch.
    pub async fn record_batch(
        &self,
        tenant: &Tenant,
        events: Vec<UsageEvent>,
    ) -> Result<Vec<Recorded>, SoukError> {
        let Written {
            submission,
            readings,
        } = self.record(tenant, Submission::Batch(events)).await?;
        let Submission::Batch(events) = submission else {
            return Err(SoukError::Internal(anyhow::anyhow!(
                "a batch recorded as one event"
            )));
        };
        if events.len() != readings.len() {
            return Err(SoukError::Internal(anyhow::anyhow!(
                "{} events recorded, {} results",
                events.len(),
                readings.len()
            )));
        }
        Ok(events
            .into_iter()
            .zip(readings)
            .map(|(event, reading)| recorded(event, reading, true))
            .collect())
    }

    /// Checks the events on their own, then queues them to the tenant's
    /// writer and waits for their group's commit.
    async fn record(&self, tenant: &Tenant, submission: Submission) -> Result<Written, SoukError> {
        let events = submission.events();
        let batch = matches!(submission, Submission::Batch(_));
        if events.is_empty() || events.len() > MAX_EVENTS_PER_BATCH {
            return Err(SoukError::Invalid(format!(
                "`events` must hold 1 to {MAX_EVENTS_PER_BATCH} events"
            )));
        }
        let at = |i: usize| {
            if batch {
                format!("events[{i}]: ")
            } else {
                String::new()
            }
        };
        for (i, event) in events.iter().enumerate() {
            if event.amount == 0 || event.amount > MAX_QUANTITY {
                return Err(SoukError::Invalid(format!(
                    "{}`amount` must be 1 to {MAX_QUANTITY}, not {}",
                    at(i),
                    event.amount
                )));
            }
            if event.idempotency_key.is_empty()
                || event.idempotency_key.len() > call::MAX_IDEMPOTENCY_KEY
            {
                return Err(SoukError::Invalid(format!(
                    "{}`idempotency_key` must be 1 to {} bytes",
                    at(i),
                    call::MAX_IDEMPOTENCY_KEY
                )));
            }
        }
        self.groups.submit(tenant, submission).await
    }

    /// The usage report of every module `tenant` has installed, or of
    /// only `module`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when `module` is not installed; database
    /// errors.
    pub async fn report(
        &self,
        tenant: &Tenant,
        module: Option<&str>,
    ) -> Result<UsageReport, SoukError> {
        let mut installed = {
            let mut conn = self.control.pool().acquire().await?;
            installations::list(&mut conn, &tenant.id).await?
        };
        if let Some(module) = module {
            installed.retain(|i| i.module == module);
            if installed.is_empty() {
                return Err(not_installed(module));
            }
        }
        let now = self.billing.clock().now();
        let mut modules = Vec::new();
        for installation in installed {
            self.ensure_grant(tenant, &installation).await?;
            let engine = self.billing.engine();
            let usage = engine
                .usage_view(&tenant.id, &installation.module, now)
                .unwrap_or_default()
                .into_iter()
                .map(|line| UsageLineView {
                    key: line.key,
                    kind: match line.kind {
                        UsageKind::Count => "count",
                        UsageKind::Meter => "meter",
                    },
                    limit: line.limit,
                    percent: line.percent.map(|p| (p * 100.0).round() / 100.0),
                    period_end: line.period.map(|p| rfc3339(p.end)),
                    period_start: line.period.map(|p| rfc3339(p.start)),
                    used: line.used,
                })
                .collect();
            modules.push(ModuleUsage {
                plan: engine.plan(&tenant.id, &installation.module),
                module: installation.module,
                usage,
            });
        }
        Ok(UsageReport {
            at: rfc3339(now),
            modules,
        })
    }
}

/// The answer for one recorded event; `with_key` in a batch's results.
fn recorded(event: UsageEvent, reading: MeterReading, with_key: bool) -> Recorded {
    Recorded {
        counted: reading.counted,
        idempotency_key: with_key.then_some(event.idempotency_key),
        limit: reading.allowance,
        meter: event.meter,
        module: event.module,
        period_end: rfc3339(reading.period.end),
        period_start: rfc3339(reading.period.start),
        used: reading.used,
    }
}

fn not_installed(module: &str) -> SoukError {
    SoukError::NotFound(format!(
        "module {module:?} is not installed for this tenant"
    ))
}
