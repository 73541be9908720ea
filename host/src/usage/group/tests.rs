//! The group writer against a tenant database file and an engine of its
//! own, behind a test host that counts what the writer asks of it.
//!
//! Requests are put on the queue in one poll (`join_all` on the test's
//! single-threaded runtime: every `submit` queues its request before the
//! writer it starts gets to run), so a test knows which requests share a
//! group; the host's `now` count says how many groups there were.
//! Each grouped run is checked against an oracle that records the same
//! requests the way one request per transaction always has.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures_util::future::join_all;
use sqlx::SqlitePool;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::entitlements::{
    AccessState, Grant, MAX_USAGE, MeterAllowance, Period, ResetInterval, StoredMeter, StoredUsage,
};

const MODULE: &str = "cards";
const METER: &str = "scans";

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_796_126_400 + 3_600).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn period() -> Period {
    let start = now() - Duration::hours(1);
    Period {
        start,
        end: start + Duration::days(30),
    }
}

fn grant() -> Grant {
    let mut grant = Grant::new(AccessState::Active, Some("free"));
    grant.meters = HashMap::from([(
        METER.to_owned(),
        MeterAllowance {
            per_period: Some(5),
            period: period(),
            interval: ResetInterval::Month,
        },
    )]);
    grant
}

fn tenant() -> Tenant {
    Tenant {
        id: "t_0000000000000001".to_owned(),
        slug: "acme".to_owned(),
        name: "Acme".to_owned(),
        created_at: "2026-12-01T00:00:00Z".to_owned(),
    }
}

/// A host over one tenant database, counting the groups it wrote (`now`
/// is asked once per group) and the modules it prepared.
struct TestHost {
    engine: EntitlementEngine,
    pool: SqlitePool,
    groups: AtomicUsize,
    prepared: Mutex<Vec<String>>,
    _dir: tempfile::TempDir,
}

impl GroupHost for TestHost {
    fn prepare<'a>(&'a self, _tenant: &'a Tenant, module: &'a str) -> HostFuture<'a, ()> {
        Box::pin(async move {
            lock(&self.prepared).push(module.to_owned());
            if module == MODULE {
                Ok(())
            } else {
                Err(SoukError::NotFound(format!(
                    "module {module:?} is not installed for this tenant"
                )))
            }
        })
    }

    fn database<'a>(&'a self, _tenant: &'a Tenant) -> HostFuture<'a, SqlitePool> {
        Box::pin(async move { Ok(self.pool.clone()) })
    }

    fn engine(&self) -> &EntitlementEngine {
        &self.engine
    }

    fn now(&self) -> OffsetDateTime {
        self.groups.fetch_add(1, Ordering::SeqCst);
        now()
    }
}

/// A host whose meter already holds `used` this period (no keys known).
async fn host_with(used: u64) -> Arc<TestHost> {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = crate::capabilities::db::sandbox::pool_options()
        .max_connections(4)
        .connect_with(crate::control_plane::sqlite_options(
            &dir.path().join("tenant.sqlite"),
        ))
        .await
        .expect("tenant database");
    crate::tenant_migrations::migrate(&pool)
        .await
        .expect("tenant tables");
    let engine = EntitlementEngine::new();
    let usage = StoredUsage {
        meters: [(
            METER.to_owned(),
            StoredMeter {
                period: period(),
                used,
                seen_keys: Vec::new(),
            },
        )]
        .into(),
        ..StoredUsage::default()
    };
    engine.replace_grant_with_usage(&tenant().id, MODULE, grant(), usage);
    Arc::new(TestHost {
        engine,
        pool,
        groups: AtomicUsize::new(0),
        prepared: Mutex::new(Vec::new()),
        _dir: dir,
    })
}

fn groups_of(host: &Arc<TestHost>, max_events: usize) -> UsageGroups {
    let weak: Weak<dyn GroupHost> = Arc::downgrade(&(host.clone() as Arc<dyn GroupHost>));
    UsageGroups::new(weak, GroupLimits { max_events })
}

fn event(key: &str, amount: u64) -> UsageEvent {
    UsageEvent {
        module: MODULE.to_owned(),
        meter: METER.to_owned(),
        amount,
        idempotency_key: key.to_owned(),
    }
}

