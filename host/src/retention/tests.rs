//! Pruning on a tenant database with the host's schema, at instants chosen
//! by the test (the host clock's word, as a manual clock gives it).

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use time::OffsetDateTime;

use super::{Pruned, RetentionConfig, prune_tenant};
use crate::event_store::millis;

/// 2026-12-06T12:00:00Z.
const NOW_UNIX: i64 = 1_796_558_400;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW_UNIX).unwrap()
}

fn days_ago(days: i64) -> OffsetDateTime {
    now() - time::Duration::days(days)
}

async fn tenant_db() -> SqlitePool {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::from_str("sqlite::memory:")
                .unwrap()
                .foreign_keys(true),
        )
        .await
        .unwrap();
    crate::tenant_migrations::migrate(&pool).await.unwrap();
    pool
}

async fn ids(pool: &SqlitePool, sql: &str) -> Vec<i64> {
    sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
}

/// An event at `seq`, emitted at `at`.
async fn event(pool: &SqlitePool, seq: i64, at: OffsetDateTime, fanned_out: bool) {
    sqlx::query(
        "INSERT INTO _souk_events (seq, module, type, payload, created_at, fanned_out) \
         VALUES (?, 'm', 'thing_happened', '{}', ?, ?)",
    )
    .bind(seq)
    .bind(millis(at))
    .bind(fanned_out)
    .execute(pool)
    .await
    .unwrap();
}

