//! The noticeboard (tests/modules/noticeboard), one module that uses every
//! interface of module API 0.3.0, through the real binary: members signed
//! in with a password or through single sign-on, public and admin routes,
//! counted entitlements with replays, files and their signed URLs, events
//! to a webhook and from a dependency, email to the sink, a job with its
//! progress and result file, a schedule on the manual clock, API keys.
//!
//! The capability-by-capability tests (people.rs, files.rs, events.rs,
//! email.rs, jobs.rs, sso.rs) try each one's failure paths with a probe
//! module each; these show that one component importing all of them links,
//! and that they work together in one tenant.

use std::time::Duration;

use serde_json::{Value, json};

use crate::events::{LOOPBACK, Receiver, verify, wait_until};
use crate::oidc_provider::Provider;
use crate::people::{Cred, call, person};
use crate::smtp_sink::SmtpSink;
use crate::support::Host;

const BOARD: &str = "/t/acme/m/noticeboard";

/// A PNG by its signature, and some bytes.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot really an image, but a PNG by its magic";

/// A host on the test plans and the SSO test's clock, delivering webhooks
/// to loopback and mail to `sink`.
fn start(sink: &SmtpSink) -> Host {
    let smtp = sink.url();
    let mut args = vec![
        "--smtp-url",
        smtp.as_str(),
        "--mail-from",
        "Souk Test <noreply@souk.test>",
        "--sso-allow-insecure",
        "--public-burst",
        "1000",
    ];
    args.extend_from_slice(&LOOPBACK);
    Host::start_on_plans(&["events-probe", "noticeboard"], crate::sso::START, &args)
}

/// Tenant `acme` with the noticeboard (and its dependency) installed;
/// answers its token.
fn acme(host: &Host) -> String {
    let token = host.tenant_with("acme", "events-probe");
    host.install_ok("acme", &token, "noticeboard");
    token
}

fn grant(host: &Host, plan: &str) {
    let a = host.post(
        "/v1/tenants/acme/subscriptions/noticeboard/grant",
        &host.operator,
        json!({"plan": plan}),
    );
    assert_eq!(a.status, 200, "grant {plan}: {a:?}");
}

/// A request with a bearer credential (or none), extra headers and a raw
/// body: (status, JSON body or null, raw bytes).
fn send(
    host: &Host,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, Value, Vec<u8>) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = host.client.request(method, format!("{}{path}", host.base));
    if let Some(bearer) = bearer {
        req = req.bearer_auth(bearer);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let res = req.send().expect("request");
    let status = res.status().as_u16();
    let bytes = res.bytes().expect("body").to_vec();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json, bytes)
}

fn post_notice(host: &Host, bearer: &str, title: &str, key: Option<&str>) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    let body = json!({"title": title, "text": format!("{title}, in full")});
    let (status, json, _) = send(
        host,
        "POST",
        &format!("{BOARD}/notices"),
        Some(bearer),
        &headers,
        Some(body.to_string().into_bytes()),
    );
    (status, json)
}

