//! Digital Card 1.2.0's templates and bulk QR zip through the real binary,
//! on the test plans of tests/e2e/plans-card (free: no templates of its
//! own; pro: 2; business: unlimited) and a manual clock: the advanced and
//! premium templates and what each plan may use, the tenant's own
//! templates (validation, `max_templates`, Idempotency-Key, delete), a
//! downgrade that keeps cards on premium templates readable, the zip of
//! QR code SVGs, and the upgrade from 1.1.0 with data.

use serde_json::{Value, json};

use crate::digital_card::{CARDS, card, decode_qr, issue, setup, stranger_get, wait_for_job};
use crate::membership::start;
use crate::support::{Answer, Host};

const TEMPLATES: &str = "/t/acme/m/digital-card/templates";

fn grant(host: &Host, module: &str, plan: &str) {
    let a = host.post(
        &format!("/v1/tenants/acme/subscriptions/{module}/grant"),
        &host.operator,
        json!({"plan": plan}),
    );
    assert_eq!(a.status, 200, "{a:?}");
}

fn put(host: &Host, path: &str, token: &str, body: Value) -> Answer {
    host.request(
        "PUT",
        path,
        Some(token),
        Some(body.to_string().into_bytes()),
    )
}

/// `POST /templates` with an `Idempotency-Key`.
fn create_with_key(host: &Host, token: &str, key: &str, body: &Value) -> Answer {
    let res = host
        .client
        .post(format!("{}{TEMPLATES}", host.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_string())
        .send()
        .expect("request sent");
    let status = res.status().as_u16();
    let bytes = res.bytes().expect("body").to_vec();
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        content_type: String::new(),
        bytes,
    }
}