fn one(key: &str, amount: u64) -> Submission {
    Submission::One(event(key, amount))
}

/// What a request was answered, comparable: per event (counted, used), or
/// the error.
type Seen = Result<Vec<(bool, u64)>, String>;

fn seen(answer: &Answer) -> Seen {
    match answer {
        Ok(written) => Ok(written
            .readings
            .iter()
            .map(|r| (r.counted, r.used))
            .collect()),
        Err(error) => Err(format!("{error:?}")),
    }
}

/// Queues every submission in one poll and waits for all: one group when
/// they fit `max_events`.
async fn grouped(groups: &UsageGroups, submissions: &[Submission]) -> Vec<Answer> {
    let tenant = tenant();
    join_all(
        submissions
            .iter()
            .map(|s| groups.submit(&tenant, s.clone())),
    )
    .await
}

/// The oracle: each request alone, in order, in a transaction of its own,
/// event by event, as the usage-events API recorded them before groups.
async fn one_by_one(host: &TestHost, submissions: &[Submission]) -> Vec<Seen> {
    let tenant = tenant();
    let mut out = Vec::new();
    for submission in submissions {
        if submission.events().iter().any(|e| e.module != MODULE) {
            out.push(Err(format!(
                "{:?}",
                SoukError::NotFound("module \"other\" is not installed for this tenant".to_owned())
            )));
            continue;
        }
        let mut tx = host
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .expect("begin");
        let mut holds = Vec::new();
        let mut refusal = None;
        for (index, event) in submission.events().iter().enumerate() {
            let meter_event = MeterEvent {
                tenant_id: &tenant.id,
                module: &event.module,
                meter: &event.meter,
                amount: event.amount,
                idempotency_key: &event.idempotency_key,
                at: now(),
            };
            match MeterHold::take(&host.engine, meter_event, false) {
                Ok(mut hold) => {
                    hold.write(&mut tx).await.expect("write");
                    holds.push(hold);
                }
                Err(error) => {
                    refusal = Some(refused(submission, index, error));
                    break;
                }
            }
        }
        if let Some(refusal) = refusal {
            out.push(Err(format!("{refusal:?}")));
            continue;
        }
        tx.commit().await.expect("commit");
        out.push(Ok(holds
            .into_iter()
            .map(|hold| {
                let reading = hold.reading();
                hold.commit();
                (reading.counted, reading.used)
            })
            .collect()));
    }
    out
}

async fn stored_keys(pool: &SqlitePool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT idempotency_key, amount FROM _souk_usage_events ORDER BY idempotency_key",
    )
    .fetch_all(pool)
    .await
    .expect("stored events")
}

fn used(host: &TestHost) -> u64 {
    host.engine
        .usage_of(&tenant().id, MODULE, METER, now())
        .map_or(0, |line| line.used)
}

/// Runs `submissions` as one group on a host whose meter holds `used`,
/// and one by one on another; asserts they answer alike and store alike.
async fn same_as_one_by_one(used_before: u64, submissions: &[Submission]) -> Vec<Seen> {
    let host = host_with(used_before).await;
    let groups = groups_of(&host, 1000);
    let answers: Vec<Seen> = grouped(&groups, submissions)
        .await
        .iter()
        .map(seen)
        .collect();
    assert_eq!(host.groups.load(Ordering::SeqCst), 1, "one group");
    let oracle = host_with(used_before).await;
    let expected = one_by_one(&oracle, submissions).await;
    assert_eq!(answers, expected, "grouped vs one request per transaction");
    assert_eq!(
        stored_keys(&host.pool).await,
        stored_keys(&oracle.pool).await
    );
    assert_eq!(used(&host), used(&oracle));
    answers
}

#[tokio::test]
async fn a_key_repeated_in_one_group_counts_once() {
    let submissions = [
        one("k1", 1),
        one("k2", 1),
        one("k1", 1),
        Submission::Batch(vec![event("k3", 1), event("k1", 1), event("k3", 1)]),
        one("k2", 1),
        // Past the allowance of 5: events are facts, still counted.
        one("k4", 3),
    ];
    let answers = same_as_one_by_one(0, &submissions).await;
    assert_eq!(
        answers,
        [
            Ok(vec![(true, 1)]),
            Ok(vec![(true, 2)]),
            Ok(vec![(false, 2)]),
            Ok(vec![(true, 3), (false, 3), (false, 3)]),
            Ok(vec![(false, 3)]),
            Ok(vec![(true, 6)]),
        ]
    );
}

