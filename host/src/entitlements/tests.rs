use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use time::{Date, Duration, Month, OffsetDateTime};

use super::*;

const TENANT: &str = "acme";
const MODULE: &str = "digital-card";

fn day(year: i32, month: u8, day: u8) -> OffsetDateTime {
    let month = Month::try_from(month).unwrap();
    Date::from_calendar_date(year, month, day)
        .unwrap()
        .midnight()
        .assume_utc()
}

fn march() -> Period {
    Period {
        start: day(2026, 3, 1),
        end: day(2026, 4, 1),
    }
}

fn engine() -> EntitlementEngine {
    EntitlementEngine::new()
}

/// The Digital Card free plan, with pro named as the upgrade for everything
/// free lacks.
fn free(state: AccessState) -> Grant {
    let mut grant = Grant::new(state, Some("free"));
    grant.features.insert("create_cards".into());
    grant.features.insert("qr_codes".into());
    grant.limits.insert("max_cards".into(), Some(100));
    grant.limits.insert("max_templates".into(), Some(3));
    grant.meters.insert(
        "qr_scans_per_month".into(),
        MeterAllowance {
            per_period: Some(1_000),
            period: march(),
            interval: ResetInterval::Month,
        },
    );
    grant
        .upgrades
        .insert("custom_branding".into(), "pro".into());
    grant.upgrades.insert("max_cards".into(), "pro".into());
    grant
        .upgrades
        .insert("qr_scans_per_month".into(), "pro".into());
    grant
}

fn pro(state: AccessState) -> Grant {
    let mut grant = free(state);
    grant.plan = Some("pro".into());
    grant.features.insert("custom_branding".into());
    grant.limits.insert("max_cards".into(), Some(1_000));
    grant.limits.insert("max_templates".into(), Some(20));
    grant.upgrades.clear();
    grant
        .upgrades
        .insert("white_label".into(), "business".into());
    grant
}

fn denial_of(decision: Decision) -> Denial {
    match decision {
        Decision::Denied(denial) => denial,
        Decision::Allowed => panic!("expected a denial, got Allowed"),
    }
}

#[test]
fn feature_in_plan_is_allowed() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    assert_eq!(
        engine.check_feature(TENANT, MODULE, "qr_codes"),
        Decision::Allowed
    );
}

#[test]
fn feature_not_in_plan_is_denied_naming_the_upgrade_plan() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    let denial = denial_of(engine.check_feature(TENANT, MODULE, "custom_branding"));
    assert_eq!(denial.reason, DenialReason::FeatureNotInPlan);
    assert_eq!(denial.reason.code(), "feature_not_in_plan");
    assert_eq!(denial.plan.as_deref(), Some("free"));
    assert_eq!(denial.upgrade_plan.as_deref(), Some("pro"));
    assert_eq!(denial.key, "custom_branding");
}

#[test]
fn unknown_tenant_is_denied_with_no_subscription() {
    let engine = engine();
    let denial = denial_of(engine.check_feature("nobody", MODULE, "qr_codes"));
    assert_eq!(denial.reason, DenialReason::NoSubscription);
    let denial = engine
        .consume("nobody", MODULE, "max_cards", 1, None)
        .unwrap_err();
    assert_eq!(denial.reason, DenialReason::NoSubscription);
}

#[test]
fn quantity_check_allows_up_to_the_limit_and_reports_used_and_limit_beyond() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    engine
        .consume(TENANT, MODULE, "max_cards", 60, None)
        .unwrap();
    assert!(
        engine
            .check_limit(TENANT, MODULE, "max_cards", 40)
            .is_allowed()
    );
    let denial = denial_of(engine.check_limit(TENANT, MODULE, "max_cards", 50));
    assert_eq!(denial.reason, DenialReason::LimitReached);
    assert_eq!((denial.used, denial.limit), (Some(60), Some(100)));
    assert_eq!(denial.upgrade_plan.as_deref(), Some("pro"));
    // A check reserves nothing.
    assert_eq!(
        engine.snapshot(TENANT, MODULE).unwrap().counters["max_cards"].used,
        60
    );
}