/// The tenant's usage line of a Digital Card limit: (used, limit).
fn usage(host: &Host, token: &str, key: &str) -> (Option<u64>, Option<u64>) {
    let a = host.get("/v1/tenants/acme/usage?module=digital-card", token);
    assert_eq!(a.status, 200, "{a:?}");
    let line = a.body["modules"][0]["usage"]
        .as_array()
        .expect("usage lines")
        .iter()
        .find(|l| l["key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("no {key} line: {a:?}"));
    (line["used"].as_u64(), line["limit"].as_u64())
}

/// (slug, tier, allowed) of every template, in the listed order.
fn listed(host: &Host, token: &str) -> Vec<(String, String, bool)> {
    let a = host.get(TEMPLATES, token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .map(|t| {
            (
                t["slug"].as_str().unwrap().to_owned(),
                t["tier"].as_str().unwrap().to_owned(),
                t["allowed"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn face(host: &Host, token: &str, number: &str) -> String {
    let a = host.get(&format!("{CARDS}/cards/{number}/card.svg"), token);
    assert_eq!(a.status, 200, "{a:?}");
    String::from_utf8(a.bytes).expect("utf-8 SVG")
}

fn assert_denied(a: &Answer, feature: &str, upgrade: &str) {
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(
        (a.body["feature"].as_str(), a.body["upgrade_plan"].as_str()),
        (Some(feature), Some(upgrade)),
        "{a:?}"
    );
    assert_eq!(
        a.body["type"], "https://souk.dev/problems/entitlement-denied",
        "the host's problem document: {a:?}"
    );
}

#[test]
fn each_plan_uses_the_templates_of_its_tier_and_the_list_says_which() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let tiers = |allowed: [bool; 3]| {
        vec![
            ("classic", "basic", true),
            ("stripe", "basic", true),
            ("minimal", "basic", true),
            ("portrait", "advanced", allowed[0]),
            ("photo-left", "advanced", allowed[0]),
            ("gradient-band", "advanced", allowed[0]),
            ("watermark", "premium", allowed[1]),
            ("executive", "premium", allowed[1]),
        ]
        .into_iter()
        .map(|(s, t, a)| (s.to_owned(), t.to_owned(), a))
        .collect::<Vec<_>>()
    };
    assert_eq!(listed(&host, &token), tiers([false, false, false]));
    let portrait = host.get(&format!("{TEMPLATES}/portrait"), &token);
    assert_eq!(portrait.status, 200, "{portrait:?}");
    assert_eq!(
        (
            portrait.body["layout"].as_str(),
            portrait.body["width"].as_i64(),
            portrait.body["height"].as_i64(),
            portrait.body["feature"].as_str(),
        ),
        (
            Some("portrait"),
            Some(540),
            Some(856),
            Some("advanced_templates")
        )
    );
    assert_eq!(host.get(&format!("{TEMPLATES}/nope"), &token).status, 404);

    // Free: an advanced template is the plan's 402 naming pro; every new
    // paid route is refused by the host before the module runs.
    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "template": "portrait"}),
    );
    assert_denied(&a, "advanced_templates", "pro");
    let body = json!({"slug": "gold", "name": "Gold", "layout": "classic"});
    assert_denied(
        &host.post(TEMPLATES, &token, body.clone()),
        "advanced_templates",
        "pro",
    );
    assert_denied(
        &put(&host, &format!("{TEMPLATES}/gold"), &token, body.clone()),
        "advanced_templates",
        "pro",
    );
    assert_denied(
        &host.post(&format!("{CARDS}/qr-zips"), &token, json!({})),
        "bulk_qr",
        "business",
    );
    // Refusals took no card.
    assert_eq!(usage(&host, &token, "max_cards").0, Some(0));

    // Pro: advanced templates, not premium ones.
    grant(&host, "digital-card", "pro");
    assert_eq!(listed(&host, &token), tiers([true, false, false]));
    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "template": "portrait"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["template"], "portrait");
    let number = a.body["number"].as_str().unwrap().to_owned();
    let svg = face(&host, &token, &number);
    assert!(
        svg.contains(r#"width="540" height="856" viewBox="0 0 540 856""#),
        "{svg}"
    );
    assert!(svg.contains("Asha Gurung"));
    let a = issue(
        &host,
        &token,
        json!({"member": "M-2", "template": "watermark"}),
    );
    assert_denied(&a, "premium_templates", "business");
    // Renewing onto another template is using it.
    let renew = format!("{CARDS}/cards/{number}/renew");
    let a = host.post(&renew, &token, json!({"template": "executive"}));
    assert_denied(&a, "premium_templates", "business");
    let a = host.post(&renew, &token, json!({"template": "nope"}));
    assert_eq!(a.status, 422, "{a:?}");
    let a = host.post(&renew, &token, json!({"template": "photo-left"}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["template"], "photo-left");
    let landscape = face(&host, &token, &number);
    assert!(landscape.contains(r#"width="856" height="540""#));
    assert_ne!(landscape, svg, "another layout draws another face");

    // Business: everything.
    grant(&host, "digital-card", "business");
    assert_eq!(listed(&host, &token), tiers([true, true, true]));
    let a = issue(
        &host,
        &token,
        json!({"member": "M-2", "template": "watermark"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    // A batch on a premium template is checked the same way up front.
    grant(&host, "digital-card", "pro");
    let a = host.post(
        &format!("{CARDS}/batches"),
        &token,
        json!({"template": "executive"}),
    );
    assert_denied(&a, "premium_templates", "business");
}

#[test]
fn tenant_templates_are_validated_counted_and_freed_on_delete() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    grant(&host, "digital-card", "pro");
    assert_eq!(usage(&host, &token, "max_templates"), (Some(0), Some(2)));

    for bad in [
        json!({"slug": "Gold", "name": "Gold", "layout": "classic"}),
        json!({"slug": "g", "name": "Gold", "layout": "classic"}),
        json!({"name": "Gold", "layout": "classic"}),
        json!({"slug": "gold", "name": " ", "layout": "classic"}),
        json!({"slug": "gold", "name": "x".repeat(61), "layout": "classic"}),
        json!({"slug": "gold", "name": "Gold", "layout": "spiral"}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "accent": "gold"}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "background": "#12345g"}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "fields": ["shoe"]}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "fields": []}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "fields": ["qr", "qr"]}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "width": 100, "height": 60}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "width": 9000, "height": 5000}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "width": 540, "height": 856}),
        json!({"slug": "gold", "name": "Gold", "layout": "portrait", "width": 856, "height": 540}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "width": 900, "height": 880}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "width": -856}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "tier": "premium"}),
        json!({"slug": "gold", "name": "Gold", "layout": "classic", "width": "wide"}),
    ] {
        let a = host.post(TEMPLATES, &token, bad.clone());
        assert_eq!(a.status, 422, "{bad}: {a:?}");
    }
    let a = host.request("POST", TEMPLATES, Some(&token), Some(b"{not json".to_vec()));
    assert_eq!(a.status, 400, "{a:?}");
    let a = host.post(
        TEMPLATES,
        &token,
        json!({"slug": "gold", "name": "Gold", "layout": "spiral", "accent": "red"}),
    );
    assert_eq!(
        a.body["type"],
        "https://souk.dev/problems/digital-card/invalid-template"
    );
    assert_eq!(a.body["errors"].as_array().map(Vec::len), Some(2), "{a:?}");
    // A slug of a shipped template is taken.
    let a = host.post(
        TEMPLATES,
        &token,
        json!({"slug": "classic", "name": "Mine", "layout": "classic"}),
    );
    assert_eq!(a.status, 409, "{a:?}");
    // Refusals took no unit.
    assert_eq!(usage(&host, &token, "max_templates"), (Some(0), Some(2)));

    // Made once under its Idempotency-Key, however often it is sent.
    let gold = json!({"slug": "gold", "name": "Gold members", "layout": "gradient",
                      "background": "#FFFBEB", "foreground": "#1c1917", "accent": "#ca8a04",
                      "fields": ["name", "member_number", "expires_on", "qr"]});
    let a = create_with_key(&host, &token, "make-gold-1", &gold);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        (
            a.body["tier"].as_str(),
            a.body["background"].as_str(),
            a.body["allowed"].as_bool()
        ),
        (Some("custom"), Some("#fffbeb"), Some(true))
    );
    assert_eq!(
        (a.body["width"].as_i64(), a.body["height"].as_i64()),
        (Some(856), Some(540))
    );
    let again = create_with_key(&host, &token, "make-gold-1", &gold);
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        (again.body["slug"].as_str(), again.body["replay"].as_bool()),
        (Some("gold"), Some(true))
    );
    assert_eq!(usage(&host, &token, "max_templates"), (Some(1), Some(2)));
    let a = create_with_key(&host, &token, "bad key with spaces", &gold);
    assert_eq!(a.status, 400, "{a:?}");
    let silver = json!({"slug": "silver", "name": "Silver", "layout": "portrait"});
    let a = host.post(TEMPLATES, &token, silver);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        (a.body["width"].as_i64(), a.body["height"].as_i64()),
        (Some(540), Some(856))
    );
    // Pro's two are used: the plan's 402 naming business...
    let bronze = json!({"slug": "bronze", "name": "Bronze", "layout": "stripe"});
    assert_denied(
        &host.post(TEMPLATES, &token, bronze.clone()),
        "max_templates",
        "business",
    );
    // ...but a retry of a request that counted still gets its template.
    let again = create_with_key(&host, &token, "make-gold-1", &gold);
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(usage(&host, &token, "max_templates"), (Some(2), Some(2)));
    assert_eq!(
        listed(&host, &token)[8..],
        [
            ("gold".to_owned(), "custom".to_owned(), true),
            ("silver".to_owned(), "custom".to_owned(), true)
        ]
    );

    // Changed in place; the shipped templates are not the tenant's to change.
    let a = put(
        &host,
        &format!("{TEMPLATES}/gold"),
        &token,
        json!({"name": "Gold", "layout": "diagonal", "accent": "#b45309", "background": "#111827",
               "foreground": "#f9fafb", "fields": ["name", "member_number", "expires_on", "qr"]}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (a.body["layout"].as_str(), a.body["name"].as_str()),
        (Some("diagonal"), Some("Gold"))
    );
    let a = put(
        &host,
        &format!("{TEMPLATES}/gold"),
        &token,
        json!({"name": "Gold", "layout": "diagonal", "slug": "platinum"}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let a = put(
        &host,
        &format!("{TEMPLATES}/gold"),
        &token,
        json!({"name": "Gold", "layout": "portrait", "width": 856, "height": 540}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let a = put(
        &host,
        &format!("{TEMPLATES}/classic"),
        &token,
        json!({"name": "Mine", "layout": "classic"}),
    );
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(
        a.body["type"],
        "https://souk.dev/problems/digital-card/built-in-template"
    );
    let a = put(
        &host,
        &format!("{TEMPLATES}/nope"),
        &token,
        json!({"name": "Mine", "layout": "classic"}),
    );
    assert_eq!(a.status, 404, "{a:?}");

    // A card on it shows it; the template cannot go while the card uses it.
    let a = issue(&host, &token, json!({"member": "M-1", "template": "gold"}));
    assert_eq!(a.status, 201, "{a:?}");
    let number = a.body["number"].as_str().unwrap().to_owned();
    let svg = face(&host, &token, &number);
    assert!(
        svg.contains("#b45309") && svg.contains("#111827") && svg.contains("<polygon"),
        "{svg}"
    );
    assert!(
        !svg.contains("Card C-"),
        "the template shows no card number: {svg}"
    );
    let a = host.get(&format!("{TEMPLATES}/gold"), &token);
    assert_eq!(a.body["cards"], json!({"active": 1}), "{a:?}");
    let a = host.delete(&format!("{TEMPLATES}/gold"), &token);
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(a.body["cards"], json!({"active": 1}), "{a:?}");
    let a = host.post(
        &format!("{CARDS}/cards/{number}/revoke"),
        &token,
        json!({"reason": "lost"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = host.delete(&format!("{TEMPLATES}/gold"), &token);
    assert_eq!(a.status, 409, "a revoked card keeps its face too: {a:?}");
    assert_eq!(a.body["cards"], json!({"revoked": 1}), "{a:?}");
    let a = host.delete(&format!("{TEMPLATES}/classic"), &token);
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(
        host.delete(&format!("{TEMPLATES}/nope"), &token).status,
        404
    );
    assert_eq!(
        host.delete(&format!("{CARDS}/cards/{number}"), &token)
            .status,
        204
    );
    assert_eq!(
        host.delete(&format!("{TEMPLATES}/gold"), &token).status,
        204
    );
    assert_eq!(host.get(&format!("{TEMPLATES}/gold"), &token).status, 404);
    // The unit is back: bronze fits now.
    assert_eq!(usage(&host, &token, "max_templates"), (Some(1), Some(2)));
    let a = host.post(TEMPLATES, &token, bronze);
    assert_eq!(a.status, 201, "{a:?}");
    // The key of a deleted template makes nothing again.
    let a = create_with_key(&host, &token, "make-gold-1", &gold);
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(usage(&host, &token, "max_templates"), (Some(2), Some(2)));

    // On free, the templates stay and can be deleted, not made or used.
    grant(&host, "digital-card", "free");
    assert_eq!(usage(&host, &token, "max_templates"), (Some(2), Some(0)));
    let a = issue(
        &host,
        &token,
        json!({"member": "M-2", "template": "silver"}),
    );
    assert_denied(&a, "advanced_templates", "pro");
    assert_eq!(host.get(&format!("{TEMPLATES}/silver"), &token).status, 200);
    assert_eq!(
        host.delete(&format!("{TEMPLATES}/silver"), &token).status,
        204
    );
    assert_eq!(usage(&host, &token, "max_templates").0, Some(1));
}

#[test]
fn a_downgrade_keeps_cards_on_premium_templates_readable_and_verifiable() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    grant(&host, "digital-card", "business");
    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "template": "executive"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let number = a.body["number"].as_str().unwrap().to_owned();
    let url = a.body["verification_url"].as_str().unwrap().to_owned();
    let a = host.post(
        TEMPLATES,
        &token,
        json!({"slug": "club", "name": "Club", "layout": "watermark"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = issue(&host, &token, json!({"member": "M-2", "template": "club"}));
    assert_eq!(a.status, 201, "{a:?}");
    let premium_face = face(&host, &token, &number);
    let link = host.post(
        &format!("{CARDS}/cards/{number}/share-links"),
        &token,
        json!({}),
    );
    assert_eq!(link.status, 201, "{link:?}");

    grant(&host, "digital-card", "free");
    // Read, drawn, verified and shared as before (only the mark is back).
    assert_eq!(card(&host, &token, &number)["template"], "executive");
    let after = face(&host, &token, &number);
    // The executive face (dark, a gold diagonal) before and after; the
    // Souk mark comes back with white label gone.
    for svg in [&premium_face, &after] {
        assert!(
            svg.contains("<polygon") && svg.contains(r##"fill="#c9a227""##),
            "{svg}"
        );
        assert!(svg.contains(r##"fill="#0f172a""##) && svg.contains("Asha Gurung"));
    }
    assert!(!premium_face.contains("Verified with Souk"));
    assert!(after.contains("Verified with Souk"));
    let club = face(&host, &token, "C-000002");
    assert!(club.contains(r#"opacity="0.09""#), "{club}");
    let page = stranger_get(&host, &url, "application/json");
    assert_eq!(page.json()["status"], "valid", "{}", page.text);
    assert_eq!(page.json()["holder"]["name"], "Asha Gurung");
    let shared = stranger_get(&host, link.body["url"].as_str().unwrap(), "text/html");
    assert_eq!(shared.status, 200);
    assert!(shared.text.contains("<polygon"), "{}", shared.text);
    // Renewing keeps the card's template; no new card goes on it.
    let a = host.post(&format!("{CARDS}/cards/{number}/renew"), &token, json!({}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["template"], "executive");
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "M-3", "name": "Chandra"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = issue(
        &host,
        &token,
        json!({"member": "M-3", "template": "executive"}),
    );
    assert_denied(&a, "premium_templates", "business");
    let a = issue(&host, &token, json!({"member": "M-3", "template": "club"}));
    assert_denied(&a, "advanced_templates", "pro");
    let a = issue(&host, &token, json!({"member": "M-3"}));
    assert_eq!(a.status, 201, "a basic template is free: {a:?}");
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Unzips an archive of stored files as an unzip tool does: the end
/// record, the central directory, each local header; every CRC-32 checked
/// with `crc32fast`.
fn unzip(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert!(zip.len() >= 22 && zip.starts_with(b"PK\x03\x04"), "a zip");
    let end = zip.len() - 22;
    assert_eq!(u32_at(zip, end), 0x0605_4b50, "end of central directory");
    let count = usize::from(u16_at(zip, end + 10));
    let size = u32_at(zip, end + 12) as usize;
    let mut at = u32_at(zip, end + 16) as usize;
    assert_eq!(at + size, end);
    let mut files = Vec::new();
    for _ in 0..count {
        assert_eq!(u32_at(zip, at), 0x0201_4b50, "central directory header");
        let method = u16_at(zip, at + 10);
        assert_eq!(method, 0, "stored");
        let crc = u32_at(zip, at + 16);
        let (packed, unpacked) = (u32_at(zip, at + 20) as usize, u32_at(zip, at + 24) as usize);
        assert_eq!(packed, unpacked);
        let name_len = usize::from(u16_at(zip, at + 28));
        let skip = usize::from(u16_at(zip, at + 30)) + usize::from(u16_at(zip, at + 32));
        let offset = u32_at(zip, at + 42) as usize;
        let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
        assert_eq!(u32_at(zip, offset), 0x0403_4b50, "local header of {name}");
        let local_name_len = usize::from(u16_at(zip, offset + 26));
        assert_eq!(
            &zip[offset + 30..offset + 30 + local_name_len],
            name.as_bytes()
        );
        let data_at = offset + 30 + local_name_len + usize::from(u16_at(zip, offset + 28));
        let data = zip[data_at..data_at + unpacked].to_vec();
        assert_eq!(crc32fast::hash(&data), crc, "CRC-32 of {name}");
        files.push((name, data));
        at += 46 + name_len + skip;
    }
    assert_eq!(at, end);
    files
}

#[test]
fn a_bulk_qr_zip_holds_an_svg_per_card_that_decodes_to_its_verification_url() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let zips = format!("{CARDS}/qr-zips");
    grant(&host, "digital-card", "pro");
    assert_denied(&host.post(&zips, &token, json!({})), "bulk_qr", "business");
    grant(&host, "digital-card", "business");
    grant(&host, "membership", "plus");
    let a = host.post(&zips, &token, json!({}));
    assert_eq!(a.status, 422, "no card yet: {a:?}");
    let mut urls = std::collections::BTreeMap::new();
    for n in 1..=12 {
        if n > 2 {
            let a = host.post(
                "/t/acme/m/membership/members",
                &token,
                json!({"number": format!("M-{n}"), "name": format!("Member {n}")}),
            );
            assert_eq!(a.status, 201, "{a:?}");
        }
        let a = issue(&host, &token, json!({"member": format!("M-{n}")}));
        assert_eq!(a.status, 201, "{a:?}");
        urls.insert(
            a.body["number"].as_str().unwrap().to_owned(),
            a.body["verification_url"].as_str().unwrap().to_owned(),
        );
    }
    let a = host.post(
        &format!("{CARDS}/cards/C-000003/revoke"),
        &token,
        json!({"reason": "lost"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    for bad in [
        json!({"status": "lost"}),
        json!({"cards": []}),
        json!({"cards": ["../../etc/passwd"]}),
        json!({"cards": ["C-000001"], "status": "active"}),
        json!({"format": "tar"}),
    ] {
        assert_eq!(host.post(&zips, &token, bad.clone()).status, 422, "{bad}");
    }
    assert_eq!(
        host.post(&zips, &token, json!({"cards": ["C-999"]})).status,
        404
    );

    // The active cards (11 of 12) by job, downloaded through the signed URL.
    let a = host.post(&zips, &token, json!({}));
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(
        (a.body["cards"].as_u64(), a.body["matching"].as_u64()),
        (Some(11), Some(11))
    );
    let job = wait_for_job(&host, &token, a.body["job"].as_str().unwrap());
    assert_eq!(
        (
            job["progress"]["done"].as_u64(),
            job["progress"]["total"].as_u64()
        ),
        (Some(11), Some(11)),
        "{job}"
    );
    let url = job["result_url"]
        .as_str()
        .expect("a signed result URL")
        .to_owned();
    let res = host
        .client
        .get(format!("{}{url}", host.base))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/zip"),
        "{content_type}"
    );
    let files = unzip(&res.bytes().unwrap());
    assert_eq!(files.len(), 12, "11 SVGs and the manifest");
    let (manifest_name, manifest) = files.last().unwrap();
    assert_eq!(manifest_name, "manifest.csv");
    let manifest = String::from_utf8(manifest.clone()).unwrap();
    let mut lines = manifest.lines();
    assert_eq!(
        lines.next(),
        Some("card_number,member,status,expires_on,verification_url,file")
    );
    for ((name, svg), line) in files.iter().zip(lines) {
        let number = name.strip_suffix(".svg").expect("an SVG");
        assert_ne!(number, "C-000003", "revoked cards are not selected");
        let svg = String::from_utf8(svg.clone()).unwrap();
        assert_eq!(decode_qr(&svg), urls[number], "{name}");
        let member = card(&host, &token, number)["member"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            line,
            format!(
                "{number},{member},active,2027-03-01,{},{name}",
                urls[number]
            )
        );
    }
    // A chosen list, in its order, any status.
    let a = host.post(&zips, &token, json!({"cards": ["C-000003", "C-000001"]}));
    assert_eq!(a.status, 202, "{a:?}");
    let job = wait_for_job(&host, &token, a.body["job"].as_str().unwrap());
    let bytes = host
        .client
        .get(format!(
            "{}{}",
            host.base,
            job["result_url"].as_str().unwrap()
        ))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let names: Vec<String> = unzip(&bytes).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["C-000003.svg", "C-000001.svg", "manifest.csv"]);
}

#[test]
fn an_upgrade_from_1_1_keeps_cards_and_adds_the_templates() {
    let host = start(&["membership", "digital-card-v1_1", "digital-card"]);
    let token = host.tenant("acme");
    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "digital-card", "version": "1.1.0"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = put(
        &host,
        &format!("{CARDS}/settings"),
        &token,
        json!({"organisation_name": "Club", "verify_base_url": format!("{}{CARDS}", host.base),
               "allow_multiple_active": false, "valid_days": 365}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "M-1", "name": "Asha Gurung"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    grant(&host, "digital-card", "business");
    let a = host.post(
        &format!("{CARDS}/fields"),
        &token,
        json!({"name": "level", "type": "text"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "template": "stripe", "fields": {"level": "gold"}}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let url = a.body["verification_url"].as_str().unwrap().to_owned();
    let link = host.post(
        &format!("{CARDS}/cards/C-000001/share-links"),
        &token,
        json!({}),
    );
    assert_eq!(link.status, 201, "{link:?}");
    // 1.1.0: three templates, no tenant-made ones, no zips.
    assert_eq!(listed(&host, &token).len(), 3);
    assert_eq!(
        host.post(
            TEMPLATES,
            &token,
            json!({"slug": "gold", "name": "G", "layout": "classic"})
        )
        .status,
        405
    );
    assert_eq!(
        host.post(&format!("{CARDS}/qr-zips"), &token, json!({}))
            .status,
        404
    );

    let a = host.post(
        "/v1/tenants/acme/modules/digital-card/upgrade",
        &token,
        json!({}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["installation"]["version"], "1.2.0");
    assert_eq!(
        a.body["applied_migrations"],
        json!(["0004_templates", "0005_public_url"])
    );
    let card = card(&host, &token, "C-000001");
    assert_eq!(
        (
            card["status"].as_str(),
            card["template"].as_str(),
            card["verification_url"].as_str()
        ),
        (Some("active"), Some("stripe"), Some(url.as_str()))
    );
    assert_eq!(card["fields"], json!({"level": "gold"}));
    assert_eq!(
        stranger_get(&host, &url, "application/json").json()["status"],
        "valid"
    );
    assert_eq!(
        stranger_get(
            &host,
            link.body["url"].as_str().unwrap(),
            "application/json"
        )
        .status,
        200
    );
    let svg = face(&host, &token, "C-000001");
    assert!(svg.contains("level: gold") && svg.contains("Asha Gurung"));
    let slugs: Vec<String> = listed(&host, &token)
        .into_iter()
        .map(|(slug, ..)| slug)
        .collect();
    assert_eq!(
        slugs,
        [
            "classic",
            "stripe",
            "minimal",
            "portrait",
            "photo-left",
            "gradient-band",
            "watermark",
            "executive"
        ]
    );
    assert_eq!(usage(&host, &token, "max_cards").0, Some(1));
    assert_eq!(
        usage(&host, &token, "max_templates").0,
        Some(0),
        "the seeded ones count nothing"
    );
    let a = host.post(
        TEMPLATES,
        &token,
        json!({"slug": "gold", "name": "Gold", "layout": "photo_left"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(
        &format!("{CARDS}/cards/C-000001/renew"),
        &token,
        json!({"template": "gold"}),
    );
    assert_eq!(
        (a.status, a.body["template"].as_str()),
        (200, Some("gold")),
        "{a:?}"
    );
    assert_eq!(usage(&host, &token, "max_templates").0, Some(1));
}

#[test]
fn an_uninstall_runs_every_down_migration_and_a_restore_brings_the_templates_back() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    grant(&host, "digital-card", "pro");
    let a = host.post(
        TEMPLATES,
        &token,
        json!({"slug": "gold", "name": "Gold", "layout": "gradient", "accent": "#ca8a04"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = issue(&host, &token, json!({"member": "M-1", "template": "gold"}));
    assert_eq!(a.status, 201, "{a:?}");
    let url = a.body["verification_url"].as_str().unwrap().to_owned();

    // The uninstall archives the data, then runs 0004's down migration
    // (and the older ones) on the tenant database.
    let a = host.delete("/v1/tenants/acme/modules/digital-card", &token);
    assert_eq!(a.status, 200, "{a:?}");
    let archive = a.body["archive"]["id"]
        .as_str()
        .expect("archive id")
        .to_owned();
    // A fresh install has the shipped templates only.
    host.install_ok("acme", &token, "digital-card");
    let slugs: Vec<String> = listed(&host, &token).into_iter().map(|(s, ..)| s).collect();
    assert_eq!(slugs.len(), 8, "{slugs:?}");
    assert!(!slugs.contains(&"gold".to_owned()));
    assert_eq!(usage(&host, &token, "max_templates").0, Some(0));
    let a = host.delete("/v1/tenants/acme/modules/digital-card", &token);
    assert_eq!(a.status, 200, "{a:?}");

    // Restored: the template, the card on it, and the unit it holds.
    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "digital-card", "restore_archive": archive}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let gold = host.get(&format!("{TEMPLATES}/gold"), &token);
    assert_eq!(gold.status, 200, "{gold:?}");
    assert_eq!(gold.body["cards"], json!({"active": 1}), "{gold:?}");
    assert_eq!(listed(&host, &token).len(), 9);
    assert_eq!(usage(&host, &token, "max_templates").0, Some(1));
    assert!(face(&host, &token, "C-000001").contains("#ca8a04"));
    assert_eq!(
        stranger_get(&host, &url, "application/json").json()["status"],
        "valid"
    );
}
