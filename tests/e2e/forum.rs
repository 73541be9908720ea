//! The Forum module (plugins/forum) through the real binary: members
//! (signed-in users linked to Membership members) post and reply, forum
//! permissions, sanitised Markdown, the edit window and history, soft
//! delete, pagination, member profiles, and the plan gates of
//! tests/e2e/plans-forum.

use serde_json::{Value, json};

use crate::people::{Cred, PASSWORD, Reply, call};
use crate::support::{Host, workspace_root};

const FORUM: &str = "/t/acme/m/forum";

/// A host on the forum test plans with a manual clock, and `args` besides.
fn start(args: &[&str]) -> Host {
    let plans = workspace_root().join("tests/e2e/plans-forum");
    let plans = plans.to_str().expect("utf-8 path").to_owned();
    let mut all = vec![
        "--plans",
        plans.as_str(),
        "--manual-clock",
        crate::sso::START,
        "--public-burst",
        "1000",
    ];
    all.extend_from_slice(args);
    Host::start_with(&["membership", "forum"], &all)
}

/// Tenant `acme` with Membership and the Forum; answers its admin token.
fn acme(host: &Host) -> String {
    let token = host.tenant_with("acme", "membership");
    host.install_ok("acme", &token, "forum");
    token
}

fn grant(host: &Host, plan: &str) {
    let a = host.post(
        "/v1/tenants/acme/subscriptions/forum/grant",
        &host.operator,
        json!({"plan": plan}),
    );
    assert_eq!(a.status, 200, "grant {plan}: {a:?}");
}

/// Adds member `number` to Membership.
fn member(host: &Host, admin: &str, number: &str, name: &str) {
    let a = host.post(
        "/t/acme/m/membership/members",
        admin,
        json!({"number": number, "name": name, "joined_on": "2025-01-15"}),
    );
    assert_eq!(a.status, 201, "add member {number}: {a:?}");
}

/// A signed-in user of acme, linked to `number` when given; answers
/// (user id, session token).
fn user(
    host: &Host,
    admin: &str,
    email: &str,
    number: Option<&str>,
    role: &str,
) -> (String, String) {
    let mut body =
        json!({"email": email, "display_name": email.split('@').next().unwrap(), "role": role});
    if let Some(number) = number {
        body["member_number"] = json!(number);
    }
    let r = call(
        host,
        "POST",
        "/v1/tenants/acme/users",
        Cred::Bearer(admin),
        Some(body),
    );
    assert_eq!(r.status, 201, "create user: {r:?}");
    let id = r.body["user"]["id"].as_str().unwrap().to_owned();
    let invitation = r.body["invitation"]["token"].as_str().unwrap().to_owned();
    let r = call(
        host,
        "POST",
        "/v1/invitations/accept",
        Cred::Nobody,
        Some(json!({"token": invitation, "password": PASSWORD})),
    );
    assert_eq!(r.status, 200, "accept: {r:?}");
    let r = call(
        host,
        "POST",
        "/v1/tenants/acme/sessions",
        Cred::Nobody,
        Some(json!({"email": email, "password": PASSWORD})),
    );
    assert_eq!(r.status, 201, "sign in: {r:?}");
    (id, r.body["token"].as_str().unwrap().to_owned())
}

fn get(host: &Host, path: &str, who: Option<&str>) -> Reply {
    let cred = who.map_or(Cred::Nobody, Cred::Bearer);
    call(host, "GET", &format!("{FORUM}{path}"), cred, None)
}

fn send(host: &Host, method: &str, path: &str, who: &str, body: Value) -> Reply {
    call(
        host,
        method,
        &format!("{FORUM}{path}"),
        Cred::Bearer(who),
        Some(body),
    )
}

/// Moves the host's manual clock (which the module's clock follows).
fn advance(host: &Host, seconds: i64) {
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"advance_seconds": seconds}),
    );
    assert_eq!(a.status, 200, "move clock: {a:?}");
}

fn new_forum(host: &Host, admin: &str, slug: &str, view: &str, post: &str) {
    let r = send(
        host,
        "POST",
        "/forums",
        admin,
        json!({"slug": slug, "name": format!("The {slug} forum"), "view": view, "post": post}),
    );
    assert_eq!(r.status, 201, "create forum {slug}: {r:?}");
}

/// Starts a thread; answers (thread id, opening post id).
fn new_thread(host: &Host, who: &str, forum: &str, title: &str, body: &str) -> (i64, i64) {
    let r = send(
        host,
        "POST",
        &format!("/forums/{forum}/threads"),
        who,
        json!({"title": title, "body": body}),
    );
    assert_eq!(r.status, 201, "new thread: {r:?}");
    (
        r.body["thread"]["id"].as_i64().unwrap(),
        r.body["post"]["id"].as_i64().unwrap(),
    )
}

fn reply(host: &Host, who: &str, thread: i64, body: Value) -> Reply {
    send(host, "POST", &format!("/threads/{thread}/posts"), who, body)
}