#[test]
fn unlimited_limit_allows_any_quantity() {
    let engine = engine();
    let mut grant = free(AccessState::Active);
    grant.limits.insert("max_templates".into(), None);
    engine.replace_grant(TENANT, MODULE, grant);
    assert!(
        engine
            .check_limit(TENANT, MODULE, "max_templates", u64::MAX)
            .is_allowed()
    );
    let usage = engine
        .consume(TENANT, MODULE, "max_templates", 1_000_000, None)
        .unwrap();
    assert_eq!(
        usage,
        Usage {
            used: 1_000_000,
            limit: None
        }
    );
}

#[test]
fn consume_takes_units_and_release_gives_them_back() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    let usage = engine
        .consume(TENANT, MODULE, "max_templates", 3, None)
        .unwrap();
    assert_eq!(
        usage,
        Usage {
            used: 3,
            limit: Some(3)
        }
    );
    let denial = engine
        .consume(TENANT, MODULE, "max_templates", 1, None)
        .unwrap_err();
    assert_eq!(denial.reason, DenialReason::LimitReached);
    assert_eq!((denial.used, denial.limit), (Some(3), Some(3)));
    let usage = engine
        .release(TENANT, MODULE, "max_templates", 1, None)
        .unwrap();
    assert_eq!(usage.used, 2);
    assert!(
        engine
            .consume(TENANT, MODULE, "max_templates", 1, None)
            .is_ok()
    );
    // Releasing more than is held stops at zero.
    let usage = engine
        .release(TENANT, MODULE, "max_templates", 10, None)
        .unwrap();
    assert_eq!(usage.used, 0);
}

#[test]
fn consume_and_release_with_the_same_idempotency_key_apply_once() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    engine
        .consume(TENANT, MODULE, "max_cards", 1, Some("card-1"))
        .unwrap();
    let again = engine
        .consume(TENANT, MODULE, "max_cards", 1, Some("card-1"))
        .unwrap();
    assert_eq!(again.used, 1);
    engine
        .release(TENANT, MODULE, "max_cards", 1, Some("delete-card-1"))
        .unwrap();
    let again = engine
        .release(TENANT, MODULE, "max_cards", 1, Some("delete-card-1"))
        .unwrap();
    assert_eq!(again.used, 0);
}

