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
fn user(host: &Host, admin: &str, email: &str, number: Option<&str>, role: &str) -> (String, String) {
    let mut body = json!({"email": email, "display_name": email.split('@').next().unwrap(), "role": role});
    if let Some(number) = number {
        body["member_number"] = json!(number);
    }
    let r = call(host, "POST", "/v1/tenants/acme/users", Cred::Bearer(admin), Some(body));
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
    call(host, method, &format!("{FORUM}{path}"), Cred::Bearer(who), Some(body))
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

    let (thread, opening) = new_thread(&host, &acme.asha, "general", "Picnic", "Shall we meet **Saturday**?");
    let r = reply(&host, &acme.bikash, thread, json!({"body": "Saturday works.", "quote": opening}));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["post"]["author"], json!({"number": "M-2", "name": "Bikash Thapa", "left": false}));
    assert_eq!(r.body["post"]["quote"]["id"], opening);
    assert_eq!(r.body["post"]["quote"]["author"]["name"], "Asha Rai");
    let r = reply(&host, &acme.asha, thread, json!({"body": "Great, see you."}));
    assert_eq!(r.status, 201, "{r:?}");

    // Anybody reads the public forum; the opening post is rendered.
    let r = get(&host, &format!("/threads/{thread}"), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["thread"]["title"], "Picnic");
    assert_eq!(r.body["thread"]["replies"], 2);
    assert_eq!(r.body["thread"]["views"], 1);
    assert_eq!(r.body["post"]["html"], "<p>Shall we meet <strong>Saturday</strong>?</p>\n");
    assert!(r.body["post"].get("markdown").is_none(), "source only for its author: {r:?}");
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 2);
    let authors: Vec<&str> = posts.iter().map(|p| p["author"]["name"].as_str().unwrap()).collect();
    assert_eq!(authors, ["Asha Rai", "Bikash Thapa", "Asha Rai"]);

    // Chandra is signed in but no member: reads public, posts nowhere.
    let r = get(&host, &format!("/threads/{thread}/posts"), Some(&acme.chandra));
    assert_eq!(r.status, 200, "{r:?}");
    let r = reply(&host, &acme.chandra, thread, json!({"body": "me too"}));
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(&host, "POST", "/forums/general/threads", &acme.chandra, json!({"title": "x", "body": "y"}));
    assert_eq!(r.status, 403, "{r:?}");
    // Anonymous callers cannot reach member routes at all.
    let r = call(&host, "POST", &format!("{FORUM}/threads/{thread}/posts"), Cred::Nobody, Some(json!({"body": "anon"})));
    assert_eq!(r.status, 401, "{r:?}");

    // The members-only forum is invisible (404) to Chandra and to nobody,
    // visible to members, and only admins post there.
    for who in [None, Some(acme.chandra.as_str())] {
        let r = get(&host, "/forums/committee", who);
        assert_eq!(r.status, 404, "{r:?}");
        let r = get(&host, "/forums/committee/threads", who);
        assert_eq!(r.status, 404, "{r:?}");
        let r = get(&host, "/forums", who);
        let slugs: Vec<&str> = r.body["items"].as_array().unwrap().iter().map(|f| f["slug"].as_str().unwrap()).collect();
        assert_eq!(slugs, ["general"], "{r:?}");
    }
    let r = get(&host, "/forums", Some(&acme.asha));
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2, "{r:?}");
    let r = send(&host, "POST", "/forums/committee/threads", &acme.asha, json!({"title": "x", "body": "y"}));
    assert_eq!(r.status, 403, "admins only post here: {r:?}");
    let (minutes, _) = new_thread(&host, &acme.admin, "committee", "Minutes", "The minutes.");
    let r = get(&host, &format!("/threads/{minutes}"), Some(&acme.bikash));
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(&host, &format!("/threads/{minutes}"), Some(&acme.chandra));
    assert_eq!(r.status, 404, "a private thread is invisible: {r:?}");
    let r = get(&host, &format!("/threads/{minutes}/posts"), None);
    assert_eq!(r.status, 404, "{r:?}");
    let r = get(&host, &format!("/threads/{minutes}"), Some(&acme.admin));
    assert_eq!(r.body["thread"]["views"], 2, "refused views are not counted: {r:?}");

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
    assert!(posts[1]["html"].is_string(), "a leaver's posts stay: {posts:?}");
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
        "p", "a", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "br", "hr", "del",
        "img", "table", "thead", "tbody", "tr", "th", "td", "h1", "h2", "h3", "div", "span", "b",
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
            if ["javascript:", "data:", "vbscript:"].iter().any(|scheme| attribute.contains(scheme)) {
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
    let (thread, _) = new_thread(&host, &acme.asha, "general", "<script>alert(1)</script>", payloads[0]);
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
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/json"));
}

