//! Group commit of usage events: the requests that report events for one
//! tenant are queued to that tenant's one writer, which takes whatever is
//! queued (up to [`GroupLimits::max_events`] events), writes it in one
//! transaction of the tenant database, commits, and only then answers each
//! request with its own result.
//!
//! # What a group keeps from one request per transaction
//!
//! Every request is answered as if it had run alone, in its order of
//! arrival: the engine takes its events in that order (so `used`, a
//! repeated key answered as already counted, a meter refused once it is
//! full are exactly what running the requests one after another gives),
//! and a request that fails — an unknown meter, a full meter, a module not
//! installed — fails alone: its events are given back to the engine and
//! never written, and its neighbours in the group go on. An explicit batch
//! stays one unit: all of its events or none. Nothing is answered before
//! the commit; a failed write or commit answers every request of the group
//! with the error and gives every event back to the engine.
//!
//! # Cost
//!
//! A group costs one `BEGIN IMMEDIATE`, one `INSERT` of all its new events
//! (a JSON array of rows, [`usage_db::record_events`]) and one `COMMIT`,
//! whatever its size; each request costs a push onto the queue and a
//! oneshot answer. The installation and grant checks a request needs
//! ([`GroupHost::prepare`]) are made once per module per group. When the
//! tenant database knew a key the engine had forgotten (the engine
//! remembers only recent keys, none after a restart), the `INSERT` stores
//! fewer rows than the engine counted: the group is rolled back and written
//! again event by event, as one request per transaction would, which tells
//! each event apart exactly.
//!
//! # Writers
//!
//! A tenant's writer is a task started by the request that finds the
//! tenant's queue without one; it writes groups until the queue is empty,
//! then retires (the queue is dropped with it), so an idle tenant costs
//! nothing. There is never more than one writer per tenant in a process;
//! other processes (the CLI) are serialised by SQLite's write lock.

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::UsageEvent;
use crate::capabilities::entitlements::call::{CallUsageError, MeterEvent, MeterHold};
use crate::entitlements::usage_db::{self, EventRows};
use crate::entitlements::{EntitlementEngine, MeterReading};
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// Default of [`GroupLimits::max_events`]: as many events as one explicit
/// batch may carry, so the largest batch always fits a group of its own.
pub const DEFAULT_GROUP_MAX_EVENTS: usize = super::MAX_EVENTS_PER_BATCH;

/// How groups are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Most events one group (one transaction) takes. A request is never
    /// split: a group takes requests in order while they fit, and always at
    /// least one. 1 writes each request in its own transaction.
    pub max_events: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            max_events: DEFAULT_GROUP_MAX_EVENTS,
        }
    }
}

/// A boxed future of the host, answering a [`SoukError`].
pub type HostFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SoukError>> + Send + 'a>>;

/// What a tenant's writer needs from the host. The host implements it
/// (`Souk`), and the writer holds it weakly: a writer never keeps a host
/// that is shutting down alive.
pub trait GroupHost: Send + Sync + 'static {
    /// Makes `module`'s installation for `tenant` ready for events: checks
    /// that it is installed and makes the engine's grant for it current.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the module is not installed; what
    /// loading the grant meets.
    fn prepare<'a>(&'a self, tenant: &'a Tenant, module: &'a str) -> HostFuture<'a, ()>;

    /// The tenant's database, asked once per group (a writer keeps one
    /// connection of it while it is busy).
    ///
    /// # Errors
    /// When it cannot be opened.
    fn database<'a>(&'a self, tenant: &'a Tenant) -> HostFuture<'a, SqlitePool>;

    /// The entitlement engine the events are counted in.
    fn engine(&self) -> &EntitlementEngine;

    /// The host clock's time: the instant a group's events are recorded at.
    fn now(&self) -> OffsetDateTime;
}

/// The events of one request, owned while they wait in the queue and
/// handed back with the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// One event (`POST /usage-events` with an event, `souk usage record`).
    One(UsageEvent),
    /// An explicit batch, all or nothing; errors name the event by index.
    Batch(Vec<UsageEvent>),
}

impl Submission {
    /// The events, in order.
    pub fn events(&self) -> &[UsageEvent] {
        match self {
            Submission::One(event) => std::slice::from_ref(event),
            Submission::Batch(events) => events,
        }
    }

    fn is_batch(&self) -> bool {
        matches!(self, Submission::Batch(_))
    }
}