#[test]
fn parallel_consumers_never_exceed_the_limit() {
    let engine = Arc::new(engine());
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    let granted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let engine = Arc::clone(&engine);
            let granted = Arc::clone(&granted);
            std::thread::spawn(move || {
                for _ in 0..1_000 {
                    if engine.consume(TENANT, MODULE, "max_cards", 1, None).is_ok() {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(granted.load(Ordering::Relaxed), 100);
    assert_eq!(
        engine.snapshot(TENANT, MODULE).unwrap().counters["max_cards"].used,
        100
    );
}

#[test]
fn parallel_consumers_with_idempotency_keys_never_exceed_the_limit() {
    let engine = Arc::new(engine());
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    let granted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..16)
        .map(|thread| {
            let engine = Arc::clone(&engine);
            let granted = Arc::clone(&granted);
            std::thread::spawn(move || {
                for attempt in 0..200 {
                    let key = format!("{thread}-{attempt}");
                    if engine
                        .consume(TENANT, MODULE, "max_cards", 1, Some(&key))
                        .is_ok()
                    {
                        granted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(granted.load(Ordering::Relaxed), 100);
}

#[test]
fn usage_event_with_the_same_idempotency_key_counts_once() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    let at = day(2026, 3, 10);
    let first = engine
        .record_usage(TENANT, MODULE, "qr_scans_per_month", 5, "scan-1", at)
        .unwrap();
    let again = engine
        .record_usage(TENANT, MODULE, "qr_scans_per_month", 5, "scan-1", at)
        .unwrap();
    assert!(first.counted);
    assert!(!again.counted);
    assert_eq!(again.used, 5);
    let other = engine
        .record_usage(TENANT, MODULE, "qr_scans_per_month", 2, "scan-2", at)
        .unwrap();
    assert_eq!(other.used, 7);
    assert_eq!(other.allowance, Some(1_000));
}

#[test]
fn usage_is_attributed_per_tenant_module_and_meter() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    engine.replace_grant("globex", MODULE, free(AccessState::Active));
    let at = day(2026, 3, 10);
    engine
        .record_usage(TENANT, MODULE, "qr_scans_per_month", 3, "k", at)
        .unwrap();
    // The same key for another tenant is a different event.
    let other = engine
        .record_usage("globex", MODULE, "qr_scans_per_month", 4, "k", at)
        .unwrap();
    assert!(other.counted);
    assert_eq!(other.used, 4);
    let err = engine
        .record_usage(TENANT, MODULE, "api_calls", 1, "k", at)
        .unwrap_err();
    assert_eq!(
        err,
        UsageError::UnknownKey {
            key: "api_calls".into()
        }
    );
}

#[test]
fn meter_resets_when_the_period_rolls_over() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    let meter = "qr_scans_per_month";
    engine
        .record_usage(TENANT, MODULE, meter, 1_000, "march-1", day(2026, 3, 31))
        .unwrap();
    let denial = denial_of(engine.check_meter(TENANT, MODULE, meter, 1, day(2026, 3, 31)));
    assert_eq!(denial.reason, DenialReason::LimitReached);
    assert_eq!((denial.used, denial.limit), (Some(1_000), Some(1_000)));
    // Once April starts, the allowance is whole again even before any event.
    assert!(
        engine
            .check_meter(TENANT, MODULE, meter, 1, day(2026, 4, 1))
            .is_allowed()
    );
    let april = engine
        .record_usage(TENANT, MODULE, meter, 2, "april-1", day(2026, 4, 2))
        .unwrap();
    assert_eq!(april.used, 2);
    assert_eq!(
        april.period,
        Period {
            start: day(2026, 4, 1),
            end: day(2026, 5, 1)
        }
    );
    // Keys are per period: March's key counts again in April.
    let reused = engine
        .record_usage(TENANT, MODULE, meter, 1, "march-1", day(2026, 4, 3))
        .unwrap();
    assert!(reused.counted);
    // A late March event is refused rather than added to April.
    let late = engine
        .record_usage(TENANT, MODULE, meter, 1, "late", day(2026, 3, 30))
        .unwrap_err();
    assert!(matches!(late, UsageError::BeforeCurrentPeriod { .. }));
}

#[test]
fn downgrade_keeps_usage_and_blocks_only_new_increments() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, pro(AccessState::Active));
    engine
        .consume(TENANT, MODULE, "max_cards", 150, None)
        .unwrap();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));

    let denial = engine
        .consume(TENANT, MODULE, "max_cards", 1, None)
        .unwrap_err();
    assert_eq!(denial.reason, DenialReason::LimitReached);
    assert_eq!((denial.used, denial.limit), (Some(150), Some(100)));
    assert_eq!(denial.upgrade_plan.as_deref(), Some("pro"));
    // Nothing deleted: the 150 cards are still counted, and reading them is fine.
    let view = engine.usage_view(TENANT, MODULE, day(2026, 3, 5)).unwrap();
    let cards = view.iter().find(|line| line.key == "max_cards").unwrap();
    assert_eq!((cards.used, cards.limit), (150, Some(100)));
    assert_eq!(cards.percent, Some(150.0));
    // Deleting cards still works, and new ones are allowed once under the limit.
    engine
        .release(TENANT, MODULE, "max_cards", 51, None)
        .unwrap();
    assert!(engine.consume(TENANT, MODULE, "max_cards", 1, None).is_ok());
    assert!(
        engine
            .consume(TENANT, MODULE, "max_cards", 1, None)
            .is_err()
    );
}

#[test]
fn downgrade_dropping_a_limit_keeps_its_usage_for_a_later_upgrade() {
    let engine = engine();
    let mut business = pro(AccessState::Active);
    business.limits.insert("max_webhooks".into(), Some(10));
    engine.replace_grant(TENANT, MODULE, business.clone());
    engine
        .consume(TENANT, MODULE, "max_webhooks", 4, None)
        .unwrap();
    engine.replace_grant(TENANT, MODULE, pro(AccessState::Active));
    let denial = engine
        .consume(TENANT, MODULE, "max_webhooks", 1, None)
        .unwrap_err();
    assert_eq!(denial.reason, DenialReason::FeatureNotInPlan);
    engine.replace_grant(TENANT, MODULE, business);
    assert_eq!(
        engine
            .consume(TENANT, MODULE, "max_webhooks", 1, None)
            .unwrap()
            .used,
        5
    );
}

#[test]
fn trial_ended_past_due_and_expired_deny_with_their_reason_and_the_plan_to_pay_for() {
    let engine = engine();
    for (state, reason) in [
        (AccessState::TrialEnded, DenialReason::TrialEnded),
        (AccessState::PastDue, DenialReason::PastDue),
        (AccessState::Expired, DenialReason::Expired),
        (AccessState::None, DenialReason::NoSubscription),
    ] {
        engine.replace_grant(TENANT, MODULE, pro(state));
        let denial = denial_of(engine.check_feature(TENANT, MODULE, "custom_branding"));
        assert_eq!(denial.reason, reason, "{state:?}");
        assert_eq!(denial.upgrade_plan.as_deref(), Some("pro"), "{state:?}");
        let denial = engine
            .consume(TENANT, MODULE, "max_cards", 1, None)
            .unwrap_err();
        assert_eq!(denial.reason, reason, "{state:?}");
        let denial =
            denial_of(engine.check_meter(TENANT, MODULE, "qr_scans_per_month", 1, day(2026, 3, 2)));
        assert_eq!(denial.reason, reason, "{state:?}");
    }
}

#[test]
fn grace_trial_and_cancel_at_period_end_keep_access() {
    let engine = engine();
    for state in [
        AccessState::Trialing,
        AccessState::PastDueInGrace,
        AccessState::CanceledUntilPeriodEnd,
    ] {
        engine.replace_grant(TENANT, MODULE, pro(state));
        assert!(
            engine
                .check_feature(TENANT, MODULE, "custom_branding")
                .is_allowed(),
            "{state:?}"
        );
    }
}

#[test]
fn lapsed_subscription_still_releases_units() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    engine
        .consume(TENANT, MODULE, "max_cards", 2, None)
        .unwrap();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Expired));
    assert_eq!(
        engine
            .release(TENANT, MODULE, "max_cards", 1, None)
            .unwrap()
            .used,
        1
    );
}