#[tokio::test]
async fn a_meter_filling_up_mid_group_refuses_exactly_the_requests_past_it() {
    const BIG: u64 = 1_000_000_000_000;
    // Room for exactly 2 × BIG + 5 more units this period.
    let before = MAX_USAGE - 2 * BIG - 5;
    let submissions = [
        one("a", BIG),
        // Its second event does not fit: the batch fails whole, and its
        // first event's 10 units are given back to the requests after it.
        Submission::Batch(vec![event("b0", 10), event("b1", BIG)]),
        one("c", BIG),
        one("d", 6),
        one("e", 5),
        one("f", 1),
    ];
    let answers = same_as_one_by_one(before, &submissions).await;
    let counted: Vec<bool> = answers.iter().map(Result::is_ok).collect();
    assert_eq!(
        counted,
        [true, false, true, false, true, false],
        "{answers:?}"
    );
    assert_eq!(answers[2], Ok(vec![(true, MAX_USAGE - 5)]));
    assert_eq!(answers[4], Ok(vec![(true, MAX_USAGE)]));
    let refusal = answers[1].as_ref().expect_err("batch refused");
    assert!(refusal.starts_with("Invalid(\"events[1]: "), "{refusal}");
    let refusal = answers[3].as_ref().expect_err("d refused");
    assert!(refusal.starts_with("Invalid(\"meter "), "{refusal}");
}

#[tokio::test]
async fn keys_the_database_knows_and_the_engine_forgot_are_told_apart_exactly() {
    let host = host_with(0).await;
    let oracle = host_with(0).await;
    // Recorded before a restart: the database has them, the engine does not.
    for pool in [&host.pool, &oracle.pool] {
        for key in ["old-1", "old-2"] {
            let mut conn = pool.acquire().await.expect("connection");
            usage_db::record_event(&mut conn, MODULE, METER, period(), key, 1, now())
                .await
                .expect("seed");
        }
    }
    let submissions = [
        one("new-1", 1),
        one("old-1", 1),
        one("new-2", 2),
        Submission::Batch(vec![event("new-3", 1), event("old-2", 1)]),
        one("new-2", 2),
    ];
    let groups = groups_of(&host, 1000);
    let answers: Vec<Seen> = grouped(&groups, &submissions)
        .await
        .iter()
        .map(seen)
        .collect();
    assert_eq!(host.groups.load(Ordering::SeqCst), 1);
    // The engine counts from what it loaded (0 here): the old keys are
    // not counted, and the events after them do not carry their units.
    assert_eq!(
        answers,
        [
            Ok(vec![(true, 1)]),
            Ok(vec![(false, 1)]),
            Ok(vec![(true, 3)]),
            Ok(vec![(true, 4), (false, 4)]),
            Ok(vec![(false, 4)]),
        ]
    );
    assert_eq!(answers, one_by_one(&oracle, &submissions).await);
    assert_eq!(used(&host), 4);
    assert_eq!(
        stored_keys(&host.pool).await,
        stored_keys(&oracle.pool).await
    );
    assert_eq!(stored_keys(&host.pool).await.len(), 5);
}

#[tokio::test]
async fn keys_with_a_nul_character_stay_apart_from_their_prefix() {
    let answers = same_as_one_by_one(
        0,
        &[one("a\0b", 1), one("a", 1), one("a\0c", 1), one("a\0b", 1)],
    )
    .await;
    assert_eq!(
        answers,
        [
            Ok(vec![(true, 1)]),
            Ok(vec![(true, 2)]),
            Ok(vec![(true, 3)]),
            Ok(vec![(false, 3)]),
        ]
    );
}

