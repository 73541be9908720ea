//! Email through the real binary: `mailer-probe` queues messages with the
//! `notify` interface, the host delivers them to an SMTP sink the test
//! starts on loopback, and the tenant reads its mail log over HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::smtp_sink::SmtpSink;
use crate::support::Host;

const CLOCK: &str = "2027-03-01T09:00:00Z";

/// How long a test waits for the delivery to do something it should.
const WAIT: Duration = Duration::from_secs(20);

/// Starts a host on the test plans and the manual clock with
/// `mailer-probe` bundled and `args` besides.
fn host(args: &[&str]) -> Host {
    Host::start_on_plans(&["mailer-probe"], CLOCK, args)
}

/// A host sending through `sink` as `Souk Test <noreply@souk.test>`.
fn host_with_sink(sink: &SmtpSink) -> Host {
    let url = sink.url();
    host(&[
        "--smtp-url",
        url.as_str(),
        "--mail-from",
        "Souk Test <noreply@souk.test>",
    ])
}

/// An active user of `tenant`, written into the control plane's `users`
/// table (the people work's migration `0005_people`; the people API creates
/// users as `invited` until they accept, which is beside the point here);
/// returns its id.
fn add_user(
    host: &Host,
    tenant: &str,
    email: &str,
    name: &str,
    role: &str,
    member: Option<&str>,
) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let id = format!(
        "usr_{:08x}{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let tenant_id = host.tenant_id(tenant);
    let control = rusqlite::Connection::open(host.data_dir().join("control.sqlite"))
        .expect("open the control plane");
    control
        .busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    control
        .execute(
            "INSERT INTO users (id, tenant_id, email, email_key, display_name, role, status, \
             member_number, created_at, updated_at) \
             VALUES (?1, ?2, ?3, lower(?3), ?4, ?5, 'active', ?6, ?7, ?7)",
            rusqlite::params![id, tenant_id, email, name, role, member, CLOCK],
        )
        .expect("insert user");
    id
}

fn send(
    host: &Host,
    tenant: &str,
    token: &str,
    route: &str,
    body: Value,
) -> crate::support::Answer {
    host.post(&format!("/t/{tenant}/m/mailer-probe/{route}"), token, body)
}

fn mail_log(host: &Host, tenant: &str, token: &str) -> Value {
    let a = host.get(&format!("/v1/tenants/{tenant}/mail"), token);
    assert_eq!(a.status, 200, "mail log: {a:?}");
    a.body
}

/// The tenant's usage line of `mailer-probe`'s email meter.
fn email_usage(host: &Host, tenant: &str, token: &str) -> Value {
    let a = host.get(
        &format!("/v1/tenants/{tenant}/usage?module=mailer-probe"),
        token,
    );
    assert_eq!(a.status, 200, "{a:?}");
    a.body["modules"][0]["usage"]
        .as_array()
        .expect("usage lines")
        .iter()
        .find(|line| line["key"] == "emails_per_month")
        .cloned()
        .unwrap_or_else(|| panic!("no emails_per_month line: {a:?}"))
}

fn advance_seconds(host: &Host, seconds: i64) {
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"advance_seconds": seconds}),
    );
    assert_eq!(a.status, 200, "{a:?}");
}