#[test]
fn cached_decisions_reflect_replace_grant_immediately() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    assert!(
        !engine
            .check_feature(TENANT, MODULE, "custom_branding")
            .is_allowed()
    );
    assert!(
        !engine
            .check_limit(TENANT, MODULE, "max_cards", 500)
            .is_allowed()
    );
    engine.replace_grant(TENANT, MODULE, pro(AccessState::Active));
    assert!(
        engine
            .check_feature(TENANT, MODULE, "custom_branding")
            .is_allowed()
    );
    assert!(
        engine
            .check_limit(TENANT, MODULE, "max_cards", 500)
            .is_allowed()
    );
    engine.replace_grant(TENANT, MODULE, pro(AccessState::PastDue));
    let denial = denial_of(engine.check_feature(TENANT, MODULE, "custom_branding"));
    assert_eq!(denial.reason, DenialReason::PastDue);
}

#[test]
fn forgotten_usage_saved_by_the_caller_comes_back_with_the_next_grant() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    engine
        .consume(TENANT, MODULE, "max_cards", 7, Some("batch-1"))
        .unwrap();
    engine
        .record_usage(
            TENANT,
            MODULE,
            "qr_scans_per_month",
            9,
            "s1",
            day(2026, 3, 3),
        )
        .unwrap();
    let saved = engine.snapshot(TENANT, MODULE).unwrap();
    engine.forget(TENANT, MODULE);
    let denial = denial_of(engine.check_feature(TENANT, MODULE, "qr_codes"));
    assert_eq!(denial.reason, DenialReason::NoSubscription);

    engine.replace_grant_with_usage(TENANT, MODULE, free(AccessState::Active), saved);
    // Usage and idempotency keys came back from what was saved.
    assert_eq!(
        engine
            .consume(TENANT, MODULE, "max_cards", 7, Some("batch-1"))
            .unwrap()
            .used,
        7
    );
    let again = engine
        .record_usage(
            TENANT,
            MODULE,
            "qr_scans_per_month",
            9,
            "s1",
            day(2026, 3, 4),
        )
        .unwrap();
    assert!(!again.counted);
    assert_eq!(again.used, 9);
}