/// Every item of a paged list, following `next`, `limit` at a time.
fn all_pages(host: &Host, path: &str, who: Option<&str>, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &after {
            Some(cursor) => format!("{path}{sep}limit={limit}&after={cursor}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let r = get(host, &url, who);
        assert_eq!(r.status, 200, "{url}: {r:?}");
        items.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// A tenant with two members (Asha M-1, Bikash M-2) signed in, a signed-in
/// user with no member (Chandra), and forums `general` (public) and
/// `committee` (members may view, admins-only posting).
struct Acme {
    admin: String,
    asha: String,
    bikash: String,
    chandra: String,
}

fn discussion(host: &Host) -> Acme {
    let admin = acme(host);
    member(host, &admin, "M-1", "Asha Rai");
    member(host, &admin, "M-2", "Bikash Thapa");
    let (_, asha) = user(host, &admin, "asha@example.org", Some("M-1"), "member");
    let (_, bikash) = user(host, &admin, "bikash@example.org", Some("M-2"), "member");
    let (_, chandra) = user(host, &admin, "chandra@example.org", None, "member");
    new_forum(host, &admin, "general", "public", "members");
    new_forum(host, &admin, "committee", "members", "admins");
    Acme {
        admin,
        asha,
        bikash,
        chandra,
    }
}

#[test]
fn two_members_discuss_and_a_user_without_a_member_only_reads() {
    let host = start(&[]);
    let acme = discussion(&host);

    let (thread, opening) = new_thread(
        &host,
        &acme.asha,
        "general",
        "Picnic",
        "Shall we meet **Saturday**?",
    );
    let r = reply(
        &host,
        &acme.bikash,
        thread,
        json!({"body": "Saturday works.", "quote": opening}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.body["post"]["author"],
        json!({"number": "M-2", "name": "Bikash Thapa", "left": false})
    );
    assert_eq!(r.body["post"]["quote"]["id"], opening);
    assert_eq!(r.body["post"]["quote"]["author"]["name"], "Asha Rai");
    let r = reply(
        &host,
        &acme.asha,
        thread,
        json!({"body": "Great, see you."}),
    );
    assert_eq!(r.status, 201, "{r:?}");

    // Anybody reads the public forum; the opening post is rendered.
    let r = get(&host, &format!("/threads/{thread}"), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["thread"]["title"], "Picnic");
    assert_eq!(r.body["thread"]["replies"], 2);
    assert_eq!(r.body["thread"]["views"], 1);
    assert_eq!(
        r.body["post"]["html"],
        "<p>Shall we meet <strong>Saturday</strong>?</p>\n"
    );
    assert!(
        r.body["post"].get("markdown").is_none(),
        "source only for its author: {r:?}"
    );
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 2);
    let authors: Vec<&str> = posts
        .iter()
        .map(|p| p["author"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(authors, ["Asha Rai", "Bikash Thapa", "Asha Rai"]);

    // Chandra is signed in but no member: reads public, posts nowhere.
    let r = get(
        &host,
        &format!("/threads/{thread}/posts"),
        Some(&acme.chandra),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = reply(&host, &acme.chandra, thread, json!({"body": "me too"}));
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(
        &host,
        "POST",
        "/forums/general/threads",
        &acme.chandra,
        json!({"title": "x", "body": "y"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Anonymous callers cannot reach member routes at all.
    let r = call(
        &host,
        "POST",
        &format!("{FORUM}/threads/{thread}/posts"),
        Cred::Nobody,
        Some(json!({"body": "anon"})),
    );
    assert_eq!(r.status, 401, "{r:?}");

    // The members-only forum is invisible (404) to Chandra and to nobody,
    // visible to members, and only admins post there.
    for who in [None, Some(acme.chandra.as_str())] {
        let r = get(&host, "/forums/committee", who);
        assert_eq!(r.status, 404, "{r:?}");
        let r = get(&host, "/forums/committee/threads", who);
        assert_eq!(r.status, 404, "{r:?}");
        let r = get(&host, "/forums", who);
        let slugs: Vec<&str> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["slug"].as_str().unwrap())
            .collect();
        assert_eq!(slugs, ["general"], "{r:?}");
    }
    let r = get(&host, "/forums", Some(&acme.asha));
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2, "{r:?}");
    let r = send(
        &host,
        "POST",
        "/forums/committee/threads",
        &acme.asha,
        json!({"title": "x", "body": "y"}),
    );
    assert_eq!(r.status, 403, "admins only post here: {r:?}");
    let (minutes, _) = new_thread(&host, &acme.admin, "committee", "Minutes", "The minutes.");
    let r = get(&host, &format!("/threads/{minutes}"), Some(&acme.bikash));
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(&host, &format!("/threads/{minutes}"), Some(&acme.chandra));
    assert_eq!(r.status, 404, "a private thread is invisible: {r:?}");
    let r = get(&host, &format!("/threads/{minutes}/posts"), None);
    assert_eq!(r.status, 404, "{r:?}");
    let r = get(&host, &format!("/threads/{minutes}"), Some(&acme.admin));
    assert_eq!(
        r.body["thread"]["views"], 2,
        "refused views are not counted: {r:?}"
    );

    // Profiles: from Membership, with the forum's post count.
    let r = get(&host, "/members/M-1", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["profile"]["name"], "Asha Rai");
    assert_eq!(r.body["profile"]["posts"], 2);
    assert_eq!(r.body["profile"]["joined"], "2025-01-15");
    assert_eq!(r.body["profile"]["left"], false);
    assert_eq!(get(&host, "/members/M-99", None).status, 404);

    // A member who leaves is shown as such and cannot post any more.
    let r = call(
        &host,
        "PATCH",
        "/t/acme/m/membership/members/M-2",
        Cred::Bearer(&acme.admin),
        Some(json!({"status": "left"})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = reply(&host, &acme.bikash, thread, json!({"body": "still here?"}));
    assert_eq!(r.status, 403, "{r:?}");
    crate::events::wait_until("member_left reaches the forum", || {
        let r = get(&host, "/members/M-2", None);
        (r.body["profile"]["left_at"].is_string()).then_some(())
    });
    let r = get(&host, "/members/M-2", None);
    assert_eq!(r.body["profile"]["left"], true, "{r:?}");
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 10);
    assert_eq!(posts[1]["author"]["left"], true, "{posts:?}");
    assert!(
        posts[1]["html"].is_string(),
        "a leaver's posts stay: {posts:?}"
    );
    // Even set back to active, a member Membership said left stays out.
    let r = call(
        &host,
        "PATCH",
        "/t/acme/m/membership/members/M-2",
        Cred::Bearer(&acme.admin),
        Some(json!({"status": "active"})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = reply(&host, &acme.bikash, thread, json!({"body": "back"}));
    assert_eq!(r.status, 403, "{r:?}");
}

/// The first thing in `html` that could run script: a tag that is not
/// on a short list of harmless ones, or an event handler, style or
/// script URL inside any tag. Text outside tags is escaped by the
/// renderer (`&lt;`), so it cannot open a tag.
fn unsafe_markup(html: &str) -> Option<String> {
    const HARMLESS: [&str; 27] = [
        "p",
        "a",
        "em",
        "strong",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "br",
        "hr",
        "del",
        "img",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "h1",
        "h2",
        "h3",
        "div",
        "span",
        "b",
        "i",
    ];
    let lower = html.to_ascii_lowercase();
    for tag in lower.split('<').skip(1) {
        let inside = tag.split('>').next().unwrap_or_default();
        let name: String = inside
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if !HARMLESS.contains(&name.as_str()) {
            return Some(format!("tag <{name}>"));
        }
        for attribute in inside.split_whitespace().skip(1) {
            if attribute.starts_with("on") || attribute.starts_with("style") {
                return Some(format!("attribute {attribute}"));
            }
            if ["javascript:", "data:", "vbscript:"]
                .iter()
                .any(|scheme| attribute.contains(scheme))
            {
                return Some(format!("URL {attribute}"));
            }
        }
    }
    None
}

#[test]
fn script_in_markdown_never_comes_back_as_script() {
    let host = start(&[]);
    let acme = discussion(&host);
    let payloads = [
        "<script>alert('x')</script>",
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        "<a href=\"javascript:alert(1)\">x</a>",
        "<svg/onload=alert(1)>",
        "<iframe src=\"https://evil.example\"></iframe>",
        "<scr<script>ipt>alert(1)</script>",
        "<a href=\"data:text/html;base64,PHNjcmlwdD4=\">x</a>",
        "<div style=\"background:url(javascript:alert(1))\">x</div>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    ];
    let (thread, _) = new_thread(
        &host,
        &acme.asha,
        "general",
        "<script>alert(1)</script>",
        payloads[0],
    );
    for payload in &payloads[1..] {
        let r = reply(&host, &acme.bikash, thread, json!({"body": payload}));
        assert_eq!(r.status, 201, "{r:?}");
    }
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 100);
    assert_eq!(posts.len(), payloads.len());
    assert!(unsafe_markup("<p>x</p><img src=x onerror=alert(1)>").is_some());
    assert!(unsafe_markup("<script>").is_some());
    assert!(unsafe_markup("<a href=\"javascript:x\">").is_some());
    assert_eq!(unsafe_markup("<p>&lt;script&gt;</p>"), None);
    for post in &posts {
        let html = post["html"].as_str().unwrap();
        if let Some(bad) = unsafe_markup(html) {
            panic!("{bad} in {html}");
        }
    }
    // The title is plain text in JSON, never HTML the module made.
    let r = get(&host, &format!("/threads/{thread}"), None);
    assert_eq!(r.body["thread"]["title"], "<script>alert(1)</script>");
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

#[test]
fn authors_edit_within_the_window_with_history_and_soft_delete() {
    let host = start(&[]);
    let acme = discussion(&host);
    let (thread, opening) = new_thread(&host, &acme.asha, "general", "Draft", "first words");
    let r = reply(&host, &acme.bikash, thread, json!({"body": "a reply"}));
    let reply_id = r.body["post"]["id"].as_i64().unwrap();

    // Only the author edits; the earlier body is kept.
    let r = send(
        &host,
        "PATCH",
        &format!("/posts/{opening}"),
        &acme.bikash,
        json!({"body": "hijack"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(
        &host,
        "PATCH",
        &format!("/posts/{opening}"),
        &acme.admin,
        json!({"body": "admin edit"}),
    );
    assert_eq!(
        r.status, 403,
        "not even an admin edits another's words: {r:?}"
    );
    let r = send(
        &host,
        "PATCH",
        &format!("/posts/{opening}"),
        &acme.asha,
        json!({"body": "second *words*"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["post"]["html"], "<p>second <em>words</em></p>\n");
    assert_eq!(r.body["post"]["markdown"], "second *words*");
    assert_eq!(r.body["post"]["edits"], 1);
    let r = send(
        &host,
        "PATCH",
        &format!("/threads/{thread}"),
        &acme.asha,
        json!({"title": "Final"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["thread"]["title"], "Final");
    let r = get(&host, &format!("/posts/{opening}/history"), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["history"][0]["html"], "<p>first words</p>\n");
    assert_eq!(r.body["history"].as_array().unwrap().len(), 1);

    // The default window is 15 minutes of the host's clock, counted from
    // the post: closed a second after; a longer window set by an admin
    // opens it again.
    advance(&host, 901);
    let r = send(
        &host,
        "PATCH",
        &format!("/posts/{opening}"),
        &acme.asha,
        json!({"body": "too late"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        r.body["type"],
        "https://souk.dev/problems/forum/edit-window-closed"
    );
    let r = call(
        &host,
        "PUT",
        &format!("{FORUM}/settings"),
        Cred::Bearer(&acme.asha),
        Some(json!({"edit_window_seconds": 100000})),
    );
    assert_eq!(r.status, 403, "members do not change settings: {r:?}");
    let r = call(
        &host,
        "PUT",
        &format!("{FORUM}/settings"),
        Cred::Bearer(&acme.admin),
        Some(json!({"edit_window_seconds": 3600})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = send(
        &host,
        "PATCH",
        &format!("/posts/{opening}"),
        &acme.asha,
        json!({"body": "within the hour"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    advance(&host, 2700);
    let r = send(
        &host,
        "PATCH",
        &format!("/threads/{thread}"),
        &acme.asha,
        json!({"title": "Later"}),
    );
    assert_eq!(r.status, 403, "{r:?}");

    // Soft delete: others may not; the author may; the place stays.
    let r = call(
        &host,
        "DELETE",
        &format!("{FORUM}/posts/{reply_id}"),
        Cred::Bearer(&acme.asha),
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(
        &host,
        "DELETE",
        &format!("{FORUM}/posts/{reply_id}"),
        Cred::Bearer(&acme.bikash),
        None,
    );
    assert_eq!(r.status, 204, "{r:?}");
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 10);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1]["deleted"], true);
    assert!(posts[1]["html"].is_null(), "{posts:?}");
    assert_eq!(
        get(&host, &format!("/posts/{reply_id}/history"), None).status,
        404
    );
    let r = get(&host, "/members/M-2", None);
    assert_eq!(r.body["profile"]["posts"], 0, "{r:?}");

    // Deleting the thread hides it from everybody but moderators.
    let r = call(
        &host,
        "DELETE",
        &format!("{FORUM}/threads/{thread}"),
        Cred::Bearer(&acme.bikash),
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(
        &host,
        "DELETE",
        &format!("{FORUM}/threads/{thread}"),
        Cred::Bearer(&acme.asha),
        None,
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(get(&host, &format!("/threads/{thread}"), None).status, 404);
    assert_eq!(
        get(&host, &format!("/threads/{thread}"), Some(&acme.asha)).status,
        404
    );
    let r = get(&host, &format!("/threads/{thread}"), Some(&acme.admin));
    assert_eq!(r.body["thread"]["deleted"], true, "{r:?}");
    let r = get(&host, "/forums/general/threads", None);
    assert!(r.body["items"].as_array().unwrap().is_empty(), "{r:?}");
}

#[test]
fn pages_are_stable_while_members_post_and_pinned_threads_come_first() {
    let host = start(&[]);
    let acme = discussion(&host);
    let mut threads = Vec::new();
    for i in 0..7 {
        threads.push(new_thread(&host, &acme.asha, "general", &format!("Topic {i}"), "text").0);
    }
    // Topic 2 pinned; a reply bumps Topic 0.
    let r = send(
        &host,
        "PATCH",
        &format!("/threads/{}", threads[2]),
        &acme.asha,
        json!({"pinned": true}),
    );
    assert_eq!(r.status, 403, "members do not pin: {r:?}");
    let r = send(
        &host,
        "PATCH",
        &format!("/threads/{}", threads[2]),
        &acme.admin,
        json!({"pinned": true}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        reply(&host, &acme.bikash, threads[0], json!({"body": "bump"})).status,
        201
    );
    let order: Vec<String> = all_pages(&host, "/forums/general/threads", None, 3)
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "Topic 2", "Topic 0", "Topic 6", "Topic 5", "Topic 4", "Topic 3", "Topic 1"
        ]
    );

    // Replies paged while another member keeps posting: each reply exactly
    // once, in order.
    let thread = threads[1];
    for i in 0..10 {
        assert_eq!(
            reply(&host, &acme.asha, thread, json!({"body": format!("r{i}")})).status,
            201
        );
    }
    let writer = {
        let base = host.base.clone();
        let bikash = acme.bikash.clone();
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            for i in 0..10 {
                let res = client
                    .post(format!("{base}{FORUM}/threads/{thread}/posts"))
                    .bearer_auth(&bikash)
                    .json(&json!({"body": format!("w{i}")}))
                    .send()
                    .expect("post");
                assert_eq!(res.status().as_u16(), 201);
            }
        })
    };
    let mut seen: Vec<i64> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(c) => format!("/threads/{thread}/posts?limit=3&after={c}"),
            None => format!("/threads/{thread}/posts?limit=3"),
        };
        let r = get(&host, &url, None);
        assert_eq!(r.status, 200, "{r:?}");
        seen.extend(
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        match r.body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    writer.join().expect("writer");
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seen, sorted, "no post twice, in order");
    assert!(seen.len() >= 11, "{seen:?}");
    let all = all_pages(&host, &format!("/threads/{thread}/posts"), None, 100);
    assert_eq!(all.len(), 21);

    // Cursors and limits are checked.
    assert_eq!(
        get(&host, "/forums/general/threads?after=nonsense", None).status,
        400
    );
    assert_eq!(
        get(&host, "/forums/general/threads?limit=0", None).status,
        400
    );
    assert_eq!(
        get(&host, "/forums/general/threads?limit=101", None).status,
        400
    );
}

#[test]
fn forum_admin_routes_and_the_free_plan_limit() {
    let host = start(&[]);
    let acme = discussion(&host);
    // Members cannot create forums; slugs are unique and checked.
    let r = send(
        &host,
        "POST",
        "/forums",
        &acme.asha,
        json!({"slug": "x", "name": "X"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(
        &host,
        "POST",
        "/forums",
        &acme.admin,
        json!({"slug": "general", "name": "Again"}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    let r = send(
        &host,
        "POST",
        "/forums",
        &acme.admin,
        json!({"slug": "Bad Slug", "name": "X"}),
    );
    assert_eq!(r.status, 422, "{r:?}");
    let r = send(
        &host,
        "POST",
        "/forums",
        &acme.admin,
        json!({"slug": "x", "name": "X", "post": "public"}),
    );
    assert_eq!(r.status, 422, "posting needs a member: {r:?}");
    let r = send(
        &host,
        "POST",
        "/forums",
        &acme.admin,
        json!({"slug": "x", "name": "X", "view": "everyone"}),
    );
    assert_eq!(r.status, 422, "{r:?}");
    // The free test plan keeps three forums.
    new_forum(&host, &acme.admin, "third", "public", "members");
    let r = send(
        &host,
        "POST",
        "/forums",
        &acme.admin,
        json!({"slug": "fourth", "name": "Four"}),
    );
    assert_eq!(r.status, 402, "{r:?}");
    assert_eq!(r.body["reason"], "limit_reached", "{r:?}");
    // A forum made private later disappears for non-members.
    let r = send(
        &host,
        "PATCH",
        "/forums/third",
        &acme.admin,
        json!({"view": "admins", "post": "admins"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(get(&host, "/forums/third", Some(&acme.asha)).status, 404);
    assert_eq!(get(&host, "/forums/third", Some(&acme.admin)).status, 200);
}

/// Every route of the plus plan, as (method, path, body), for thread
/// `thread` and post `post`.
fn plus_routes(thread: i64, post: i64) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        (
            "POST",
            "/conversations".into(),
            Some(json!({"to": ["M-2"], "subject": "s", "body": "b"})),
        ),
        ("GET", "/conversations".into(), None),
        ("GET", "/conversations/1".into(), None),
        (
            "POST",
            "/conversations/1/messages".into(),
            Some(json!({"body": "b"})),
        ),
        (
            "PUT",
            format!("/posts/{post}/attachments?name=a.txt&type=text/plain"),
            Some(json!("x")),
        ),
        ("GET", "/attachments/1".into(), None),
        (
            "POST",
            format!("/threads/{thread}/poll"),
            Some(json!({"question": "q", "options": ["a", "b"]})),
        ),
        ("GET", format!("/threads/{thread}/poll"), None),
        (
            "POST",
            format!("/threads/{thread}/poll/votes"),
            Some(json!({"options": [1]})),
        ),
        (
            "PUT",
            format!("/threads/{thread}/subscription"),
            Some(json!({})),
        ),
        ("DELETE", format!("/threads/{thread}/subscription"), None),
        ("GET", "/notifications".into(), None),
        (
            "POST",
            "/notifications/read".into(),
            Some(json!({"all": true})),
        ),
        (
            "PUT",
            "/me/preferences".into(),
            Some(json!({"digest": true})),
        ),
    ]
}

/// Asserts that every route answers 402 naming `feature`-ish denial.
fn all_402(host: &Host, who: &str, routes: &[(&'static str, String, Option<Value>)]) {
    for (method, path, body) in routes {
        let r = call(
            host,
            method,
            &format!("{FORUM}{path}"),
            Cred::Bearer(who),
            body.clone(),
        );
        assert_eq!(r.status, 402, "{method} {path}: {r:?}");
        assert_eq!(
            r.body["reason"], "feature_not_in_plan",
            "{method} {path}: {r:?}"
        );
    }
}

#[test]
fn every_plus_route_is_402_on_free_and_a_downgrade_keeps_posts_readable() {
    let host = start(&[]);
    let acme = discussion(&host);
    let (thread, opening) = new_thread(&host, &acme.asha, "general", "Plans", "text");
    all_402(&host, &acme.asha, &plus_routes(thread, opening));
    let r = get(&host, &format!("/threads/{thread}/poll"), None);
    assert_eq!(r.status, 402, "anonymous too: {r:?}");

    grant(&host, "plus");
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/poll"),
        &acme.asha,
        json!({"question": "Which day?", "options": ["Sat", "Sun"]}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = reply(&host, &acme.bikash, thread, json!({"body": "on plus"}));
    assert_eq!(r.status, 201, "{r:?}");

    // Back on free: the paid routes close, every post stays readable.
    grant(&host, "free");
    all_402(&host, &acme.asha, &plus_routes(thread, opening));
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 10);
    assert_eq!(posts.len(), 2);
    assert!(posts.iter().all(|p| p["html"].is_string()), "{posts:?}");
    assert_eq!(
        reply(&host, &acme.asha, thread, json!({"body": "still talking"})).status,
        201
    );
}

#[test]
fn members_message_each_other_with_unread_counts() {
    let host = start(&[]);
    let acme = discussion(&host);
    grant(&host, "plus");
    member(&host, &acme.admin, "M-3", "Deepa Gurung");
    let (_, deepa) = user(
        &host,
        &acme.admin,
        "deepa@example.org",
        Some("M-3"),
        "member",
    );

    let r = send(
        &host,
        "POST",
        "/conversations",
        &acme.chandra,
        json!({"to": ["M-1"], "subject": "hi", "body": "hello"}),
    );
    assert_eq!(r.status, 403, "no member, no messages: {r:?}");
    let r = send(
        &host,
        "POST",
        "/conversations",
        &acme.asha,
        json!({"to": ["M-404"], "subject": "hi", "body": "hello"}),
    );
    assert_eq!(r.status, 422, "{r:?}");
    let r = send(
        &host,
        "POST",
        "/conversations",
        &acme.asha,
        json!({"to": ["M-2"], "subject": "Rota", "body": "Can you do <script>x</script>Tuesday?"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let conversation = r.body["conversation"]["id"].as_i64().unwrap();
    assert_eq!(r.body["conversation"]["unread"], 0, "{r:?}");

    let r = get(&host, "/conversations", Some(&acme.bikash));
    assert_eq!(r.body["unread"], 1, "{r:?}");
    assert_eq!(r.body["items"][0]["subject"], "Rota");
    let r = get(
        &host,
        &format!("/conversations/{conversation}"),
        Some(&acme.bikash),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["items"][0]["html"], "<p>Can you do Tuesday?</p>\n");
    assert_eq!(
        get(&host, "/conversations", Some(&acme.bikash)).body["unread"],
        0
    );
    let r = send(
        &host,
        "POST",
        &format!("/conversations/{conversation}/messages"),
        &acme.bikash,
        json!({"body": "Yes."}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/conversations/{conversation}/messages"),
        &acme.bikash,
        json!({"body": "And Wednesday."}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = get(&host, "/conversations", Some(&acme.asha));
    assert_eq!(r.body["unread"], 2, "{r:?}");
    assert_eq!(r.body["items"][0]["unread"], 2, "{r:?}");

    // Not a participant: the conversation does not exist.
    assert_eq!(
        get(
            &host,
            &format!("/conversations/{conversation}"),
            Some(&deepa)
        )
        .status,
        404
    );
    let r = send(
        &host,
        "POST",
        &format!("/conversations/{conversation}/messages"),
        &deepa,
        json!({"body": "me?"}),
    );
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(
        get(&host, "/conversations", Some(&deepa)).body["items"],
        json!([])
    );
}

#[test]
fn one_vote_per_member_under_twenty_parallel_votes() {
    let host = start(&["--tenant-concurrency", "16"]);
    let acme = discussion(&host);
    grant(&host, "plus");
    let (thread, _) = new_thread(&host, &acme.asha, "general", "Vote", "which?");
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/poll"),
        &acme.bikash,
        json!({"question": "q", "options": ["a", "b"]}),
    );
    assert_eq!(r.status, 403, "only the thread's author adds a poll: {r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/poll"),
        &acme.asha,
        json!({"question": "q", "options": ["only one"]}),
    );
    assert_eq!(r.status, 422, "{r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/poll"),
        &acme.asha,
        json!({"question": "Day?", "options": ["Sat", "Sun"]}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let sat = r.body["poll"]["options"][0]["id"].as_i64().unwrap();
    let sun = r.body["poll"]["options"][1]["id"].as_i64().unwrap();
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/poll"),
        &acme.asha,
        json!({"question": "again", "options": ["a", "b"]}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/poll/votes"),
        &acme.bikash,
        json!({"options": [sat, sun]}),
    );
    assert_eq!(r.status, 422, "single choice: {r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/poll/votes"),
        &acme.chandra,
        json!({"options": [sat]}),
    );
    assert_eq!(r.status, 403, "{r:?}");

    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let host = &host;
                let bikash = acme.bikash.as_str();
                scope.spawn(move || {
                    let option = if i % 2 == 0 { sat } else { sun };
                    // Past the tenant's concurrency cap the host answers
                    // 429 before the module runs: such a vote is sent again.
                    loop {
                        let status = send(
                            host,
                            "POST",
                            &format!("/threads/{thread}/poll/votes"),
                            bikash,
                            json!({"options": [option]}),
                        )
                        .status;
                        if status != 429 {
                            return status;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/poll/votes"),
        &acme.asha,
        json!({"options": [sun]}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = get(&host, &format!("/threads/{thread}/poll"), None);
    assert_eq!(r.body["poll"]["voters"], 2, "{r:?}");
    let votes: i64 = r.body["poll"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["votes"].as_i64().unwrap())
        .sum();
    assert_eq!(votes, 2, "{r:?}");
    let db = host.tenant_db("acme");
    let ballots: i64 = db
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND sql IS NULL AND tbl_name LIKE '%ballots'", [], |row| row.get(0))
        .unwrap();
    assert!(ballots >= 1, "the UNIQUE constraint is in the schema");

    // Multiple choice, closing in a minute of the host's clock.
    let (second, _) = new_thread(&host, &acme.asha, "general", "Snacks", "bring what?");
    let r = send(
        &host,
        "POST",
        &format!("/threads/{second}/poll"),
        &acme.asha,
        json!({"question": "What?", "options": ["tea", "cake", "fruit"], "multiple": true, "closes_in_seconds": 60}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let options: Vec<i64> = r.body["poll"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    let r = send(
        &host,
        "POST",
        &format!("/threads/{second}/poll/votes"),
        &acme.bikash,
        json!({"options": [options[0], options[2]]}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["poll"]["my_vote"], json!([options[0], options[2]]));
    let r = send(
        &host,
        "POST",
        &format!("/threads/{second}/poll/votes"),
        &acme.asha,
        json!({"options": [sat]}),
    );
    assert_eq!(r.status, 422, "another poll's option: {r:?}");
    advance(&host, 61);
    let r = send(
        &host,
        "POST",
        &format!("/threads/{second}/poll/votes"),
        &acme.asha,
        json!({"options": [options[1]]}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(
        r.body["type"],
        "https://souk.dev/problems/forum/poll-closed"
    );

    // The plus test plan keeps three polls.
    let (third, _) = new_thread(&host, &acme.asha, "general", "Third", "t");
    let (fourth, _) = new_thread(&host, &acme.asha, "general", "Fourth", "t");
    let poll = json!({"question": "q", "options": ["a", "b"]});
    assert_eq!(
        send(
            &host,
            "POST",
            &format!("/threads/{third}/poll"),
            &acme.asha,
            poll.clone()
        )
        .status,
        201
    );
    let r = send(
        &host,
        "POST",
        &format!("/threads/{fourth}/poll"),
        &acme.asha,
        poll,
    );
    assert_eq!(r.status, 402, "{r:?}");
}

/// A PNG by its signature, `len` bytes long.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(len, b'x');
    bytes
}

fn upload(
    host: &Host,
    who: &str,
    post: i64,
    name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let res = host
        .client
        .put(format!(
            "{}{FORUM}/posts/{post}/attachments?name={name}&type={content_type}",
            host.base
        ))
        .bearer_auth(who)
        .body(bytes)
        .send()
        .expect("upload");
    let status = res.status().as_u16();
    (
        status,
        serde_json::from_slice(&res.bytes().unwrap()).unwrap_or(Value::Null),
    )
}

#[test]
fn attachments_are_checked_for_type_size_and_quota() {
    let host = start(&[]);
    let acme = discussion(&host);
    grant(&host, "plus");
    let (thread, opening) = new_thread(&host, &acme.asha, "general", "Photos", "look");

    let (status, body) = upload(&host, &acme.asha, opening, "a.png", "image/png", png(2000));
    assert_eq!(status, 201, "{body}");
    let attachment = body["attachment"]["id"].as_i64().unwrap();
    let (status, body) = upload(&host, &acme.bikash, opening, "b.png", "image/png", png(10));
    assert_eq!(status, 403, "another's post: {body}");
    let (status, body) = upload(
        &host,
        &acme.asha,
        opening,
        "x.png",
        "image/png",
        b"MZ\x90\x00 not a png".to_vec(),
    );
    assert_eq!(status, 415, "the bytes are not a PNG: {body}");
    let (status, body) = upload(
        &host,
        &acme.asha,
        opening,
        "x.zip",
        "application/zip",
        b"PK\x03\x04zip".to_vec(),
    );
    assert_eq!(status, 415, "not on the allow-list: {body}");
    let (status, body) = upload(
        &host,
        &acme.asha,
        opening,
        "big.png",
        "image/png",
        png(512 * 1024 + 1),
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        body["type"], "https://souk.dev/problems/forum/attachment-too-large",
        "{body}"
    );
    let (status, body) = upload(&host, &acme.asha, opening, "c.png", "image/png", png(2000));
    assert_eq!(status, 402, "3000 bytes on the plus test plan: {body}");
    assert_eq!(body["reason"], "limit_reached", "{body}");

    // The post lists it; anybody who reads the post gets a signed URL.
    let r = get(&host, &format!("/threads/{thread}"), None);
    assert_eq!(r.body["post"]["attachments"][0]["name"], "a.png", "{r:?}");
    let r = get(&host, &format!("/attachments/{attachment}"), None);
    assert_eq!(r.status, 200, "{r:?}");
    let url = r.body["url"].as_str().unwrap();
    let res = host
        .client
        .get(format!("{}{url}", host.base))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.bytes().unwrap().to_vec(), png(2000));
    assert_eq!(get(&host, "/attachments/999", None).status, 404);
}

fn mails_to(sink: &crate::smtp_sink::SmtpSink, address: &str, subject: &str) -> usize {
    sink.messages()
        .iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r.contains(address)))
        .filter(|m| m.header("subject").is_some_and(|s| s.contains(subject)))
        .count()
}

fn wait_mails(sink: &crate::smtp_sink::SmtpSink, address: &str, subject: &str, n: usize) {
    crate::events::wait_until(&format!("{n} mails {subject} to {address}"), || {
        (mails_to(sink, address, subject) >= n).then_some(())
    });
    // Nothing more comes after a moment.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(mails_to(sink, address, subject), n, "{address} {subject}");
}

#[test]
fn subscribers_get_one_email_per_reply_or_a_daily_digest() {
    let sink = crate::smtp_sink::SmtpSink::start();
    let smtp = sink.url();
    let host = start(&[
        "--smtp-url",
        smtp.as_str(),
        "--mail-from",
        "Forum <forum@souk.test>",
    ]);
    let acme = discussion(&host);
    grant(&host, "plus");
    let (thread, _) = new_thread(&host, &acme.asha, "general", "Picnic", "Saturday?");

    // Asha is subscribed as the author: one email per reply, none for
    // Bikash's own reply.
    assert_eq!(
        reply(&host, &acme.bikash, thread, json!({"body": "Yes!"})).status,
        201
    );
    wait_mails(&sink, "asha@example.org", "New reply", 1);
    assert_eq!(mails_to(&sink, "bikash@example.org", "New reply"), 0);
    assert_eq!(
        reply(&host, &acme.asha, thread, json!({"body": "Great"})).status,
        201
    );
    wait_mails(&sink, "bikash@example.org", "New reply", 1);
    wait_mails(&sink, "asha@example.org", "New reply", 1);

    // The in-app list.
    let r = get(&host, "/notifications?unread=true", Some(&acme.asha));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["unread"], 1, "{r:?}");
    assert_eq!(r.body["items"][0]["title"], "Picnic");
    let r = send(
        &host,
        "POST",
        "/notifications/read",
        &acme.asha,
        json!({"all": true}),
    );
    assert_eq!(r.body["unread"], 0, "{r:?}");
    let r = send(
        &host,
        "PUT",
        &format!("/threads/{thread}/subscription"),
        &acme.chandra,
        json!({}),
    );
    assert_eq!(r.status, 403, "{r:?}");

    // Unsubscribed: no more email (the reply comes from Bikash, who is
    // subscribed as a poster but does not mail himself).
    let r = call(
        &host,
        "DELETE",
        &format!("{FORUM}/threads/{thread}/subscription"),
        Cred::Bearer(&acme.asha),
        None,
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        reply(&host, &acme.bikash, thread, json!({"body": "three"})).status,
        201
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(mails_to(&sink, "asha@example.org", "New reply"), 1);

    // Bikash wants a digest: nothing per reply, one email on the schedule
    // (the clock moves a day: sessions idle out, so nothing is asked after).
    let r = send(
        &host,
        "PUT",
        "/me/preferences",
        &acme.bikash,
        json!({"digest": true}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        reply(&host, &acme.asha, thread, json!({"body": "one"})).status,
        201
    );
    assert_eq!(
        reply(&host, &acme.asha, thread, json!({"body": "two"})).status,
        201
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(mails_to(&sink, "bikash@example.org", "New reply"), 1);
    assert_eq!(mails_to(&sink, "bikash@example.org", "digest"), 0);
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"advance_seconds": 86_400}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    wait_mails(&sink, "bikash@example.org", "digest", 1);
    let digest = sink
        .messages()
        .into_iter()
        .find(|m| m.header("subject").is_some_and(|s| s.contains("digest")))
        .unwrap();
    assert!(digest.data.contains("2 new replies"), "{}", digest.data);
}

/// Every route of the community plan, as (method, path, body).
fn community_routes(thread: i64, post: i64) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/forums/general/moderators".into(), None),
        (
            "PUT",
            "/forums/general/moderators/M-2".into(),
            Some(json!({})),
        ),
        ("DELETE", "/forums/general/moderators/M-2".into(), None),
        (
            "POST",
            format!("/posts/{post}/hide"),
            Some(json!({"reason": "r"})),
        ),
        (
            "POST",
            format!("/posts/{post}/restore"),
            Some(json!({"reason": "r"})),
        ),
        (
            "POST",
            format!("/threads/{thread}/move"),
            Some(json!({"forum": "committee", "reason": "r"})),
        ),
        (
            "POST",
            "/forums/general/bans".into(),
            Some(json!({"number": "M-2", "reason": "r"})),
        ),
        ("GET", "/forums/general/bans".into(), None),
        ("DELETE", "/forums/general/bans/M-2".into(), None),
        ("GET", "/forums/general/log".into(), None),
        (
            "POST",
            format!("/posts/{post}/reports"),
            Some(json!({"reason": "r"})),
        ),
        ("GET", "/reports".into(), None),
        ("POST", "/reports/1/resolve".into(), Some(json!({}))),
        ("GET", "/analytics".into(), None),
        ("GET", "/theme".into(), None),
        (
            "PUT",
            "/theme".into(),
            Some(json!({"primary": "#000000", "background": "#ffffff", "text": "#000000"})),
        ),
    ]
}

#[test]
fn every_community_route_is_402_on_free_and_on_plus() {
    let host = start(&[]);
    let acme = discussion(&host);
    let (thread, opening) = new_thread(&host, &acme.asha, "general", "Gates", "text");
    let routes = community_routes(thread, opening);
    all_402(&host, &acme.admin, &routes);
    grant(&host, "plus");
    all_402(&host, &acme.admin, &routes);
    let r = call(
        &host,
        "GET",
        &format!("{FORUM}/analytics"),
        Cred::Bearer(&acme.admin),
        None,
    );
    assert_eq!(r.body["upgrade_plan"], "community", "{r:?}");
    // API keys of the forum need the community plan too.
    let r = call(
        &host,
        "POST",
        "/v1/tenants/acme/api-keys",
        Cred::Bearer(&acme.admin),
        Some(json!({"module": "forum", "name": "crm"})),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let key = r.body["key"].as_str().unwrap().to_owned();
    let r = get(&host, "/forums", Some(&key));
    assert_eq!(r.status, 402, "{r:?}");
    assert_eq!(r.body["feature"], "api_access", "{r:?}");
    grant(&host, "community");
    let r = get(&host, "/forums", Some(&key));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        1,
        "an API key sees public forums: {r:?}"
    );
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/posts"),
        &key,
        json!({"body": "from the CRM"}),
    );
    assert_eq!(r.status, 403, "a key is no member and posts nothing: {r:?}");
}

#[test]
fn moderators_hide_ban_move_and_work_the_report_queue_with_a_log() {
    let host = start(&[]);
    let acme = discussion(&host);
    grant(&host, "community");
    member(&host, &acme.admin, "M-3", "Deepa Gurung");
    let (_, deepa) = user(
        &host,
        &acme.admin,
        "deepa@example.org",
        Some("M-3"),
        "member",
    );
    new_forum(&host, &acme.admin, "archive", "public", "members");
    let (thread, _) = new_thread(&host, &acme.asha, "general", "Market day", "Stalls?");
    let r = reply(&host, &deepa, thread, json!({"body": "Buy my stuff!!!"}));
    let spam = r.body["post"]["id"].as_i64().unwrap();

    // Only admins appoint moderators; members are not moderators.
    let r = send(
        &host,
        "PUT",
        "/forums/general/moderators/M-2",
        &acme.asha,
        json!({}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/posts/{spam}/hide"),
        &acme.asha,
        json!({"reason": "spam"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(
        &host,
        "PUT",
        "/forums/general/moderators/M-2",
        &acme.admin,
        json!({}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(&host, "/forums/general/moderators", Some(&acme.asha));
    assert_eq!(r.body["moderators"], json!(["M-2"]), "{r:?}");

    // Reports: once per member and post; the queue is the moderators'.
    let r = send(
        &host,
        "POST",
        &format!("/posts/{spam}/reports"),
        &acme.asha,
        json!({"reason": "advertising"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let report = r.body["report"].as_i64().unwrap();
    let r = send(
        &host,
        "POST",
        &format!("/posts/{spam}/reports"),
        &acme.asha,
        json!({"reason": "again"}),
    );
    assert_eq!(r.status, 409, "{r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/posts/{spam}/reports"),
        &acme.chandra,
        json!({"reason": "x"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        get(&host, "/reports", Some(&acme.asha)).body["items"],
        json!([])
    );
    let r = get(&host, "/reports", Some(&acme.bikash));
    assert_eq!(r.body["items"][0]["post"], spam, "{r:?}");
    assert_eq!(r.body["items"][0]["reason"], "advertising");

    // The moderator hides the post with a reason: gone for readers, the
    // reason shown to its author and moderators.
    let r = send(
        &host,
        "POST",
        &format!("/posts/{spam}/hide"),
        &acme.bikash,
        json!({"reason": "advertising is not allowed"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 10);
    assert_eq!(posts[1]["hidden"], true);
    assert!(
        posts[1]["html"].is_null() && posts[1].get("hidden_reason").is_none(),
        "{posts:?}"
    );
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), Some(&deepa), 10);
    assert_eq!(
        posts[1]["hidden_reason"], "advertising is not allowed",
        "{posts:?}"
    );
    let posts = all_pages(
        &host,
        &format!("/threads/{thread}/posts"),
        Some(&acme.bikash),
        10,
    );
    assert!(
        posts[1]["html"].is_string(),
        "moderators still read it: {posts:?}"
    );
    let r = send(
        &host,
        "PATCH",
        &format!("/posts/{spam}"),
        &deepa,
        json!({"body": "edited away"}),
    );
    assert_eq!(r.status, 403, "a hidden post is not edited: {r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/reports/{report}/resolve"),
        &acme.asha,
        json!({}),
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/reports/{report}/resolve"),
        &acme.bikash,
        json!({}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        get(&host, "/reports", Some(&acme.bikash)).body["items"],
        json!([])
    );

    // A ban for a while: the banned member's post is refused, then not.
    let r = send(
        &host,
        "POST",
        "/forums/general/bans",
        &acme.bikash,
        json!({"number": "M-3", "reason": "spamming", "seconds": 60}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["ban"]["active"], true, "{r:?}");
    let r = reply(&host, &deepa, thread, json!({"body": "let me in"}));
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["type"], "https://souk.dev/problems/forum/banned");
    let r = send(
        &host,
        "POST",
        "/forums/general/threads",
        &deepa,
        json!({"title": "t", "body": "b"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        reply(
            &host,
            &acme.asha,
            thread,
            json!({"body": "others still post"})
        )
        .status,
        201
    );
    advance(&host, 61);
    assert_eq!(
        reply(&host, &deepa, thread, json!({"body": "sorry"})).status,
        201
    );
    let r = send(
        &host,
        "POST",
        "/forums/general/bans",
        &acme.bikash,
        json!({"number": "M-3", "reason": "again"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert!(r.body["ban"]["until"].is_null(), "{r:?}");
    assert_eq!(
        reply(&host, &deepa, thread, json!({"body": "hello?"})).status,
        403
    );
    let r = call(
        &host,
        "DELETE",
        &format!("{FORUM}/forums/general/bans/M-3"),
        Cred::Bearer(&acme.bikash),
        None,
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        reply(&host, &deepa, thread, json!({"body": "thanks"})).status,
        201
    );

    // Lock: members are refused, moderators reply.
    let r = send(
        &host,
        "PATCH",
        &format!("/threads/{thread}"),
        &acme.bikash,
        json!({"locked": true}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        reply(&host, &acme.asha, thread, json!({"body": "one more"})).status,
        423
    );
    assert_eq!(
        reply(&host, &acme.bikash, thread, json!({"body": "closing"})).status,
        201
    );

    // Moving needs the moderator of both forums.
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/move"),
        &acme.bikash,
        json!({"forum": "archive", "reason": "done"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(
        &host,
        "PUT",
        "/forums/archive/moderators/M-2",
        &acme.admin,
        json!({}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = send(
        &host,
        "POST",
        &format!("/threads/{thread}/move"),
        &acme.bikash,
        json!({"forum": "archive", "reason": "done"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(&host, "/forums/archive/threads", None);
    assert_eq!(r.body["items"][0]["id"], thread, "{r:?}");

    // The log says who did what, and why; members do not read it.
    assert_eq!(
        get(&host, "/forums/general/log", Some(&acme.asha)).status,
        403
    );
    let r = get(&host, "/forums/general/log?limit=100", Some(&acme.bikash));
    assert_eq!(r.status, 200, "{r:?}");
    let hide = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "hide")
        .cloned()
        .unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(hide["actor_name"], "bikash");
    assert_eq!(hide["reason"], "advertising is not allowed");
    assert_eq!(hide["target"], format!("post {spam}"));
    let actions: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "add_moderator",
        "resolve_report",
        "ban",
        "unban",
        "lock",
        "move",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }

    // Restore brings the post back.
    let r = send(
        &host,
        "POST",
        &format!("/posts/{spam}/restore"),
        &acme.bikash,
        json!({"reason": "appeal granted"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 10);
    assert!(posts[1]["html"].is_string(), "{posts:?}");
}

#[test]
fn analytics_themes_the_html_view_and_webhooks() {
    let receiver = crate::events::Receiver::start(&[]);
    let host = start(&crate::events::LOOPBACK);
    let acme = discussion(&host);
    grant(&host, "community");
    let a = host.post(
        "/v1/tenants/acme/modules/forum/webhooks",
        &acme.admin,
        json!({"url": receiver.url, "event_types": ["thread.created", "post.hidden"]}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let secret = a.body["secret"].as_str().unwrap().to_owned();

    let (thread, _) = new_thread(
        &host,
        &acme.asha,
        "general",
        "<b>Bold</b> title",
        "<script>alert(1)</script>Hello",
    );
    let r = reply(&host, &acme.bikash, thread, json!({"body": "hi"}));
    let post = r.body["post"]["id"].as_i64().unwrap();
    assert_eq!(
        reply(&host, &acme.asha, thread, json!({"body": "hello again"})).status,
        201
    );
    new_thread(&host, &acme.bikash, "general", "Quiet", "nobody answers");

    // Webhooks: thread.created, then post.hidden (post.created was not asked for).
    let got = receiver.wait_for(2);
    assert!(crate::events::verify(&secret, &got[0]));
    assert_eq!(got[0].json()["type"], "thread.created");
    assert_eq!(got[0].json()["data"]["thread"], thread);
    assert_eq!(got[0].json()["data"]["author"]["number"], "M-1");
    let r = send(
        &host,
        "POST",
        &format!("/posts/{post}/hide"),
        &acme.admin,
        json!({"reason": "test"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let got = receiver.wait_for(3);
    let hidden = got
        .iter()
        .find(|g| g.json()["type"] == "post.hidden")
        .expect("post.hidden delivered");
    assert_eq!(hidden.json()["data"]["post"], post);
    assert_eq!(hidden.json()["data"]["reason"], "test");

    // Analytics.
    assert_eq!(get(&host, "/analytics", Some(&acme.asha)).status, 403);
    let r = get(&host, "/analytics?days=7", Some(&acme.admin));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["per_day"][0]["posts"], 4, "{r:?}");
    assert_eq!(r.body["per_day"][0]["active_members"], 2, "{r:?}");
    assert_eq!(r.body["busiest_threads"][0]["id"], thread, "{r:?}");
    assert_eq!(r.body["busiest_threads"][0]["posts"], 3, "{r:?}");
    assert_eq!(r.body["response_times"]["threads"], 2, "{r:?}");
    assert_eq!(r.body["response_times"]["answered"], 1, "{r:?}");
    assert_eq!(r.body["response_times"]["unanswered"], 1, "{r:?}");
    assert!(
        r.body["response_times"]["median_first_reply_seconds"]
            .as_i64()
            .unwrap()
            >= 0
    );
    assert_eq!(
        get(&host, "/analytics?days=0", Some(&acme.admin)).status,
        400
    );

    // Themes: strict colours and logo; the HTML view uses them, with no
    // script anywhere and a CSP that forbids it.
    let r = send(
        &host,
        "PUT",
        "/theme",
        &acme.admin,
        json!({"primary": "red;}</style><script>", "background": "#ffffff", "text": "#000000"}),
    );
    assert_eq!(r.status, 422, "{r:?}");
    let r = send(
        &host,
        "PUT",
        "/theme",
        &acme.admin,
        json!({"primary": "#aa0000", "background": "#fffff0", "text": "#111111", "logo_url": "javascript:alert(1)"}),
    );
    assert_eq!(r.status, 422, "{r:?}");
    let r = send(
        &host,
        "PUT",
        "/theme",
        &acme.asha,
        json!({"primary": "#aa0000", "background": "#fffff0", "text": "#111111"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(
        &host,
        "PUT",
        "/theme",
        &acme.admin,
        json!({"primary": "#AA0000", "background": "#fffff0", "text": "#111111", "logo_url": "https://example.org/logo.png"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["primary"], "#aa0000");
    let page = get(&host, &format!("/view/threads/{thread}"), None);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(
        page.text.contains("#aa0000") && page.text.contains("https://example.org/logo.png"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("&lt;b&gt;Bold&lt;/b&gt; title"),
        "{}",
        page.text
    );
    assert!(
        !page.text.to_ascii_lowercase().contains("<script"),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("<p><em>removed</em></p>"),
        "the hidden post: {}",
        page.text
    );

    // On plus the theme route closes and the page falls back to the default.
    grant(&host, "plus");
    assert_eq!(get(&host, "/theme", None).status, 402);
    let page = get(&host, &format!("/view/threads/{thread}"), None);
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("#aa0000"), "{}", page.text);
}

#[test]
fn sso_sign_in_only_with_the_community_plan() {
    let host = start(&["--sso-allow-insecure"]);
    let admin = acme(&host);
    let provider = crate::oidc_provider::Provider::start(
        crate::sso::start_unix(),
        crate::sso::person("ravi@example.org", true),
    );
    for plan in ["free", "plus"] {
        grant(&host, plan);
        let a = crate::sso::configure(&host, "acme", &admin, crate::sso::settings(&provider));
        assert_eq!(a.status, 402, "{plan}: {a:?}");
        assert_eq!(a.body["feature"], "sso", "{a:?}");
    }
    grant(&host, "community");
    let a = crate::sso::configure(&host, "acme", &admin, crate::sso::settings(&provider));
    assert_eq!(a.status, 200, "{a:?}");
    let signed_in = crate::sso::finish(&crate::sso::begin(&host, "acme", &format!("{FORUM}/me")));
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    let me = crate::sso::with_session(&host, "GET", &format!("{FORUM}/me"), &signed_in, false);
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["name"], "Alice Example", "{me:?}");
    assert_eq!(
        me.body["may_post"], false,
        "not linked to a member yet: {me:?}"
    );
}

#[test]
fn upgrading_from_the_basic_release_keeps_posts_and_subscribes_their_authors() {
    let plans = workspace_root().join("tests/e2e/plans-forum");
    let plans = plans.to_str().expect("utf-8 path").to_owned();
    let host = Host::start_with(
        &["membership", "forum-v1_0", "forum"],
        &[
            "--plans",
            plans.as_str(),
            "--manual-clock",
            crate::sso::START,
        ],
    );
    let admin = host.tenant_with("acme", "membership");
    let a = host.post(
        "/v1/tenants/acme/modules",
        &admin,
        json!({"module": "forum", "version": "1.0.0"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    member(&host, &admin, "M-1", "Asha Rai");
    member(&host, &admin, "M-2", "Bikash Thapa");
    let (_, asha) = user(&host, &admin, "asha@example.org", Some("M-1"), "member");
    let (_, bikash) = user(&host, &admin, "bikash@example.org", Some("M-2"), "member");
    new_forum(&host, &admin, "general", "public", "members");
    let (thread, _) = new_thread(&host, &asha, "general", "Before", "posted on 1.0");
    assert_eq!(
        reply(&host, &bikash, thread, json!({"body": "me too"})).status,
        201
    );
    // 1.0.0 has no plus routes at all.
    assert_eq!(get(&host, "/notifications", Some(&asha)).status, 404);

    let a = host.post("/v1/tenants/acme/modules/forum/upgrade", &admin, json!({}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["installation"]["version"], "1.1.0");
    assert_eq!(
        a.body["applied_migrations"],
        json!(["0003_plus", "0004_community"])
    );

    // Everything posted before is there; the plus routes are gated.
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 10);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0]["html"], "<p>posted on 1.0</p>\n");
    assert_eq!(get(&host, "/notifications", Some(&asha)).status, 402);
    grant(&host, "plus");
    // Asha was subscribed by the upgrade, as the author she was.
    assert_eq!(
        reply(&host, &bikash, thread, json!({"body": "after the upgrade"})).status,
        201
    );
    let r = get(&host, "/notifications", Some(&asha));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["unread"], 1, "{r:?}");
    assert_eq!(r.body["items"][0]["thread"], thread, "{r:?}");
}