/// Waits until the mail log's first message satisfies `done`.
fn wait_log(host: &Host, tenant: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let log = mail_log(host, tenant, token);
        if done(&log["messages"][0]) || start.elapsed() > WAIT {
            return log;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn email_is_queued_only_on_commit_and_delivered_with_its_headers() {
    let sink = SmtpSink::start();
    let host = host_with_sink(&sink);
    let token = host.tenant_with("acme", "mailer-probe");
    let ana = add_user(
        &host,
        "acme",
        "ana@example.com",
        "Ana Müller",
        "member",
        None,
    );

    // Queued, then the call fails: rolled back, nothing is sent.
    let a = send(
        &host,
        "acme",
        &token,
        "send-then-fail",
        json!({"to": {"user": ana}, "subject": "Doomed", "text": "never"}),
    );
    assert_eq!(a.status, 500, "{a:?}");
    let a = send(
        &host,
        "acme",
        &token,
        "send",
        json!({"to": {"user": ana}, "subject": "Grüße aus Kathmandu", "text": "Hello Ana",
               "html": "<p>Hello <b>Ana</b></p>"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let id = a.body["id"].as_str().unwrap().to_owned();

    let messages = sink.wait_for(1, WAIT);
    assert_eq!(messages.len(), 1, "{messages:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let messages = sink.messages();
    assert_eq!(
        messages.len(),
        1,
        "only the committed message: {messages:?}"
    );
    let m = &messages[0];
    assert_eq!(m.rcpt_to, ["<ana@example.com>"]);
    assert_eq!(m.mail_from, "<noreply@souk.test>");
    assert_eq!(
        m.header("From").as_deref(),
        Some("\"Souk Test\" <noreply@souk.test>")
    );
    let to = m.header("To").unwrap();
    assert!(
        to.starts_with("=?utf-8?") && to.ends_with("<ana@example.com>"),
        "{to}"
    );
    let subject = m.header("Subject").unwrap();
    assert!(subject.starts_with("=?utf-8?"), "{subject}");
    assert_eq!(m.header("Message-ID"), Some(format!("<{id}@souk.test>")));
    assert!(m.header("Date").unwrap().contains("1 Mar 2027"), "{m:?}");
    assert!(
        m.header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative"),
        "{m:?}"
    );
    assert!(m.data.contains("text/plain") && m.data.contains("text/html"));
    for name in ["From", "To", "Subject", "Message-ID", "Date"] {
        assert_eq!(m.header_count(name), 1, "{name}: {m:?}");
    }

    let log = wait_log(&host, "acme", &token, |m| m["status"] == "sent");
    let messages = log["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{log}");
    assert_eq!(messages[0]["id"], id.as_str());
    assert_eq!(messages[0]["kind"], "module");
    assert_eq!(messages[0]["module"], "mailer-probe");
    assert_eq!(messages[0]["to_address"], "ana@example.com");
    assert_eq!(messages[0]["attempts"], 1);
    assert!(
        messages[0]["answer"].as_str().unwrap().starts_with("250"),
        "{log}"
    );
    assert_eq!(log["delivery"]["relay_configured"], true);
    let sent = host.get("/t/acme/m/mailer-probe/sent", &token);
    assert_eq!(sent.body["sent"], json!([id]));
}

#[test]
fn a_relay_that_refuses_twice_with_451_gets_the_message_on_the_third_try() {
    let sink = SmtpSink::start();
    sink.refuse_next(2, "451 4.3.0 Try again later");
    let host = host_with_sink(&sink);
    let token = host.tenant_with("acme", "mailer-probe");
    let ana = add_user(&host, "acme", "ana@example.com", "Ana", "member", None);
    let a = send(
        &host,
        "acme",
        &token,
        "send",
        json!({"to": {"user": ana}, "subject": "Retry me", "text": "Hello"}),
    );
    assert_eq!(a.status, 201, "{a:?}");

    assert_eq!(
        sink.wait_refused(1, WAIT),
        1,
        "{} {:?}",
        mail_log(&host, "acme", &token),
        sink.messages()
    );
    let log = wait_log(&host, "acme", &token, |m| m["attempts"] == 1);
    let first = &log["messages"][0];
    assert_eq!(first["status"], "queued", "{log}");
    assert!(first["answer"].as_str().unwrap().contains("451"), "{log}");
    // Not retried before its backoff (30 s of the host clock) is over.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(sink.refused(), 1);

    advance_seconds(&host, 31);
    assert_eq!(sink.wait_refused(2, WAIT), 2);
    let log = wait_log(&host, "acme", &token, |m| m["attempts"] == 2);
    let second = &log["messages"][0];
    assert_eq!(second["status"], "queued", "{log}");
    // Twice the first backoff, from the second attempt.
    assert_eq!(
        second["next_attempt_at"].as_i64().unwrap() - second["queued_at"].as_i64().unwrap(),
        31 + 60,
        "{log}"
    );
    advance_seconds(&host, 61);
    assert_eq!(
        sink.wait_for(1, WAIT).len(),
        1,
        "{}",
        mail_log(&host, "acme", &token)
    );
    let log = wait_log(&host, "acme", &token, |m| m["status"] == "sent");
    assert_eq!(log["messages"][0]["status"], "sent", "{log}");
    assert_eq!(log["messages"][0]["attempts"], 3, "{log}");
}

#[test]
fn a_5xx_answer_is_a_permanent_failure_in_the_mail_log() {
    let sink = SmtpSink::start();
    sink.refuse_next(1, "550 5.1.1 No such mailbox");
    let host = host_with_sink(&sink);
    let token = host.tenant_with("acme", "mailer-probe");
    let ana = add_user(&host, "acme", "ana@example.com", "Ana", "member", None);
    let a = send(
        &host,
        "acme",
        &token,
        "send",
        json!({"to": {"user": ana}, "subject": "Bounce", "text": "Hello"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let log = wait_log(&host, "acme", &token, |m| m["status"] == "failed");
    let first = &log["messages"][0];
    assert_eq!(first["status"], "failed", "{log}");
    assert!(first["answer"].as_str().unwrap().contains("550"), "{log}");
    // Never tried again.
    advance_seconds(&host, 7200);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!((sink.refused(), sink.messages().len()), (1, 0));
}

#[test]
fn the_email_meter_runs_out_with_a_402_and_a_rolled_back_call_counts_nothing() {
    let sink = SmtpSink::start();
    let host = host_with_sink(&sink);
    let token = host.tenant_with("acme", "mailer-probe");
    let ana = add_user(&host, "acme", "ana@example.com", "Ana", "member", None);
    let message = json!({"to": {"user": ana}, "subject": "Hi", "text": "Hello"});
    let a = send(&host, "acme", &token, "send-then-fail", message.clone());
    assert_eq!(a.status, 500, "{a:?}");
    // The free plan allows 3 a month; the rolled-back one did not count.
    for _ in 0..3 {
        let a = send(&host, "acme", &token, "send", message.clone());
        assert_eq!(a.status, 201, "{a:?}");
    }
    let a = send(&host, "acme", &token, "send", message.clone());
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["reason"], "limit_reached");
    assert_eq!(a.body["feature"], "emails_per_month");
    assert_eq!(
        (a.body["used"].as_u64(), a.body["limit"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(sink.wait_for(3, WAIT).len(), 3);
    assert_eq!(
        mail_log(&host, "acme", &token)["messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // The tenant's usage report shows the host-counted meter.
    let line = email_usage(&host, "acme", &token);
    assert_eq!(
        (line["used"].as_u64(), line["limit"].as_u64()),
        (Some(3), Some(3))
    );
}

#[test]
fn cr_and_lf_in_a_header_field_are_refused_at_the_boundary() {
    let sink = SmtpSink::start();
    let host = host_with_sink(&sink);
    let token = host.tenant_with("acme", "mailer-probe");
    let ana = add_user(&host, "acme", "ana@example.com", "Ana", "member", None);
    for (to, subject) in [
        (json!({"user": ana}), "Hi\r\nBcc: victim@evil.test"),
        (json!({"user": ana}), "Hi\nBcc: victim@evil.test"),
        (json!({"user": ana}), "Hi\rthere"),
        (
            json!({"user": format!("{ana}\r\nBcc: victim@evil.test")}),
            "Hi",
        ),
        (json!({"member": "7\r\nBcc: victim@evil.test"}), "Hi"),
    ] {
        let a = send(
            &host,
            "acme",
            &token,
            "send",
            json!({"to": to, "subject": subject, "text": "Hello"}),
        );
        assert_eq!(a.status, 400, "{subject:?}: {a:?}");
        assert_eq!(
            a.body["type"], "https://souk.dev/problems/invalid-message",
            "{a:?}"
        );
    }
    let a = send(
        &host,
        "acme",
        &token,
        "send",
        json!({"to": {"user": ana}, "subject": "x".repeat(201), "text": "Hello"}),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert!(
        mail_log(&host, "acme", &token)["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sink.messages().is_empty());
}

#[test]
fn an_unknown_recipient_and_another_tenants_user_are_refused() {
    let sink = SmtpSink::start();
    let host = host_with_sink(&sink);
    let token = host.tenant_with("acme", "mailer-probe");
    let other = host.tenant_with("globex", "mailer-probe");
    let bob = add_user(
        &host,
        "globex",
        "bob@example.com",
        "Bob",
        "member",
        Some("0042"),
    );
    for to in [
        json!({"user": "u_nobody"}),
        json!({"member": "9999"}),
        json!({"user": bob}),
        json!({"member": "0042"}),
    ] {
        let a = send(
            &host,
            "acme",
            &token,
            "send",
            json!({"to": to, "subject": "Hi", "text": "Hello"}),
        );
        assert_eq!(a.status, 404, "{to}: {a:?}");
        assert_eq!(
            a.body["type"], "https://souk.dev/problems/unknown-recipient",
            "{a:?}"
        );
    }
    // Globex reaches its own member by number.
    let a = send(
        &host,
        "globex",
        &other,
        "send",
        json!({"to": {"member": "0042"}, "subject": "Hi", "text": "Hello"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let messages = sink.wait_for(1, WAIT);
    assert_eq!(messages[0].rcpt_to, ["<bob@example.com>"]);
    assert!(
        mail_log(&host, "acme", &token)["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn another_tenants_mail_log_is_a_plain_404() {
    let host = host(&[]);
    let acme = host.tenant_with("acme", "mailer-probe");
    let globex = host.tenant("globex");
    let a = host.get("/v1/tenants/acme/mail", &globex);
    assert_eq!(a.status, 404, "{a:?}");
    let missing = host.get("/v1/tenants/nobody/mail", &globex);
    // Answered exactly like a tenant that does not exist.
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["type"], a.body["type"]);
    assert_eq!(
        missing.detail().replace("nobody", "acme"),
        a.detail(),
        "{missing:?} {a:?}"
    );
    let a = host.get("/v1/tenants/acme/mail", &acme);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["delivery"]["relay_configured"], false);
}

#[test]
fn mail_queued_while_the_relay_is_down_is_sent_after_a_restart() {
    // No relay at all: the message stays queued, and the log says why.
    let mut host = host(&[]);
    let token = host.tenant_with("acme", "mailer-probe");
    let ana = add_user(&host, "acme", "ana@example.com", "Ana", "member", None);
    let a = send(
        &host,
        "acme",
        &token,
        "send",
        json!({"to": {"user": ana}, "subject": "Patience", "text": "Hello"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let log = mail_log(&host, "acme", &token);
    assert_eq!(log["messages"][0]["status"], "queued");
    assert_eq!(log["delivery"]["relay_configured"], false);
    assert!(
        log["delivery"]["note"]
            .as_str()
            .unwrap()
            .contains("--smtp-url")
    );

    // A relay that is down: the attempt fails and is retried later.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = down.local_addr().unwrap().port();
    drop(down);
    let dead = format!("smtp://127.0.0.1:{port}");
    host.restart_with(&[
        "--plans",
        &crate::support::plans_dir(),
        "--manual-clock",
        CLOCK,
        "--smtp-url",
        &dead,
    ]);
    let log = wait_log(&host, "acme", &token, |m| m["attempts"] == 1);
    assert_eq!(log["messages"][0]["status"], "queued", "{log}");
    assert!(log["messages"][0]["answer"].is_string(), "{log}");

    // The relay comes up on that port; after a restart (killed, no clean
    // shutdown) and the backoff, the message goes out.
    let sink = SmtpSink::start_on(port);
    host.restart();
    advance_seconds(&host, 31);
    let messages = sink.wait_for(1, WAIT);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].header("Subject").as_deref(), Some("Patience"));
    let log = wait_log(&host, "acme", &token, |m| m["status"] == "sent");
    assert_eq!(log["messages"][0]["status"], "sent", "{log}");
}

#[test]
fn a_trial_ending_is_emailed_to_the_tenants_admins_once() {
    let sink = SmtpSink::start();
    let host = host_with_sink(&sink);
    let token = host.tenant_with("acme", "mailer-probe");
    add_user(&host, "acme", "boss@example.com", "Boss", "admin", None);
    add_user(&host, "acme", "ana@example.com", "Ana", "member", None);
    let a = host.post(
        "/v1/tenants/acme/subscriptions",
        &token,
        json!({"module": "mailer-probe", "plan": "pro"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["state"], "trialing", "{a:?}");
    let a = host.post("/v1/clock", &host.operator, json!({"advance_days": 28}));
    assert_eq!(a.status, 200, "{a:?}");
    for _ in 0..2 {
        let a = host.post("/v1/maintenance/run", &host.operator, json!({}));
        assert_eq!(a.status, 200, "{a:?}");
    }
    let messages = sink.wait_for(1, WAIT);
    std::thread::sleep(Duration::from_millis(1500));
    let messages = if messages.len() == 1 {
        sink.messages()
    } else {
        messages
    };
    assert_eq!(
        messages.len(),
        1,
        "one notice, to the admin only: {messages:?}"
    );
    assert_eq!(messages[0].rcpt_to, ["<boss@example.com>"]);
    assert_eq!(
        messages[0].header("Subject").as_deref(),
        Some("Your trial of mailer-probe ends soon")
    );
    let log = mail_log(&host, "acme", &token);
    assert_eq!(log["messages"][0]["kind"], "notice", "{log}");
    // Not counted against the module's meter.
    assert_eq!(email_usage(&host, "acme", &token)["used"], 0);
}

/// `data`'s body with quoted-printable soft breaks and `=3D` undone, so a
/// link can be looked for in it.
fn unquoted(data: &str) -> String {
    data.replace("=\r\n", "").replace("=3D", "=")
}

#[test]
fn an_invitation_is_emailed_to_the_user_with_its_link() {
    let sink = SmtpSink::start();
    let host = host_with_sink(&sink);
    let token = host.tenant("acme");
    let a = host.post(
        "/v1/tenants/acme/users",
        &token,
        json!({"email": "ram@example.org", "display_name": "Ram", "role": "member"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["emailed"], true, "{a:?}");
    let first = a.body["invitation"]["link"].as_str().unwrap().to_owned();
    let id = a.body["user"]["id"].as_str().unwrap().to_owned();

    let messages = sink.wait_for(1, WAIT);
    assert_eq!(messages[0].rcpt_to, ["<ram@example.org>"]);
    assert!(unquoted(&messages[0].data).contains(&first), "{messages:?}");

    // A new invitation is emailed too, with its own link.
    let again = host.post(
        &format!("/v1/tenants/acme/users/{id}/invitation"),
        &token,
        json!({}),
    );
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(again.body["emailed"], true, "{again:?}");
    let second = again.body["link"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let messages = sink.wait_for(2, WAIT);
    assert!(
        unquoted(&messages[1].data).contains(&second),
        "{messages:?}"
    );
}