#[test]
fn seen_keys_are_bounded_and_forget_the_oldest_first() {
    let engine = EntitlementEngine::with_max_seen_keys(2);
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    let meter = "qr_scans_per_month";
    let at = day(2026, 3, 3);
    for key in ["a", "b", "c"] {
        engine
            .record_usage(TENANT, MODULE, meter, 1, key, at)
            .unwrap();
    }
    let snapshot = engine.snapshot(TENANT, MODULE).unwrap();
    assert_eq!(
        snapshot.meters[meter].seen_keys,
        vec!["b".to_owned(), "c".to_owned()]
    );
    // "c" is still remembered; "a" was forgotten and counts again.
    assert!(
        !engine
            .record_usage(TENANT, MODULE, meter, 1, "c", at)
            .unwrap()
            .counted
    );
    assert!(
        engine
            .record_usage(TENANT, MODULE, meter, 1, "a", at)
            .unwrap()
            .counted
    );
}

#[test]
fn usage_view_lists_counts_and_meters_with_percent_and_period() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    engine
        .consume(TENANT, MODULE, "max_cards", 25, None)
        .unwrap();
    engine
        .record_usage(
            TENANT,
            MODULE,
            "qr_scans_per_month",
            250,
            "s",
            day(2026, 3, 3),
        )
        .unwrap();

    let view = engine.usage_view(TENANT, MODULE, day(2026, 3, 4)).unwrap();
    let keys: Vec<_> = view
        .iter()
        .map(|line| (line.kind, line.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (UsageKind::Count, "max_cards"),
            (UsageKind::Count, "max_templates"),
            (UsageKind::Meter, "qr_scans_per_month"),
        ]
    );
    assert_eq!(
        (view[0].used, view[0].limit, view[0].percent),
        (25, Some(100), Some(25.0))
    );
    assert_eq!(
        (view[2].used, view[2].percent, view[2].period),
        (250, Some(25.0), Some(march()))
    );

    // Viewed in April, the meter shows the new, empty period.
    let view = engine
        .usage_view(TENANT, MODULE, day(2026, 4, 2) + Duration::hours(1))
        .unwrap();
    assert_eq!(view[2].used, 0);
    assert_eq!(view[2].period.map(|p| p.start), Some(day(2026, 4, 1)));
    assert!(
        engine
            .usage_view("nobody", MODULE, day(2026, 4, 2))
            .is_none()
    );
}

#[test]
fn denial_message_names_usage_and_upgrade() {
    let engine = engine();
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    engine
        .consume(TENANT, MODULE, "max_cards", 100, None)
        .unwrap();
    let denial = engine
        .consume(TENANT, MODULE, "max_cards", 1, None)
        .unwrap_err();
    assert_eq!(
        denial.to_string(),
        "`max_cards` denied: limit_reached (100 of 100 used); plan `pro` allows it"
    );
}

#[test]
fn undo_restores_usage_and_forgets_the_idempotency_key() {
    let engine = EntitlementEngine::new();
    engine.replace_grant_with_usage(
        "acme",
        "cards",
        free(AccessState::Active),
        StoredUsage::default(),
    );
    engine
        .consume("acme", "cards", "max_cards", 5, Some("k1"))
        .unwrap();
    engine.undo_counter("acme", "cards", "max_cards", 5, Some("k1"));
    let usage = engine
        .consume("acme", "cards", "max_cards", 1, Some("k1"))
        .unwrap();
    assert_eq!(usage.used, 1, "the key applies again after the undo");
    engine
        .release("acme", "cards", "max_cards", 1, Some("r1"))
        .unwrap();
    engine.undo_counter("acme", "cards", "max_cards", -1, Some("r1"));
    assert_eq!(
        engine.check_limit("acme", "cards", "max_cards", 99),
        Decision::Allowed
    );
    assert!(
        !engine
            .check_limit("acme", "cards", "max_cards", 100)
            .is_allowed()
    );

    let at = march().start + Duration::days(2);
    let reading = engine
        .record_usage("acme", "cards", "qr_scans_per_month", 7, "scan", at)
        .unwrap();
    engine.undo_usage(
        "acme",
        "cards",
        "qr_scans_per_month",
        7,
        reading.period,
        "scan",
    );
    let again = engine
        .record_usage("acme", "cards", "qr_scans_per_month", 7, "scan", at)
        .unwrap();
    assert!(again.counted);
    assert_eq!(again.used, 7);
}