/// A request's events, committed, with what the engine read for each.
#[derive(Debug)]
pub struct Written {
    /// The events as submitted.
    pub submission: Submission,
    /// One reading per event, in order: whether it counted, the meter's
    /// use in its period afterwards, the allowance, the period.
    pub readings: Vec<MeterReading>,
}

/// Why a whole group failed; every request of the group is answered with
/// it (as a [`SoukError::Internal`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupError {
    /// The tenant database refused a write or the commit: nothing of the
    /// group was recorded.
    #[error("the tenant database did not record the usage events: {0}")]
    Database(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The host is shutting down: nothing of the group was recorded.
    #[error("the host is shutting down; the usage events were not recorded")]
    HostGone,
    /// The writer stopped (a bug) before answering; whether the events
    /// were recorded is unknown (a retry with the same keys is safe).
    #[error("the usage writer stopped before answering; retry with the same idempotency keys")]
    WriterStopped,
}

impl From<sqlx::Error> for GroupError {
    fn from(error: sqlx::Error) -> Self {
        GroupError::Database(Arc::new(error))
    }
}

impl From<GroupError> for SoukError {
    fn from(error: GroupError) -> Self {
        SoukError::Internal(anyhow::Error::new(error))
    }
}

type Answer = Result<Written, SoukError>;

struct Job {
    submission: Submission,
    reply: oneshot::Sender<Answer>,
}

/// One tenant's queue, and whether a writer serves it.
struct Queue {
    tenant: Tenant,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    /// A writer is running for this queue.
    writing: bool,
    /// Its writer has left and the queue is no longer in the map: a
    /// request that finds it so starts over with a new queue.
    retired: bool,
}

struct Shared {
    host: Weak<dyn GroupHost>,
    limits: GroupLimits,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
}