async fn webhook(pool: &SqlitePool, id: i64, seq: i64, status: &str, at: OffsetDateTime) {
    let finished = (status != "pending").then_some(millis(at));
    sqlx::query(
        "INSERT INTO _souk_webhook_deliveries \
         (id, endpoint_id, module, event_seq, status, window_start, created_at, delivered_at) \
         VALUES (?, 'wh_1', 'm', ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(seq)
    .bind(status)
    .bind(millis(at))
    .bind(millis(at))
    .bind(finished)
    .execute(pool)
    .await
    .unwrap();
}

async fn subscriber(pool: &SqlitePool, name: &str, seq: i64, status: &str, at: OffsetDateTime) {
    let finished = (status != "pending").then_some(millis(at));
    sqlx::query(
        "INSERT INTO _souk_event_deliveries (subscriber, event_seq, status, created_at, finished_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(name)
    .bind(seq)
    .bind(status)
    .bind(millis(at))
    .bind(finished)
    .execute(pool)
    .await
    .unwrap();
}

async fn mail(pool: &SqlitePool, seq: i64, status: &str, finished: Option<OffsetDateTime>) {
    sqlx::query(
        "INSERT INTO _souk_mail (seq, id, kind, module, to_user, to_address, to_name, subject, \
         text_body, html_body, status, queued_at, next_attempt_at, finished_at) \
         VALUES (?, ?, 'module', 'm', 'u', 'a@example.test', 'A', 'Hi', \
         'your link: https://x/invite/secret', '<p>secret</p>', ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(format!("m_{seq}"))
    .bind(status)
    .bind(days_ago(60).unix_timestamp())
    .bind(days_ago(60).unix_timestamp())
    .bind(finished.map(OffsetDateTime::unix_timestamp))
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn old_finished_delivery_logs_go_and_then_the_events_no_row_names() {
    let pool = tenant_db().await;
    // 1: delivered to a webhook 40 days ago; 2: failed to a subscriber 40
    // days ago; 3: delivered 10 days ago (kept: within 30 days); 4: still
    // pending after 40 days (kept); 5: fanned out to nobody, 2 hours ago;
    // 6: not fanned out yet; 7: the newest, fanned out to nobody.
    for seq in 1..=4 {
        event(&pool, seq, days_ago(40), true).await;
    }
    event(&pool, 5, now() - time::Duration::hours(2), true).await;
    event(&pool, 6, days_ago(40), false).await;
    event(&pool, 7, now() - time::Duration::hours(3), true).await;
    webhook(&pool, 1, 1, "delivered", days_ago(40)).await;
    subscriber(&pool, "other", 2, "failed", days_ago(40)).await;
    webhook(&pool, 2, 3, "delivered", days_ago(10)).await;
    webhook(&pool, 3, 4, "pending", days_ago(40)).await;

    let pruned = prune_tenant(&pool, now(), &RetentionConfig::default())
        .await
        .unwrap();
    assert_eq!(
        pruned,
        Pruned {
            events: 3,
            webhook_deliveries: 1,
            module_deliveries: 1,
            mail: 0,
            mail_bodies: 0,
        }
    );
    assert_eq!(
        ids(&pool, "SELECT seq FROM _souk_events ORDER BY seq").await,
        [3, 4, 6, 7]
    );
    assert_eq!(
        ids(&pool, "SELECT id FROM _souk_webhook_deliveries ORDER BY id").await,
        [2, 3]
    );
    // A second run at the same instant finds nothing more.
    let again = prune_tenant(&pool, now(), &RetentionConfig::default())
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    // 50 days on, the pending delivery still stays, and with it its event;
    // the newest event and the newest log row stay whatever their age.
    let later = now() + time::Duration::days(50);
    prune_tenant(&pool, later, &RetentionConfig::default())
        .await
        .unwrap();
    assert_eq!(
        ids(&pool, "SELECT seq FROM _souk_events ORDER BY seq").await,
        [4, 6, 7]
    );
    assert_eq!(
        ids(&pool, "SELECT id FROM _souk_webhook_deliveries ORDER BY id").await,
        [3]
    );
}

#[tokio::test]
async fn the_newest_log_row_stays_so_keys_never_go_back() {
    let pool = tenant_db().await;
    event(&pool, 1, days_ago(40), true).await;
    event(&pool, 2, days_ago(40), true).await;
    webhook(&pool, 1, 1, "delivered", days_ago(40)).await;
    webhook(&pool, 2, 2, "delivered", days_ago(40)).await;
    prune_tenant(&pool, now(), &RetentionConfig::default())
        .await
        .unwrap();
    assert_eq!(
        ids(&pool, "SELECT id FROM _souk_webhook_deliveries").await,
        [2]
    );
    // The next row gets a key above every key the log ever showed.
    let next: i64 = sqlx::query_scalar(
        "INSERT INTO _souk_webhook_deliveries \
         (endpoint_id, module, event_seq, status, window_start, created_at) \
         VALUES ('wh_1', 'm', 2, 'pending', 0, 0) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(next, 3);
}

#[tokio::test]
async fn mail_bodies_are_emptied_after_a_day_and_mail_deleted_after_thirty() {
    let pool = tenant_db().await;
    mail(&pool, 1, "sent", Some(days_ago(31))).await;
    mail(&pool, 2, "failed", Some(days_ago(2))).await;
    mail(&pool, 3, "sent", Some(now() - time::Duration::hours(2))).await;
    mail(&pool, 4, "queued", None).await;
    mail(&pool, 5, "sent", Some(days_ago(40))).await;
    let pruned = prune_tenant(&pool, now(), &RetentionConfig::default())
        .await
        .unwrap();
    assert_eq!(pruned.mail, 1, "{pruned:?}");
    // 5 is the newest row: kept, but its body is emptied like 2's.
    assert_eq!(pruned.mail_bodies, 2, "{pruned:?}");
    let rows: Vec<(i64, String, Option<String>)> =
        sqlx::query_as("SELECT seq, text_body, html_body FROM _souk_mail ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let secret = "your link: https://x/invite/secret".to_owned();
    let html = Some("<p>secret</p>".to_owned());
    assert_eq!(
        rows,
        vec![
            (2, String::new(), None),
            (3, secret.clone(), html.clone()),
            (4, secret, html),
            (5, String::new(), None),
        ]
    );
}

#[tokio::test]
async fn a_large_backlog_goes_in_small_batches_and_a_run_stops_at_its_batch_limit() {
    let pool = tenant_db().await;
    for seq in 1..=8 {
        event(&pool, seq, days_ago(1), true).await;
    }
    let config = RetentionConfig {
        batch_rows: 2,
        max_batches: 2,
        ..RetentionConfig::default()
    };
    // Two batches of two: four events, then the run moves on.
    let first = prune_tenant(&pool, now(), &config).await.unwrap();
    assert_eq!(first.events, 4);
    assert_eq!(
        ids(&pool, "SELECT seq FROM _souk_events ORDER BY seq").await,
        [5, 6, 7, 8]
    );
    // The next run continues; the newest stays.
    let second = prune_tenant(&pool, now(), &config).await.unwrap();
    assert_eq!(second.events, 3);
    assert_eq!(ids(&pool, "SELECT seq FROM _souk_events").await, [8]);
}

#[tokio::test]
async fn a_retention_of_zero_keeps_nothing_finished_but_the_newest() {
    let pool = tenant_db().await;
    event(&pool, 1, now(), true).await;
    event(&pool, 2, now(), true).await;
    let config = RetentionConfig {
        events: Duration::ZERO,
        ..RetentionConfig::default()
    };
    let at = now() + time::Duration::milliseconds(1);
    assert_eq!(prune_tenant(&pool, at, &config).await.unwrap().events, 1);
    assert_eq!(ids(&pool, "SELECT seq FROM _souk_events").await, [2]);
}