#[test]
fn authors_edit_within_the_window_with_history_and_soft_delete() {
    let host = start(&[]);
    let acme = discussion(&host);
    let (thread, opening) = new_thread(&host, &acme.asha, "general", "Draft", "first words");
    let r = reply(&host, &acme.bikash, thread, json!({"body": "a reply"}));
    let reply_id = r.body["post"]["id"].as_i64().unwrap();

    // Only the author edits; the earlier body is kept.
    let r = send(&host, "PATCH", &format!("/posts/{opening}"), &acme.bikash, json!({"body": "hijack"}));
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(&host, "PATCH", &format!("/posts/{opening}"), &acme.admin, json!({"body": "admin edit"}));
    assert_eq!(r.status, 403, "not even an admin edits another's words: {r:?}");
    let r = send(&host, "PATCH", &format!("/posts/{opening}"), &acme.asha, json!({"body": "second *words*"}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["post"]["html"], "<p>second <em>words</em></p>\n");
    assert_eq!(r.body["post"]["markdown"], "second *words*");
    assert_eq!(r.body["post"]["edits"], 1);
    let r = send(&host, "PATCH", &format!("/threads/{thread}"), &acme.asha, json!({"title": "Final"}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["thread"]["title"], "Final");
    let r = get(&host, &format!("/posts/{opening}/history"), None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["history"][0]["html"], "<p>first words</p>\n");
    assert_eq!(r.body["history"].as_array().unwrap().len(), 1);

    // A window of one second: closed after two.
    let r = call(&host, "PUT", &format!("{FORUM}/settings"), Cred::Bearer(&acme.admin), Some(json!({"edit_window_seconds": 1})));
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(&host, "PUT", &format!("{FORUM}/settings"), Cred::Bearer(&acme.asha), Some(json!({"edit_window_seconds": 100000})));
    assert_eq!(r.status, 403, "members do not change settings: {r:?}");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = send(&host, "PATCH", &format!("/posts/{opening}"), &acme.asha, json!({"body": "too late"}));
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["type"], "https://souk.dev/problems/forum/edit-window-closed");
    let r = send(&host, "PATCH", &format!("/threads/{thread}"), &acme.asha, json!({"title": "Later"}));
    assert_eq!(r.status, 403, "{r:?}");

    // Soft delete: others may not; the author may; the place stays.
    let r = call(&host, "DELETE", &format!("{FORUM}/posts/{reply_id}"), Cred::Bearer(&acme.asha), None);
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(&host, "DELETE", &format!("{FORUM}/posts/{reply_id}"), Cred::Bearer(&acme.bikash), None);
    assert_eq!(r.status, 204, "{r:?}");
    let posts = all_pages(&host, &format!("/threads/{thread}/posts"), None, 10);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1]["deleted"], true);
    assert!(posts[1]["html"].is_null(), "{posts:?}");
    assert_eq!(get(&host, &format!("/posts/{reply_id}/history"), None).status, 404);
    let r = get(&host, "/members/M-2", None);
    assert_eq!(r.body["profile"]["posts"], 0, "{r:?}");

    // Deleting the thread hides it from everybody but moderators.
    let r = call(&host, "DELETE", &format!("{FORUM}/threads/{thread}"), Cred::Bearer(&acme.bikash), None);
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(&host, "DELETE", &format!("{FORUM}/threads/{thread}"), Cred::Bearer(&acme.asha), None);
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(get(&host, &format!("/threads/{thread}"), None).status, 404);
    assert_eq!(get(&host, &format!("/threads/{thread}"), Some(&acme.asha)).status, 404);
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
    let r = send(&host, "PATCH", &format!("/threads/{}", threads[2]), &acme.asha, json!({"pinned": true}));
    assert_eq!(r.status, 403, "members do not pin: {r:?}");
    let r = send(&host, "PATCH", &format!("/threads/{}", threads[2]), &acme.admin, json!({"pinned": true}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(reply(&host, &acme.bikash, threads[0], json!({"body": "bump"})).status, 201);
    let order: Vec<String> = all_pages(&host, "/forums/general/threads", None, 3)
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["Topic 2", "Topic 0", "Topic 6", "Topic 5", "Topic 4", "Topic 3", "Topic 1"]);

    // Replies paged while another member keeps posting: each reply exactly
    // once, in order.
    let thread = threads[1];
    for i in 0..10 {
        assert_eq!(reply(&host, &acme.asha, thread, json!({"body": format!("r{i}")})).status, 201);
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
        seen.extend(r.body["items"].as_array().unwrap().iter().map(|p| p["id"].as_i64().unwrap()));
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
    assert_eq!(get(&host, "/forums/general/threads?after=nonsense", None).status, 400);
    assert_eq!(get(&host, "/forums/general/threads?limit=0", None).status, 400);
    assert_eq!(get(&host, "/forums/general/threads?limit=101", None).status, 400);
}

#[test]
fn forum_admin_routes_and_the_free_plan_limit() {
    let host = start(&[]);
    let acme = discussion(&host);
    // Members cannot create forums; slugs are unique and checked.
    let r = send(&host, "POST", "/forums", &acme.asha, json!({"slug": "x", "name": "X"}));
    assert_eq!(r.status, 403, "{r:?}");
    let r = send(&host, "POST", "/forums", &acme.admin, json!({"slug": "general", "name": "Again"}));
    assert_eq!(r.status, 409, "{r:?}");
    let r = send(&host, "POST", "/forums", &acme.admin, json!({"slug": "Bad Slug", "name": "X"}));
    assert_eq!(r.status, 422, "{r:?}");
    let r = send(&host, "POST", "/forums", &acme.admin, json!({"slug": "x", "name": "X", "post": "public"}));
    assert_eq!(r.status, 422, "posting needs a member: {r:?}");
    let r = send(&host, "POST", "/forums", &acme.admin, json!({"slug": "x", "name": "X", "view": "everyone"}));
    assert_eq!(r.status, 422, "{r:?}");
    // The free test plan keeps three forums.
    new_forum(&host, &acme.admin, "third", "public", "members");
    let r = send(&host, "POST", "/forums", &acme.admin, json!({"slug": "fourth", "name": "Four"}));
    assert_eq!(r.status, 402, "{r:?}");
    assert_eq!(r.body["reason"], "limit_reached", "{r:?}");
    // A forum made private later disappears for non-members.
    let r = send(&host, "PATCH", "/forums/third", &acme.admin, json!({"view": "admins", "post": "admins"}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(get(&host, "/forums/third", Some(&acme.asha)).status, 404);
    assert_eq!(get(&host, "/forums/third", Some(&acme.admin)).status, 200);
}