#[tokio::test]
async fn a_request_for_a_module_not_installed_fails_alone_and_modules_are_prepared_once() {
    let other = |key: &str| UsageEvent {
        module: "other".to_owned(),
        ..event(key, 1)
    };
    let submissions = [
        one("k1", 1),
        Submission::One(other("x")),
        Submission::Batch(vec![event("k2", 1), other("y")]),
        one("k3", 1),
        Submission::One(other("z")),
    ];
    let answers = same_as_one_by_one(0, &submissions).await;
    assert_eq!(answers[0], Ok(vec![(true, 1)]));
    assert!(
        answers[1]
            .as_ref()
            .is_err_and(|e| e.starts_with("NotFound"))
    );
    assert!(
        answers[2]
            .as_ref()
            .is_err_and(|e| e.starts_with("NotFound"))
    );
    assert_eq!(answers[3], Ok(vec![(true, 2)]));
    let host = host_with(0).await;
    let groups = groups_of(&host, 1000);
    grouped(&groups, &submissions).await;
    let mut prepared = lock(&host.prepared).clone();
    prepared.sort();
    assert_eq!(prepared, ["cards", "other"], "each module once per group");
}

#[tokio::test]
async fn a_failed_commit_answers_every_request_with_the_error_and_gives_every_event_back() {
    let host = host_with(0).await;
    // A deferred foreign key is checked at COMMIT: every usage event
    // inserted makes the commit fail.
    for statement in [
        "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        "CREATE TRIGGER refuse_commit AFTER INSERT ON _souk_usage_events \
         BEGIN INSERT INTO child VALUES (1); END",
    ] {
        sqlx::query(statement)
            .execute(&host.pool)
            .await
            .expect("set up");
    }
    let groups = groups_of(&host, 1000);
    let submissions = [
        one("k1", 1),
        one("k2", 2),
        one("k1", 1),
        Submission::Batch(vec![event("k3", 1), event("k4", 1)]),
    ];
    let answers = grouped(&groups, &submissions).await;
    assert_eq!(host.groups.load(Ordering::SeqCst), 1);
    for answer in &answers {
        let error = answer.as_ref().expect_err("the commit failed");
        assert!(matches!(error, SoukError::Internal(_)), "{error:?}");
        assert!(
            format!("{error:#}").contains("FOREIGN KEY constraint failed"),
            "{error:#}"
        );
    }
    assert_eq!(used(&host), 0, "every event given back");
    assert!(stored_keys(&host.pool).await.is_empty());
    // The engine forgot the keys: once the database takes them, they count.
    sqlx::query("DROP TRIGGER refuse_commit")
        .execute(&host.pool)
        .await
        .expect("drop trigger");
    let answers: Vec<Seen> = grouped(&groups, &submissions)
        .await
        .iter()
        .map(seen)
        .collect();
    assert_eq!(
        answers,
        [
            Ok(vec![(true, 1)]),
            Ok(vec![(true, 3)]),
            Ok(vec![(false, 3)]),
            Ok(vec![(true, 4), (true, 5)]),
        ]
    );
}

#[tokio::test]
async fn a_group_takes_requests_while_their_events_fit_and_never_splits_one() {
    let host = host_with(0).await;
    let groups = groups_of(&host, 3);
    let submissions = [
        one("a", 1),
        Submission::Batch(vec![event("b", 1), event("c", 1)]),
        Submission::Batch(vec![
            event("d", 1),
            event("e", 1),
            event("f", 1),
            event("g", 1),
        ]),
        one("h", 1),
        one("i", 1),
    ];
    let answers: Vec<Seen> = grouped(&groups, &submissions)
        .await
        .iter()
        .map(seen)
        .collect();
    // [a, b c], [d e f g] (larger than a group, alone), [h, i].
    assert_eq!(host.groups.load(Ordering::SeqCst), 3);
    assert_eq!(
        answers,
        [
            Ok(vec![(true, 1)]),
            Ok(vec![(true, 2), (true, 3)]),
            Ok(vec![(true, 4), (true, 5), (true, 6), (true, 7)]),
            Ok(vec![(true, 8)]),
            Ok(vec![(true, 9)]),
        ]
    );
    // The writer retired with its queue empty; the next request starts one.
    assert!(lock(&groups.shared.queues).is_empty());
    grouped(&groups, &[one("j", 1)]).await;
    assert_eq!(host.groups.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_host_gone_answers_without_recording() {
    let host = host_with(0).await;
    let groups = groups_of(&host, 1000);
    drop(host);
    let answers = grouped(&groups, &[one("k", 1)]).await;
    let error = answers[0].as_ref().expect_err("no host");
    assert!(format!("{error:#}").contains("shutting down"), "{error:#}");
}
