//! Retention through the real binary on the manual clock: sent mail loses
//! its body after a day and leaves the log after 30 days, when the
//! maintenance step runs (docs/retention.md).

use std::time::Duration;

use serde_json::{Value, json};

use crate::smtp_sink::SmtpSink;
use crate::support::Host;

const CLOCK: &str = "2027-03-01T09:00:00Z";

fn advance_hours(host: &Host, hours: i64) {
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"advance_seconds": hours * 3600}),
    );
    assert_eq!(a.status, 200, "{a:?}");
}

fn run_maintenance(host: &Host) {
    let a = host.post("/v1/maintenance/run", &host.operator, json!({}));
    assert_eq!(a.status, 200, "{a:?}");
}

/// (subject, text body) of every message in the tenant's mail table, read
/// from the tenant database itself (the API never shows bodies).
fn bodies(host: &Host, tenant: &str) -> Vec<(String, String)> {
    let path = host
        .data_dir()
        .join("tenants")
        .join(format!("{}.sqlite", host.tenant_id(tenant)));
    let db = rusqlite::Connection::open(path).expect("open the tenant database");
    db.busy_timeout(Duration::from_secs(10)).expect("busy");
    let mut statement = db
        .prepare("SELECT to_address, text_body FROM _souk_mail ORDER BY seq")
        .expect("prepare");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .map(|row| row.expect("row"))
        .collect()
}

fn mail_log(host: &Host, tenant: &str, token: &str) -> Vec<Value> {
    let a = host.get(&format!("/v1/tenants/{tenant}/mail"), token);
    assert_eq!(a.status, 200, "mail log: {a:?}");
    a.body["messages"].as_array().expect("messages").clone()
}

#[test]
fn sent_mail_loses_its_body_after_a_day_and_leaves_the_log_after_thirty_days() {
    let sink = SmtpSink::start();
    let url = sink.url();
    let host = Host::start_on_plans(&[], CLOCK, &["--smtp-url", url.as_str()]);
    let token = host.tenant("acme");
    for email in ["ram@example.org", "sita@example.org"] {
        let a = host.post(
            "/v1/tenants/acme/users",
            &token,
            json!({"email": email, "display_name": "Someone", "role": "member"}),
        );
        assert_eq!(a.status, 201, "{a:?}");
    }
    sink.wait_for(2, Duration::from_secs(20));
    let start = std::time::Instant::now();
    while mail_log(&host, "acme", &token)
        .iter()
        .any(|m| m["status"] != "sent")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not recorded sent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = bodies(&host, "acme");
    assert_eq!(before.len(), 2);
    assert!(
        before.iter().all(|(_, body)| body.contains("http")),
        "each body holds its invitation link: {before:?}"
    );

    // 23 hours on: nothing is due yet.
    advance_hours(&host, 23);
    run_maintenance(&host);
    assert_eq!(bodies(&host, "acme"), before);

    // A day and more: the bodies (with their links) are emptied, the log
    // keeps both messages.
    advance_hours(&host, 2);
    run_maintenance(&host);
    let emptied = bodies(&host, "acme");
    assert_eq!(emptied.len(), 2);
    assert!(
        emptied.iter().all(|(_, body)| body.is_empty()),
        "{emptied:?}"
    );
    assert_eq!(mail_log(&host, "acme", &token).len(), 2);

    // 30 days: the older message leaves the log; the newest row stays.
    advance_hours(&host, 30 * 24);
    run_maintenance(&host);
    let log = mail_log(&host, "acme", &token);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["to_address"], "sita@example.org", "{log:?}");
}