#[test]
fn a_caller_loaded_usage_seeds_the_first_grant_only() {
    let engine = EntitlementEngine::new();
    let mut saved = StoredUsage::default();
    saved.counters.insert(
        "max_cards".into(),
        StoredCounter {
            used: 99,
            consumed_keys: vec!["old".into()],
            released_keys: Vec::new(),
        },
    );
    engine.replace_grant_with_usage("acme", "cards", free(AccessState::Active), saved.clone());
    assert!(engine.has_grant("acme", "cards"));
    assert_eq!(
        engine
            .consume("acme", "cards", "max_cards", 1, Some("old"))
            .unwrap()
            .used,
        99
    );
    assert!(
        !engine
            .check_limit("acme", "cards", "max_cards", 2)
            .is_allowed()
    );
    // Cached: a second seed is ignored, the plan still changes.
    engine.replace_grant_with_usage(
        "acme",
        "cards",
        pro(AccessState::Active),
        StoredUsage::default(),
    );
    assert_eq!(
        engine.check_limit("acme", "cards", "max_cards", 2),
        Decision::Allowed
    );
    assert_eq!(
        engine.kind_of("acme", "cards", "max_cards"),
        Some(UsageKind::Count)
    );
    assert_eq!(
        engine.kind_of("acme", "cards", "qr_scans_per_month"),
        Some(UsageKind::Meter)
    );
    assert_eq!(engine.kind_of("acme", "cards", "qr_codes"), None);
    engine.forget("acme", "cards");
    assert!(!engine.has_grant("acme", "cards"));
}

#[test]
fn access_check_gates_the_whole_module_when_the_subscription_lapses() {
    let engine = engine();
    engine.replace_grant("acme", "cards", free(AccessState::Active));
    assert_eq!(engine.check_access("acme", "cards"), Decision::Allowed);
    engine.replace_grant("acme", "cards", pro(AccessState::Expired));
    let denied = denial_of(engine.check_access("acme", "cards"));
    assert_eq!(denied.reason, DenialReason::Expired);
    assert_eq!(denied.key, "cards");
    assert_eq!(denied.upgrade_plan.as_deref(), Some("pro"));
    let denied = denial_of(engine.check_access("beta", "cards"));
    assert_eq!(denied.reason, DenialReason::NoSubscription);
}

#[test]
fn parallel_metered_events_never_exceed_the_allowance() {
    let engine = Arc::new(engine());
    engine.replace_grant("acme", "cards", free(AccessState::Active));
    let at = march().start + Duration::days(1);
    let counted = Arc::new(AtomicUsize::new(0));
    // Which keys win the 1,000 units is up to the scheduler: remember one
    // that did.
    let a_counted_key = Arc::new(std::sync::Mutex::new(None::<String>));
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let engine = engine.clone();
            let counted = counted.clone();
            let a_counted_key = a_counted_key.clone();
            scope.spawn(move || {
                for n in 0..500 {
                    let key = format!("{thread}-{n}");
                    if engine
                        .record_usage_within_allowance(
                            "acme",
                            "cards",
                            "qr_scans_per_month",
                            1,
                            &key,
                            at,
                        )
                        .is_ok()
                    {
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        a_counted_key.lock().unwrap().get_or_insert(key);
                    }
                }
            });
        }
    });
    assert_eq!(counted.load(std::sync::atomic::Ordering::Relaxed), 1_000);
    match engine.record_usage_within_allowance("acme", "cards", "qr_scans_per_month", 1, "late", at)
    {
        Err(MeterRefusal::Denied(denial)) => {
            assert_eq!(denial.reason, DenialReason::LimitReached);
            assert_eq!((denial.used, denial.limit), (Some(1_000), Some(1_000)));
            assert_eq!(denial.upgrade_plan.as_deref(), Some("pro"));
        }
        other => panic!("{other:?}"),
    }
    // A key already counted is answered, not refused.
    let counted_key = a_counted_key.lock().unwrap().clone().unwrap();
    let again = engine
        .record_usage_within_allowance("acme", "cards", "qr_scans_per_month", 1, &counted_key, at)
        .unwrap();
    assert!(!again.counted);
    // Lost access refuses before the allowance is looked at.
    engine.replace_grant("acme", "cards", free(AccessState::Expired));
    let refused =
        engine.record_usage_within_allowance("acme", "cards", "qr_scans_per_month", 1, "x", at);
    assert!(matches!(refused, Err(MeterRefusal::Denied(d)) if d.reason == DenialReason::Expired));
}

