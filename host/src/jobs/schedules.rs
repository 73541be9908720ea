//! Schedules: the task that queues a manifest's scheduled jobs
//! (`schedules:`) for every tenant with the module installed.
//!
//! Every second (host clock: a manual clock's moves count) it lists the
//! installations, and for each schedule of the installed version compares
//! the slot "now" falls in ([`Cadence::slot_at`]) with the slot it last
//! fired for in that tenant. That last slot is kept in the tenant's
//! database (`_souk_job_schedules`) and written in the transaction that
//! queues the job, so a slot fires exactly once, across restarts. Before
//! a schedule first fired, the slot of the installation's first install
//! counts as fired: the first job is queued at the first slot after the
//! install. After a downtime that spanned several slots the schedule fires
//! once, for the latest slot — a schedule is housekeeping, not a ledger of
//! missed runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use souk_module_registry::Schedule;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use super::{Jobs, JobsHost};
use crate::control_plane::installations::{self, TenantInstallation};
use crate::error::SoukError;
use crate::job_queue::new_job_id;
use crate::job_queue::store::{self, NewJob};
use crate::work::{WorkKind, WorkMarks};

/// How often the schedules are looked at.
const TICK: Duration = Duration::from_secs(1);

/// Runs the schedules task until `shutdown` turns true.
pub async fn run<H: JobsHost>(host: Arc<H>, mut shutdown: watch::Receiver<bool>) {
    let mut state = Scheduler::default();
    loop {
        if let Err(e) = state.tick(&host.jobs()).await {
            tracing::warn!(error = %e, "the schedules could not be looked at; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
}

/// What the task remembers between ticks.
#[derive(Default)]
struct Scheduler {
    /// The schedules of each module version, read once.
    schedules: HashMap<(String, String), Arc<Vec<Schedule>>>,
    /// The slot each (tenant, module, schedule) last fired for, as far as
    /// this process knows (read from the tenant's database the first time).
    fired: HashMap<(String, String, String), i64>,
}

impl Scheduler {
    async fn tick(&mut self, jobs: &Jobs<'_>) -> Result<(), SoukError> {
        let all = {
            let mut conn = jobs.control.pool().acquire().await?;
            installations::all(&mut conn).await?
        };
        let now = jobs.clock.now().unix_timestamp();
        for installation in all {
            let schedules = self.schedules_of(jobs, &installation).await;
            for schedule in schedules.iter() {
                let slot = schedule.cadence.slot_at(now);
                let key = (
                    installation.tenant_id.clone(),
                    installation.module.clone(),
                    schedule.name.clone(),
                );
                if self.fired.get(&key).is_some_and(|last| *last >= slot) {
                    continue;
                }
                // A tenant whose subscription gives no access to the module
                // now is skipped without recording the slot: the schedule
                // fires once when access returns. (Without a grant loaded
                // yet, the runner decides when the job's turn comes.)
                let engine = jobs.dispatcher.billing.engine();
                if engine.has_grant(&installation.tenant_id, &installation.module)
                    && !engine
                        .check_access(&installation.tenant_id, &installation.module)
                        .is_allowed()
                {
                    continue;
                }
                match fire(jobs, &installation, schedule, slot).await {
                    Ok(last) => {
                        self.fired.insert(key, last);
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %installation.tenant_id, module = %installation.module, schedule = %schedule.name, error = %e, "a schedule could not fire; retrying");
                    }
                }
            }
        }
        Ok(())
    }

    /// The schedules of the installed version (none when its manifest
    /// cannot be read: the version's other paths report that).
    async fn schedules_of(
        &mut self,
        jobs: &Jobs<'_>,
        installation: &TenantInstallation,
    ) -> Arc<Vec<Schedule>> {
        let key = (installation.module.clone(), installation.version.clone());
        if let Some(found) = self.schedules.get(&key) {
            return found.clone();
        }
        let schedules = match jobs
            .catalog
            .resolve(&installation.module, Some(&installation.version))
            .await
        {
            Ok(resolved) => Arc::new(resolved.manifest.schedules.clone()),
            Err(_) => return Arc::new(Vec::new()),
        };
        self.schedules.insert(key, schedules.clone());
        schedules
    }
}

/// Queues `schedule`'s job for `slot` in the installation's tenant unless
/// that slot (or a later one) fired already; answers the slot the schedule
/// has now fired for.
async fn fire(
    jobs: &Jobs<'_>,
    installation: &TenantInstallation,
    schedule: &Schedule,
    slot: i64,
) -> Result<i64, SoukError> {
    let tenant = jobs.tenancy.by_id(&installation.tenant_id).await?;
    let pool = jobs.tenancy.database(&tenant).await?;
    let module = installation.module.as_str();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let last = match store::last_slot(&mut tx, module, &schedule.name).await? {
        Some(last) => last,
        None => {
            let installed = OffsetDateTime::parse(&installation.installed_at, &Rfc3339)
                .map_or(slot, OffsetDateTime::unix_timestamp);
            schedule.cadence.slot_at(installed)
        }
    };
    if last >= slot {
        // Nothing to write: the transaction rolls back when dropped.
        return Ok(last);
    }
    let now = jobs.clock.now();
    let id = new_job_id();
    let job = NewJob {
        id: &id,
        module,
        name: &schedule.name,
        args: "{}",
        schedule: Some(&schedule.name),
        now,
    };
    store::insert(&mut tx, &job).await?;
    store::record_slot(&mut tx, module, &schedule.name, slot).await?;
    let mut marks = WorkMarks::default();
    marks.mark(WorkKind::Jobs);
    let marked = jobs
        .work
        .mark(&tenant.id, marks, now)
        .await
        .map_err(|e| SoukError::Internal(anyhow::anyhow!("work hints: {e}")))?;
    tx.commit().await?;
    drop(marked);
    tracing::info!(tenant = %tenant.slug, module, schedule = %schedule.name, job = %id, "schedule fired");
    Ok(slot)
}