fn titles(answer: &Value) -> Vec<String> {
    answer["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .map(|n| n["title"].as_str().expect("title").to_owned())
        .collect()
}

#[test]
fn members_post_and_attach_admins_approve_and_the_author_is_emailed() {
    let sink = SmtpSink::start();
    let host = start(&sink);
    let admin = acme(&host);

    // Public: no credential; the install hook's welcome notice.
    let r = call(
        &host,
        "GET",
        &format!("{BOARD}/notices"),
        Cred::Nobody,
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(titles(&r.body), ["Welcome"], "{r:?}");
    let r = call(
        &host,
        "POST",
        &format!("{BOARD}/notices"),
        Cred::Nobody,
        Some(json!({"title": "anonymous", "text": "no"})),
    );
    assert_eq!(r.status, 401, "a member route needs a member: {r:?}");

    // A member signs in; the module is told who they are.
    let (mia, session, _) = person(&host, "acme", &admin, "mia@example.org", "member");
    let r = call(
        &host,
        "GET",
        &format!("{BOARD}/me"),
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        json!({"kind": "user", "id": mia, "name": "member mia@example.org",
               "admin": false, "member_number": "M-42"})
    );

    // Counted once per idempotency key: the replay is said, not counted.
    let (status, first) = post_notice(&host, &session, "Bake sale", Some("bake-1"));
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["replay"], false);
    assert_eq!(first["usage"], json!({"used": 1, "limit": 3}), "{first}");
    assert!(
        first["event"].as_str().unwrap().starts_with("evt_"),
        "{first}"
    );
    let (status, again) = post_notice(&host, &session, "Bake sale", Some("bake-1"));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["replay"], true);
    assert_eq!(again["notice"]["id"], first["notice"]["id"]);
    assert_eq!(again["usage"]["used"], 1, "{again}");
    let notice = first["notice"]["id"].as_i64().unwrap();
    assert_eq!(first["notice"]["author"], "member mia@example.org");
    assert_eq!(post_notice(&host, &session, "Choir", None).0, 201);
    assert_eq!(post_notice(&host, &session, "Chess club", None).0, 201);
    let (status, full) = post_notice(&host, &session, "One too many", None);
    assert_eq!(status, 402, "{full}");
    assert_eq!(full["feature"], "max_notices", "{full}");
    assert_eq!(full["reason"], "limit_reached", "{full}");
    assert_eq!(full["upgrade_plan"], "business", "{full}");

    // A member is kept off admin routes; unapproved notices are not public.
    let r = call(
        &host,
        "GET",
        &format!("{BOARD}/pending"),
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(
        &host,
        "GET",
        &format!("{BOARD}/notices"),
        Cred::Nobody,
        None,
    );
    assert_eq!(titles(&r.body), ["Welcome"], "{r:?}");

    // The author attaches a file; its type is checked against the bytes.
    let attach = format!("{BOARD}/notices/{notice}/attachment");
    let (status, html, _) = send(
        &host,
        "PUT",
        &format!("{attach}?name=x.png&type=image/png"),
        Some(&session),
        &[],
        Some(b"<html><script>alert(1)</script></html>".to_vec()),
    );
    assert_eq!(status, 415, "{html}");
    let (status, file, _) = send(
        &host,
        "PUT",
        &format!("{attach}?name=poster.png&type=image/png"),
        Some(&session),
        &[],
        Some(PNG.to_vec()),
    );
    assert_eq!(status, 201, "{file}");
    assert_eq!(file["content_type"], "image/png", "{file}");
    // Another member is not the author.
    let (_, other, _) = person(&host, "acme", &admin, "otto@example.org", "member");
    let (status, _, _) = send(
        &host,
        "PUT",
        &format!("{attach}?name=mine.png&type=image/png"),
        Some(&other),
        &[],
        Some(PNG.to_vec()),
    );
    assert_eq!(status, 403);
    let r = call(&host, "GET", &attach, Cred::Nobody, None);
    assert_eq!(r.status, 404, "not approved yet: {r:?}");

    // The admin approves: the author is emailed (after the commit).
    let r = call(
        &host,
        "GET",
        &format!("{BOARD}/pending"),
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(
        titles(&r.body),
        ["Chess club", "Choir", "Bake sale"],
        "{r:?}"
    );
    let r = call(
        &host,
        "POST",
        &format!("{BOARD}/notices/{notice}/approve"),
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let mail_id = r.body["email"].as_str().expect("an email id").to_owned();
    let mail = wait_until("the approval email", || {
        sink.messages().into_iter().find(|m| {
            m.header("Message-ID")
                .is_some_and(|id| id.contains(&mail_id))
        })
    });
    assert_eq!(mail.rcpt_to, ["<mia@example.org>"]);
    // The body is quoted-printable: its first words are plain.
    assert!(
        mail.data
            .contains("\r\n\r\nAn admin approved your notice =E2=80=9CBake sale"),
        "{mail:?}"
    );

    // Now public, with its attachment behind a signed URL anyone can open.
    let r = call(
        &host,
        "GET",
        &format!("{BOARD}/notices"),
        Cred::Nobody,
        None,
    );
    assert_eq!(titles(&r.body), ["Bake sale", "Welcome"], "{r:?}");
    let r = call(&host, "GET", &attach, Cred::Nobody, None);
    assert_eq!(r.status, 200, "{r:?}");
    let url = r.body["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with("/f/"), "{url}");
    let (status, _, bytes) = send(&host, "GET", &url, None, &[], None);
    assert_eq!(status, 200);
    assert_eq!(bytes, PNG);
    let tampered = format!("{}x", url);
    assert_ne!(send(&host, "GET", &tampered, None, &[], None).0, 200);

    // Deleting gives the unit back: the member may post again.
    let r = call(
        &host,
        "DELETE",
        &format!("{BOARD}/notices/{notice}"),
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(post_notice(&host, &session, "Room again", None).0, 201);

    // Another tenant's member is not a member here.
    let globex = host.tenant_with("globex", "events-probe");
    host.install_ok("globex", &globex, "noticeboard");
    let (_, theirs, _) = person(&host, "globex", &globex, "gus@example.org", "member");
    let r = call(
        &host,
        "GET",
        &format!("{BOARD}/me"),
        Cred::Bearer(&theirs),
        None,
    );
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn events_webhooks_jobs_and_the_schedule_of_one_module() {
    let sink = SmtpSink::start();
    let host = start(&sink);
    let admin = acme(&host);
    let receiver = Receiver::start(&[]);

    // Webhooks are a business feature.
    let hooks = "/v1/tenants/acme/modules/noticeboard/webhooks";
    let a = host.post(hooks, &admin, json!({"url": receiver.url}));
    assert_eq!(a.status, 402, "{a:?}");
    grant(&host, "business");
    let a = host.post(
        hooks,
        &admin,
        json!({"url": receiver.url, "event_types": ["notice.posted"]}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let secret = a.body["secret"].as_str().expect("secret").to_owned();

    // A notice posted with the tenant token: its event is delivered, signed.
    let (status, posted) = post_notice(&host, &admin, "Annual meeting", None);
    assert_eq!(status, 201, "{posted}");
    let got = receiver.wait_for(1);
    assert!(verify(&secret, &got[0]), "{:?}", got[0].headers);
    let body = got[0].json();
    assert_eq!(body["id"], posted["event"], "{body}");
    assert_eq!(body["type"], "notice.posted");
    assert_eq!(body["module"], "noticeboard");
    assert_eq!(body["data"]["title"], "Annual meeting");

    // An event of the dependency reaches `on_event`.
    let a = host.post(
        "/t/acme/m/events-probe/items",
        &admin,
        json!({"name": "chairs"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let activity = |host: &Host| {
        let a = host.get(&format!("{BOARD}/activity"), &admin);
        assert_eq!(a.status, 200, "{a:?}");
        a.body["activity"].as_array().expect("activity").clone()
    };
    let seen = wait_until("the dependency's event", || {
        activity(&host)
            .into_iter()
            .find(|row| row["kind"] == "event")
    });
    let detail = seen["detail"].as_str().unwrap();
    assert!(
        detail.contains("events-probe.item.created") && detail.contains("chairs"),
        "{detail}"
    );

    // An approved notice to export: a job with progress and a PDF result.
    let id = posted["notice"]["id"].as_i64().unwrap();
    let r = call(
        &host,
        "POST",
        &format!("{BOARD}/notices/{id}/approve"),
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body["email"].is_null(), "a token has no mailbox: {r:?}");
    let a = host.post(&format!("{BOARD}/exports"), &admin, json!({}));
    assert_eq!(a.status, 202, "{a:?}");
    let job = a.body["job"].as_str().expect("job id").to_owned();
    let events = crate::jobs::read_events(&host, "acme", &admin, &job);
    let last = events.last().expect("events");
    assert_eq!(last.event, "done", "{events:?}");
    assert_eq!(last.data["status"], "succeeded", "{events:?}");
    let done = crate::jobs::wait_for(
        &host,
        "acme",
        &admin,
        &job,
        "succeeded",
        Duration::from_secs(20),
    );
    assert_eq!(done["progress"]["total"], 2, "two approved notices: {done}");
    assert_eq!(done["progress"]["done"], 2, "{done}");
    let url = done["result_url"].as_str().expect("result url");
    let (status, _, pdf) = send(&host, "GET", url, None, &[], None);
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&pdf);
    assert!(
        text.starts_with("%PDF-1.4") && text.contains("Annual meeting") && text.contains("Welcome"),
        "{text}"
    );

    // The daily schedule fires on the manual clock.
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"advance_seconds": 86_400 + 60}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let digest = wait_until("the digest job", || {
        activity(&host)
            .into_iter()
            .find(|row| row["kind"] == "digest")
    });
    assert_eq!(digest["detail"], "0 pending", "{digest}");
}

#[test]
fn api_keys_and_single_sign_on_follow_the_plan() {
    let sink = SmtpSink::start();
    let host = start(&sink);
    let admin = acme(&host);

    // An API key of the noticeboard: 402 on free, the module's caller on
    // business; read-only keys only read.
    let mut keys = Vec::new();
    for read_only in [false, true] {
        let r = call(
            &host,
            "POST",
            "/v1/tenants/acme/api-keys",
            Cred::Bearer(&admin),
            Some(
                json!({"module": "noticeboard", "name": format!("crm-{read_only}"),
                        "read_only": read_only}),
            ),
        );
        assert_eq!(r.status, 201, "{r:?}");
        keys.push(r.body["key"].as_str().unwrap().to_owned());
    }
    let (write_key, read_key) = (&keys[0], &keys[1]);
    let r = call(
        &host,
        "GET",
        &format!("{BOARD}/pending"),
        Cred::Bearer(write_key),
        None,
    );
    assert_eq!(r.status, 402, "{r:?}");
    assert_eq!(r.body["feature"], "api_access", "{r:?}");
    grant(&host, "business");
    let (status, posted) = post_notice(&host, write_key, "From the CRM", None);
    assert_eq!(status, 201, "{posted}");
    assert_eq!(posted["notice"]["author"], "crm-false", "{posted}");
    let r = call(
        &host,
        "GET",
        &format!("{BOARD}/pending"),
        Cred::Bearer(read_key),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(titles(&r.body), ["From the CRM"]);
    assert_eq!(post_notice(&host, read_key, "Refused", None).0, 403);
    let r = call(
        &host,
        "GET",
        "/t/acme/m/events-probe/items",
        Cred::Bearer(write_key),
        None,
    );
    assert_eq!(r.status, 401, "another module's route: {r:?}");

    // Single sign-on is the business plan's `sso`: a member signed in
    // through the provider posts a notice under their own name.
    let provider = Provider::start(
        crate::sso::start_unix(),
        crate::sso::person("ravi@example.org", true),
    );
    grant(&host, "free");
    let a = crate::sso::configure(&host, "acme", &admin, crate::sso::settings(&provider));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["feature"], "sso", "{a:?}");
    grant(&host, "business");
    let a = crate::sso::configure(&host, "acme", &admin, crate::sso::settings(&provider));
    assert_eq!(a.status, 200, "{a:?}");
    let signed_in = crate::sso::finish(&crate::sso::begin(&host, "acme", &format!("{BOARD}/me")));
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    let me = crate::sso::with_session(&host, "GET", &format!("{BOARD}/me"), &signed_in, false);
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["kind"], "user", "{me:?}");
    assert_eq!(me.body["name"], "Alice Example", "{me:?}");
    assert_eq!(me.body["admin"], false, "{me:?}");
}