/// A grant whose `max_cards` is unlimited and whose meter is unmetered: the
/// shapes where only the host's own bounds stand between a module and an
/// overflow.
fn unlimited() -> Grant {
    let mut grant = Grant::new(AccessState::Active, Some("unlimited"));
    grant.limits.insert("max_cards".into(), None);
    grant.meters.insert(
        "qr_scans_per_month".into(),
        MeterAllowance {
            per_period: None,
            period: march(),
            interval: ResetInterval::Month,
        },
    );
    grant
}

fn seeded(counter: u64, meter: u64) -> EntitlementEngine {
    let engine = EntitlementEngine::new();
    let mut usage = StoredUsage::default();
    usage.counters.insert(
        "max_cards".into(),
        StoredCounter {
            used: counter,
            ..StoredCounter::default()
        },
    );
    usage.meters.insert(
        "qr_scans_per_month".into(),
        StoredMeter {
            period: march(),
            used: meter,
            seen_keys: Vec::new(),
        },
    );
    engine.replace_grant_with_usage(TENANT, MODULE, unlimited(), usage);
    engine
}

fn counter_of(engine: &EntitlementEngine) -> u64 {
    engine
        .usage_of(TENANT, MODULE, "max_cards", day(2026, 3, 2))
        .unwrap()
        .used
}

fn meter_of(engine: &EntitlementEngine) -> u64 {
    engine
        .usage_of(TENANT, MODULE, "qr_scans_per_month", day(2026, 3, 2))
        .unwrap()
        .used
}

#[test]
fn consumes_beyond_the_host_bounds_are_refused_even_when_unlimited() {
    let engine = seeded(0, 0);
    for quantity in [MAX_QUANTITY + 1, i64::MAX as u64, u64::MAX] {
        for key in [None, Some("k")] {
            let denial = engine
                .consume(TENANT, MODULE, "max_cards", quantity, key)
                .unwrap_err();
            assert_eq!(denial.reason, DenialReason::LimitReached, "{quantity}");
            assert_eq!(counter_of(&engine), 0);
        }
    }
    engine
        .consume(TENANT, MODULE, "max_cards", MAX_QUANTITY, None)
        .unwrap();
    assert_eq!(counter_of(&engine), MAX_QUANTITY);

    // Next to the top: the last units fit, one more does not, nothing wraps.
    let engine = seeded(MAX_USAGE - 5, 0);
    engine
        .consume(TENANT, MODULE, "max_cards", 5, None)
        .unwrap();
    assert_eq!(counter_of(&engine), MAX_USAGE);
    for quantity in [1, 2, MAX_QUANTITY] {
        assert!(
            engine
                .consume(TENANT, MODULE, "max_cards", quantity, Some("x"))
                .is_err()
        );
        assert_eq!(counter_of(&engine), MAX_USAGE);
    }
    // A key refused is not remembered: a retry after a release applies.
    engine
        .release(TENANT, MODULE, "max_cards", 1, None)
        .unwrap();
    engine
        .consume(TENANT, MODULE, "max_cards", 1, Some("x"))
        .unwrap();
    assert_eq!(counter_of(&engine), MAX_USAGE);
}