/// The per-tenant queues and their writers: one per host, shared by every
/// request (the `Usage` service borrows it).
pub struct UsageGroups {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UsageGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageGroups")
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl UsageGroups {
    /// Queues writing through `host`, grouped by `limits`.
    pub fn new(host: Weak<dyn GroupHost>, limits: GroupLimits) -> Self {
        UsageGroups {
            shared: Arc::new(Shared {
                host,
                limits: GroupLimits {
                    max_events: limits.max_events.max(1),
                },
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The limits groups are formed by.
    pub fn limits(&self) -> GroupLimits {
        self.shared.limits
    }

    /// Queues `submission` for `tenant` and waits for its group to commit.
    /// The events must be valid on their own (amounts, keys, their number):
    /// the caller checks that before.
    ///
    /// # Errors
    /// What recording the request met (see [`Submission`]); a
    /// [`GroupError`] when its group failed as a whole.
    pub async fn submit(&self, tenant: &Tenant, submission: Submission) -> Answer {
        let (reply, answer) = oneshot::channel();
        let job = Job { submission, reply };
        loop {
            let queue = {
                let mut queues = lock(&self.shared.queues);
                match queues.get(&tenant.id) {
                    Some(queue) => queue.clone(),
                    None => {
                        let queue = Arc::new(Queue {
                            tenant: tenant.clone(),
                            state: Mutex::new(QueueState::default()),
                        });
                        queues.insert(tenant.id.clone(), queue.clone());
                        queue
                    }
                }
            };
            let mut state = lock(&queue.state);
            if state.retired {
                continue;
            }
            state.jobs.push_back(job);
            let start = !state.writing;
            state.writing = true;
            drop(state);
            if start {
                tokio::spawn(write_loop(self.shared.clone(), queue));
            }
            break;
        }
        answer
            .await
            .unwrap_or_else(|_| Err(GroupError::WriterStopped.into()))
    }
}

/// Leaves the queue in order when a writer ends without retiring (a
/// panic): the queue is retired and every request still queued is answered
/// [`GroupError::WriterStopped`], so the next request starts a new writer.
struct WriterGuard<'a> {
    shared: &'a Shared,
    queue: &'a Arc<Queue>,
    retired: bool,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if !self.retired {
            let mut queues = lock(&self.shared.queues);
            let mut state = lock(&self.queue.state);
            retire(&mut queues, &mut state, self.queue);
            // Dropping a job drops its reply: its request answers
            // `WriterStopped`.
            state.jobs.clear();
        }
    }
}

fn retire(queues: &mut HashMap<String, Arc<Queue>>, state: &mut QueueState, queue: &Arc<Queue>) {
    state.retired = true;
    state.writing = false;
    if queues
        .get(&queue.tenant.id)
        .is_some_and(|current| Arc::ptr_eq(current, queue))
    {
        queues.remove(&queue.tenant.id);
    }
}

/// A tenant's writer: groups until the queue is empty, then retires.
async fn write_loop(shared: Arc<Shared>, queue: Arc<Queue>) {
    let mut guard = WriterGuard {
        shared: &shared,
        queue: &queue,
        retired: false,
    };
    let mut group: Vec<Job> = Vec::new();
    let mut rows = EventRows::default();
    // The tenant database connection, held from group to group while the
    // queue keeps the writer busy (no pool round trip per group).
    let mut conn: Option<PoolConnection<Sqlite>> = None;
    loop {
        take_group(&queue, shared.limits.max_events, &mut group);
        if group.is_empty() {
            let mut queues = lock(&shared.queues);
            let mut state = lock(&queue.state);
            if state.jobs.is_empty() {
                retire(&mut queues, &mut state, &queue);
                guard.retired = true;
                return;
            }
            continue;
        }
        let answers = match shared.host.upgrade() {
            Some(host) => {
                write_group(host.as_ref(), &queue.tenant, &group, &mut conn, &mut rows).await
            }
            None => group
                .iter()
                .map(|_| Err(GroupError::HostGone.into()))
                .collect(),
        };
        for (job, answer) in group.drain(..).zip(answers) {
            let Job { submission, reply } = job;
            // A request that went away (its client disconnected) is still
            // recorded; only its answer is lost.
            let _ = reply.send(answer.map(|readings| Written {
                submission,
                readings,
            }));
        }
    }
}

/// Moves the next group off the queue into `group`: requests in order of
/// arrival while their events fit `max_events`, at least one.
fn take_group(queue: &Queue, max_events: usize, group: &mut Vec<Job>) {
    let mut state = lock(&queue.state);
    let mut events = 0;
    while let Some(next) = state.jobs.front() {
        let size = next.submission.events().len();
        if !group.is_empty() && events + size > max_events {
            break;
        }
        events += size;
        group.extend(state.jobs.pop_front());
    }
}

/// Per request of a group, in order: its readings, or why it failed.
type Readings = Result<Vec<MeterReading>, SoukError>;

/// Writes one group and says what to answer each of its requests.
async fn write_group(
    host: &dyn GroupHost,
    tenant: &Tenant,
    group: &[Job],
    held: &mut Option<PoolConnection<Sqlite>>,
    rows: &mut EventRows,
) -> Vec<Readings> {
    let unprepared = prepare(host, tenant, group).await;
    let fail_all =
        |error: &SoukError| -> Vec<Readings> { group.iter().map(|_| Err(copy(error))).collect() };
    // Asked every group, so a busy tenant stays recently used among the
    // open databases; a connection is acquired only when none is held.
    let pool = match host.database(tenant).await {
        Ok(pool) => pool,
        Err(error) => return fail_all(&error),
    };
    let conn = match held {
        Some(conn) => conn,
        None => match pool.acquire().await {
            Ok(conn) => held.insert(conn),
            Err(error) => return fail_all(&error.into()),
        },
    };
    let now = host.now();
    let engine = host.engine();
    let batch = Batch {
        engine,
        tenant_id: &tenant.id,
        group,
        skip: &unprepared,
        now,
    };
    let outcome = match batch.in_one_statement(conn, rows).await {
        Attempt::Redo => batch.event_by_event(conn).await,
        other => other,
    };
    if matches!(outcome, Attempt::Failed(_)) {
        // Whatever failed, the next group starts on a fresh connection.
        *held = None;
    }
    let mut unprepared = unprepared;
    match outcome {
        Attempt::Done(answers) => answers
            .into_iter()
            .zip(unprepared.iter_mut())
            .map(|(answer, unprepared)| match unprepared.take() {
                Some(error) => Err(error),
                None => answer,
            })
            .collect(),
        Attempt::Failed(error) => group
            .iter()
            .zip(unprepared)
            .map(|(_, unprepared)| Err(unprepared.unwrap_or_else(|| error.clone().into())))
            .collect(),
        Attempt::Redo => fail_all(&SoukError::Internal(anyhow::anyhow!(
            "usage events written one by one asked to be written again"
        ))),
    }
}

/// Prepares the modules of the group's requests, each once; per request,
/// in order, the error that stops it (`None`: ready). A request's modules
/// are prepared in name order and its first failure is its answer, as one
/// request alone would meet them.
async fn prepare(host: &dyn GroupHost, tenant: &Tenant, group: &[Job]) -> Vec<Option<SoukError>> {
    let mut prepared: HashMap<&str, Option<SoukError>> = HashMap::new();
    let mut failures = Vec::with_capacity(group.len());
    let mut modules: Vec<&str> = Vec::new();
    for job in group {
        modules.clear();
        modules.extend(job.submission.events().iter().map(|e| e.module.as_str()));
        modules.sort_unstable();
        modules.dedup();
        let mut failure = None;
        for &module in &modules {
            let result = match prepared.get(module) {
                Some(result) => result.as_ref().map(copy),
                None => {
                    let result = host.prepare(tenant, module).await.err();
                    let copied = result.as_ref().map(copy);
                    prepared.insert(module, result);
                    copied
                }
            };
            if result.is_some() {
                failure = result;
                break;
            }
        }
        failures.push(failure);
    }
    failures
}

/// A copy of `error` for another request that met the same failure.
fn copy(error: &SoukError) -> SoukError {
    match error {
        SoukError::NotFound(m) => SoukError::NotFound(m.clone()),
        SoukError::Conflict(m) => SoukError::Conflict(m.clone()),
        SoukError::Invalid(m) => SoukError::Invalid(m.clone()),
        SoukError::PackageRefused(m) => SoukError::PackageRefused(m.clone()),
        SoukError::Dependency(m) => SoukError::Dependency(m.clone()),
        SoukError::LifecycleFailed(m) => SoukError::LifecycleFailed(m.clone()),
        SoukError::Unauthorized(m) => SoukError::Unauthorized(m.clone()),
        SoukError::Forbidden(m) => SoukError::Forbidden(m.clone()),
        SoukError::Revoked(m) => SoukError::Revoked(m.clone()),
        SoukError::MethodNotAllowed(m) => SoukError::MethodNotAllowed(m.clone()),
        SoukError::PaymentRequired(m) => SoukError::PaymentRequired(m.clone()),
        SoukError::ProviderUnavailable(m) => SoukError::ProviderUnavailable(m.clone()),
        SoukError::TooManyRequests {
            detail,
            retry_after,
        } => SoukError::TooManyRequests {
            detail: detail.clone(),
            retry_after: *retry_after,
        },
        SoukError::Denied(denial) => SoukError::Denied(denial.clone()),
        SoukError::Internal(inner) => SoukError::Internal(anyhow::anyhow!("{inner:#}")),
        SoukError::Module(call) => SoukError::Internal(anyhow::anyhow!("{call}")),
    }
}

/// How writing a group went.
enum Attempt {
    /// Committed: per request, its readings or its own refusal (requests
    /// skipped for an unprepared module get an empty entry).
    Done(Vec<Readings>),
    /// The tenant database knew a key the engine did not: nothing was
    /// kept; write the group event by event.
    Redo,
    /// Nothing was kept; every request fails with this.
    Failed(GroupError),
}

/// One group's requests as the engine and the database take them.
struct Batch<'a> {
    engine: &'a EntitlementEngine,
    tenant_id: &'a str,
    group: &'a [Job],
    /// Requests not to write (their module could not be prepared).
    skip: &'a [Option<SoukError>],
    now: OffsetDateTime,
}

impl<'a> Batch<'a> {
    fn event(&self, event: &'a UsageEvent) -> MeterEvent<'a> {
        MeterEvent {
            tenant_id: self.tenant_id,
            module: &event.module,
            meter: &event.meter,
            amount: event.amount,
            idempotency_key: &event.idempotency_key,
            at: self.now,
        }
    }

    /// The fast way: every event taken in the engine in order, the new ones
    /// written by one `INSERT`, one commit. [`Attempt::Redo`] when the
    /// database stored fewer rows than the engine counted new (a key the
    /// engine had forgotten) or an event cannot go through JSON.
    async fn in_one_statement(&self, conn: &mut SqliteConnection, rows: &mut EventRows) -> Attempt {
        let mut tx = match sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await {
            Ok(tx) => tx,
            Err(error) => return Attempt::Failed(error.into()),
        };
        rows.clear();
        let mut encodable = true;
        let mut holds: Vec<MeterHold<'a>> = Vec::new();
        let mut spans: Vec<Result<Range<usize>, SoukError>> = Vec::with_capacity(self.group.len());
        for (job, skip) in self.group.iter().zip(self.skip) {
            let start = holds.len();
            if skip.is_some() {
                spans.push(Ok(start..start));
                continue;
            }
            let mark = rows.mark();
            let mut refusal = None;
            for (index, event) in job.submission.events().iter().enumerate() {
                match MeterHold::take(self.engine, self.event(event), false) {
                    Ok(hold) => {
                        let reading = hold.reading();
                        if reading.counted {
                            encodable &= rows.push(
                                &event.module,
                                &event.meter,
                                reading.period,
                                &event.idempotency_key,
                                event.amount,
                                self.now,
                            );
                        }
                        holds.push(hold);
                    }
                    Err(error) => {
                        refusal = Some(refused(&job.submission, index, error));
                        break;
                    }
                }
            }
            match refusal {
                None => spans.push(Ok(start..holds.len())),
                Some(refusal) => {
                    // Given back before the next request is taken, as if
                    // this one had never come.
                    holds.truncate(start);
                    rows.truncate(mark);
                    spans.push(Err(refusal));
                }
            }
        }
        let expected = rows.len() as u64;
        let stored = if encodable {
            match usage_db::record_events(&mut tx, rows).await {
                Ok(stored) => stored,
                Err(error) => return Attempt::Failed(error.into()),
            }
        } else {
            0
        };
        if !encodable || stored != expected {
            // The holds are given back as they drop; the rollback comes
            // first so the exact pass finds the write lock free.
            let _ = tx.rollback().await;
            return Attempt::Redo;
        }
        if let Err(error) = tx.commit().await {
            return Attempt::Failed(error.into());
        }
        Attempt::Done(keep(holds, spans))
    }

    /// The exact way, when the fast one could not tell events apart: each
    /// event taken and written in turn (as one request per transaction
    /// does, [`MeterHold::write`]), each request inside a savepoint so that
    /// a refused one leaves nothing behind, one commit.
    async fn event_by_event(&self, conn: &mut SqliteConnection) -> Attempt {
        let mut tx = match sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await {
            Ok(tx) => tx,
            Err(error) => return Attempt::Failed(error.into()),
        };
        let mut holds: Vec<MeterHold<'a>> = Vec::new();
        let mut spans: Vec<Result<Range<usize>, SoukError>> = Vec::with_capacity(self.group.len());
        for (job, skip) in self.group.iter().zip(self.skip) {
            let start = holds.len();
            if skip.is_some() {
                spans.push(Ok(start..start));
                continue;
            }
            let mut savepoint = match sqlx::Connection::begin(&mut *tx).await {
                Ok(savepoint) => savepoint,
                Err(error) => return Attempt::Failed(error.into()),
            };
            let mut refusal = None;
            for (index, event) in job.submission.events().iter().enumerate() {
                let taken = match MeterHold::take(self.engine, self.event(event), false) {
                    Ok(mut hold) => hold.write(&mut savepoint).await.map(|()| hold),
                    Err(error) => Err(error),
                };
                match taken {
                    Ok(hold) => holds.push(hold),
                    Err(CallUsageError::Host(error)) => {
                        let error: Box<dyn std::error::Error + Send + Sync> = error.into();
                        return Attempt::Failed(GroupError::Database(Arc::from(error)));
                    }
                    Err(error) => {
                        refusal = Some(refused(&job.submission, index, error));
                        break;
                    }
                }
            }
            let ended = match refusal {
                None => {
                    spans.push(Ok(start..holds.len()));
                    savepoint.commit().await
                }
                Some(refusal) => {
                    holds.truncate(start);
                    spans.push(Err(refusal));
                    savepoint.rollback().await
                }
            };
            if let Err(error) = ended {
                return Attempt::Failed(error.into());
            }
        }
        if let Err(error) = tx.commit().await {
            return Attempt::Failed(error.into());
        }
        Attempt::Done(keep(holds, spans))
    }
}

/// The group committed: keeps every hold and hands each request its
/// readings.
fn keep(holds: Vec<MeterHold<'_>>, spans: Vec<Result<Range<usize>, SoukError>>) -> Vec<Readings> {
    let readings: Vec<MeterReading> = holds
        .into_iter()
        .map(|hold| {
            let reading = hold.reading();
            hold.commit();
            reading
        })
        .collect();
    spans
        .into_iter()
        .map(|span| span.map(|range| readings[range].to_vec()))
        .collect()
}

/// A request's refusal, naming the event by its index in a batch.
fn refused(submission: &Submission, index: usize, error: CallUsageError) -> SoukError {
    let at = if submission.is_batch() {
        format!("events[{index}]: ")
    } else {
        String::new()
    };
    match error {
        CallUsageError::UnknownKey(message) | CallUsageError::OutOfRange(message) => {
            SoukError::Invalid(format!("{at}{message}"))
        }
        other => SoukError::Internal(anyhow::anyhow!("{other}")),
    }
}
