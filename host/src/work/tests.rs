use time::OffsetDateTime;

use super::{WorkHints, WorkKind, WorkMarks};

/// 2026-12-06 12:00 UTC.
const NOW: OffsetDateTime = match OffsetDateTime::from_unix_timestamp(1_796_558_400) {
    Ok(at) => at,
    Err(_) => panic!("a valid instant"),
};

fn marks(kinds: &[WorkKind]) -> WorkMarks {
    let mut marks = WorkMarks::default();
    for kind in kinds {
        marks.mark(*kind);
    }
    marks
}

#[test]
fn marks_hold_the_kinds_marked() {
    let m = marks(&[WorkKind::Jobs, WorkKind::Events]);
    assert_eq!(
        m.kinds().collect::<Vec<_>>(),
        vec![WorkKind::Events, WorkKind::Jobs]
    );
    assert!(!m.is_empty());
    assert!(WorkMarks::default().is_empty());
}

#[tokio::test]
async fn a_mark_is_due_until_a_pass_settles_it() {
    let hints = WorkHints::in_memory().await.unwrap();
    hints
        .mark("t1", marks(&[WorkKind::Email]), NOW)
        .await
        .map(drop)
        .unwrap();
    assert!(hints.due(WorkKind::Jobs, NOW).is_empty());
    let due = hints.due(WorkKind::Email, NOW);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].tenant_id, "t1");
    hints
        .settle("t1", WorkKind::Email, due[0].seq, None)
        .await
        .map(drop)
        .unwrap();
    assert!(hints.due(WorkKind::Email, NOW).is_empty());
    assert_eq!(hints.next_due(WorkKind::Email), None);
}

#[tokio::test]
async fn a_mark_during_a_pass_keeps_the_hint() {
    let hints = WorkHints::in_memory().await.unwrap();
    let m = marks(&[WorkKind::Jobs]);
    drop(hints.mark("t1", m, NOW).await.unwrap());
    let seen = hints.due(WorkKind::Jobs, NOW)[0].seq;
    // The worker reads the queue (empty), then a call queues a job and
    // marks before the worker settles.
    drop(hints.mark("t1", m, NOW).await.unwrap());
    hints
        .settle("t1", WorkKind::Jobs, seen, None)
        .await
        .map(drop)
        .unwrap();
    assert_eq!(hints.due(WorkKind::Jobs, NOW).len(), 1);
}

#[tokio::test]
async fn a_retry_is_due_at_its_backoff() {
    let hints = WorkHints::in_memory().await.unwrap();
    hints
        .mark("t1", marks(&[WorkKind::Events]), NOW)
        .await
        .map(drop)
        .unwrap();
    let seen = hints.due(WorkKind::Events, NOW)[0].seq;
    let later = NOW + time::Duration::minutes(5);
    hints
        .settle("t1", WorkKind::Events, seen, Some(later))
        .await
        .map(drop)
        .unwrap();
    assert!(hints.due(WorkKind::Events, NOW).is_empty());
    assert_eq!(hints.next_due(WorkKind::Events), Some(later));
    assert_eq!(hints.due(WorkKind::Events, later).len(), 1);
    // New work makes it due now again.
    hints
        .mark("t1", marks(&[WorkKind::Events]), NOW)
        .await
        .map(drop)
        .unwrap();
    assert_eq!(hints.due(WorkKind::Events, NOW).len(), 1);
}

#[tokio::test]
async fn hints_survive_a_restart_and_another_process_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let first = WorkHints::open(dir.path()).await.unwrap();
    first
        .mark("t1", marks(&[WorkKind::Jobs]), NOW)
        .await
        .map(drop)
        .unwrap();
    // A second process (the CLI) marks another tenant.
    let other = WorkHints::open(dir.path()).await.unwrap();
    other
        .mark("t2", marks(&[WorkKind::Jobs]), NOW)
        .await
        .map(drop)
        .unwrap();
    assert_eq!(other.due(WorkKind::Jobs, NOW).len(), 2);
    first.refresh().await.unwrap();
    let due = first.due(WorkKind::Jobs, NOW);
    assert_eq!(due.len(), 2, "{due:?}");

    // The other process renews t1's hint after `first` read it: `first`
    // must not remove it.
    let seen = due.iter().find(|d| d.tenant_id == "t1").unwrap().seq;
    other
        .mark(
            "t1",
            marks(&[WorkKind::Jobs]),
            NOW - time::Duration::minutes(1),
        )
        .await
        .map(drop)
        .unwrap();
    first
        .settle("t1", WorkKind::Jobs, seen, None)
        .await
        .map(drop)
        .unwrap();
    first.refresh().await.unwrap();
    assert_eq!(first.due(WorkKind::Jobs, NOW).len(), 2);

    drop(first);
    drop(other);
    let reopened = WorkHints::open(dir.path()).await.unwrap();
    assert_eq!(reopened.due(WorkKind::Jobs, NOW).len(), 2);
}

#[tokio::test]
async fn a_wake_is_kept_until_the_worker_waits() {
    let hints = WorkHints::in_memory().await.unwrap();
    hints.wake(WorkKind::Email);
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        hints.woken(WorkKind::Email),
    )
    .await
    .expect("a wake before the wait is not lost");
}

#[tokio::test]
async fn an_open_transaction_keeps_its_hint_and_its_end_wakes_the_worker() {
    let hints = WorkHints::in_memory().await.unwrap();
    let marked = hints
        .mark("t1", marks(&[WorkKind::Jobs]), NOW)
        .await
        .unwrap();
    // A worker's pass runs while the transaction is still open: it finds
    // no committed job and must not remove the hint.
    let seen = hints.due(WorkKind::Jobs, NOW)[0].seq;
    hints
        .settle("t1", WorkKind::Jobs, seen, None)
        .await
        .unwrap();
    assert_eq!(hints.due(WorkKind::Jobs, NOW).len(), 1);
    // The commit: the guard drops, the worker wakes and the next pass
    // (a new sequence) may settle.
    drop(marked);
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        hints.woken(WorkKind::Jobs),
    )
    .await
    .expect("the end of a marked transaction wakes the worker");
    let seen_after = hints.due(WorkKind::Jobs, NOW)[0].seq;
    assert_ne!(seen, seen_after);
    hints
        .settle("t1", WorkKind::Jobs, seen_after, None)
        .await
        .unwrap();
    assert!(hints.due(WorkKind::Jobs, NOW).is_empty());
}