#[test]
fn usage_events_beyond_the_host_bounds_are_refused_and_change_nothing() {
    let at = day(2026, 3, 2);
    let engine = seeded(0, 0);
    for amount in [0, MAX_QUANTITY + 1, i64::MAX as u64, u64::MAX] {
        let e = engine
            .record_usage(TENANT, MODULE, "qr_scans_per_month", amount, "k", at)
            .unwrap_err();
        assert!(matches!(e, UsageError::AmountOutOfRange { .. }), "{e}");
        let e = engine
            .record_usage_within_allowance(TENANT, MODULE, "qr_scans_per_month", amount, "k", at)
            .unwrap_err();
        assert!(
            matches!(e, MeterRefusal::Usage(UsageError::AmountOutOfRange { .. })),
            "{e:?}"
        );
        assert_eq!(meter_of(&engine), 0);
    }

    let engine = seeded(0, MAX_USAGE - 10);
    engine
        .record_usage(TENANT, MODULE, "qr_scans_per_month", 10, "last", at)
        .unwrap();
    assert_eq!(meter_of(&engine), MAX_USAGE);
    let e = engine
        .record_usage(TENANT, MODULE, "qr_scans_per_month", 1, "one-more", at)
        .unwrap_err();
    assert!(matches!(e, UsageError::MeterFull { .. }), "{e}");
    let e = engine
        .record_usage_within_allowance(TENANT, MODULE, "qr_scans_per_month", 1, "one-more", at)
        .unwrap_err();
    match e {
        MeterRefusal::Denied(d) => assert_eq!(d.reason, DenialReason::LimitReached),
        other => panic!("{other:?}"),
    }
    assert_eq!(meter_of(&engine), MAX_USAGE);
    // The refused key was not remembered.
    let snapshot = engine.snapshot(TENANT, MODULE).unwrap();
    assert_eq!(snapshot.meters["qr_scans_per_month"].seen_keys, ["last"]);
}

#[test]
fn the_host_engine_starts_with_no_keys_and_bounds_what_it_remembers() {
    let engine = seeded(0, 0);
    for i in 0..HOST_MAX_SEEN_KEYS + 50 {
        engine
            .consume(TENANT, MODULE, "max_cards", 1, Some(&format!("k{i}")))
            .unwrap();
    }
    let snapshot = engine.snapshot(TENANT, MODULE).unwrap();
    assert_eq!(
        snapshot.counters["max_cards"].consumed_keys.len(),
        HOST_MAX_SEEN_KEYS
    );
}

#[test]
fn a_seeded_count_is_recorded_above_the_limit_and_blocks_consumes_until_it_fits() {
    let engine = engine();
    assert!(matches!(
        engine.seed_counter(TENANT, MODULE, "max_cards", 1),
        Err(UsageError::NoGrant { .. })
    ));
    engine.replace_grant(TENANT, MODULE, free(AccessState::Active));
    let (before, usage) = engine
        .seed_counter(TENANT, MODULE, "max_cards", 150)
        .unwrap();
    assert_eq!(before, 0);
    assert_eq!(
        usage,
        Usage {
            used: 150,
            limit: Some(100)
        }
    );
    let denial = engine
        .consume(TENANT, MODULE, "max_cards", 1, None)
        .unwrap_err();
    assert_eq!(denial.reason, DenialReason::LimitReached);
    assert_eq!(denial.used, Some(150));
    engine
        .release(TENANT, MODULE, "max_cards", 51, None)
        .unwrap();
    assert!(engine.consume(TENANT, MODULE, "max_cards", 1, None).is_ok());
    // Undone as a delta of after - before.
    engine.undo_counter(TENANT, MODULE, "max_cards", 150 - 100, None);
    assert_eq!(
        engine
            .usage_of(TENANT, MODULE, "max_cards", day(2026, 3, 2))
            .map(|l| l.used),
        Some(50)
    );
    // Seeding works whatever the access state, and creates a counter the
    // plan does not limit yet, so a later plan starts from the real count.
    engine.replace_grant(TENANT, MODULE, free(AccessState::Expired));
    let (_, usage) = engine
        .seed_counter(TENANT, MODULE, "max_members", 7)
        .unwrap();
    assert_eq!(
        usage,
        Usage {
            used: 7,
            limit: None
        }
    );
    let mut with_members = free(AccessState::Active);
    with_members.limits.insert("max_members".into(), Some(5));
    engine.replace_grant(TENANT, MODULE, with_members);
    assert_eq!(
        engine
            .usage_of(TENANT, MODULE, "max_members", day(2026, 3, 2))
            .map(|l| (l.used, l.limit)),
        Some((7, Some(5)))
    );
    assert!(matches!(
        engine.seed_counter(TENANT, MODULE, "max_cards", MAX_USAGE + 1),
        Err(UsageError::AmountOutOfRange { .. })
    ));
}
