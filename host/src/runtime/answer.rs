//! A module's answer on its way to a browser: what the host refuses,
//! drops and adds before the answer leaves (issue 15; the module author's
//! page is `docs/module-pages.md`).
//!
//! A module is untrusted, and its answers are served beside the host's
//! API. Whatever a module answers, it never gets to act with the host's
//! authority in a browser:
//!
//! - **refused** (a 502 problem naming the module, and the call's work is
//!   rolled back): a status outside 200–599 (1xx answers, 101 upgrades
//!   and made-up codes), more headers or header bytes than the operator
//!   allows, a header name that is not an HTTP token, a header value with
//!   a control character (CR, LF, NUL: header injection);
//! - **dropped**: the headers the host owns for its whole origin or the
//!   connection ([`HOST_OWNED`]: cookies, CORS, HSTS, `Clear-Site-Data`,
//!   `Alt-Svc`, reporting, hop-by-hop headers, ...), and a `Location`
//!   outside the module's own paths that the manifest's
//!   `pages.redirect_origins` does not allow;
//! - **added**: `X-Content-Type-Options: nosniff`, a `Content-Type`
//!   (`application/octet-stream` when the module gave none) and the host's
//!   `Content-Security-Policy` ([`HOST_CSP`]), whose `sandbox` without
//!   `allow-same-origin` gives every module document an opaque origin: its
//!   scripts cannot read the host's cookies nor send requests the browser
//!   treats as the host's own. A module's own CSP is kept beside it; a
//!   browser enforces both, so the module can only tighten the policy.

use souk_module_registry::manifest::{PagesDecl, origin_of_url};

use super::{ModuleResponse, RuntimeLimits};
use crate::capabilities::log::printable;
use crate::error::CallError;

/// Default for [`RuntimeLimits::max_response_headers`]: room for any real
/// page's headers, far from what would cost the host.
pub const DEFAULT_MAX_HEADERS: usize = 100;

/// Default for [`RuntimeLimits::max_response_header_bytes`] (names and
/// values together): 16 KiB, what common proxies accept in a header block.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// The policy every module answer carries. `sandbox` without
/// `allow-same-origin`: the document's origin is opaque, so it reads no
/// cookie or storage of the host's origin and its requests are
/// cross-site (the host's `SameSite=Lax` session cookie is not sent with
/// them, and no CORS answer lets it read one). Scripts, forms, pop-ups,
/// dialogs and downloads still work inside the page.
pub const HOST_CSP: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// The `Content-Type` of an answer that names none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Header names a module may not set (compared in lower case): they act
/// on the host's whole origin or on the connection, or the host sets them
/// itself.
pub const HOST_OWNED: &[&str] = &[
    // State of the whole origin.
    "set-cookie",
    "set-cookie2",
    "strict-transport-security",
    "clear-site-data",
    "alt-svc",
    "nel",
    "report-to",
    "service-worker-allowed",
    "expect-ct",
    "public-key-pins",
    "public-key-pins-report-only",
    "accept-ch",
    "critical-ch",
    "set-login",
    "activate-storage-access",
    // Redirects around the `Location` rule, browser credential prompts.
    "refresh",
    "www-authenticate",
    // Hop-by-hop (RFC 9110 section 7.6.1) and framing: the host's.
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    // Set by the host on every answer.
    "x-content-type-options",
];

/// Name prefixes a module may not use: CORS (`Access-Control-*`) and
/// proxy headers (`Proxy-*`).
pub const HOST_OWNED_PREFIXES: &[&str] = &["access-control-", "proxy-"];

/// What a module's answer may do beyond the host's defaults.
#[derive(Debug, Clone, Copy)]
pub struct PageRules<'a> {
    /// The module, named in refusals.
    pub module: &'a str,
    /// The module's mount, `/t/{tenant}/m/{module}`: the paths its
    /// `Location` headers may name.
    pub mount: &'a str,
    /// The manifest's `pages:` section.
    pub pages: &'a PagesDecl,
}

/// A module answer that may leave the host, and the names of the headers
/// that were dropped from it (in lower case, for the log).
#[derive(Debug)]
pub struct VettedAnswer {
    /// The answer, with the host's headers added.
    pub response: ModuleResponse,
    /// Headers dropped, in the module's order.
    pub dropped: Vec<String>,
}

/// Checks `response` against `limits` and `rules`: refuses it, or drops
/// what the module may not send and adds the host's headers.
///
/// # Errors
/// [`CallError::BadAnswer`] naming the module and what is wrong.
pub fn vet(
    response: ModuleResponse,
    limits: &RuntimeLimits,
    rules: &PageRules<'_>,
) -> Result<VettedAnswer, CallError> {
    let refuse = |reason: String| CallError::BadAnswer {
        module: rules.module.to_owned(),
        reason,
    };
    let ModuleResponse {
        status,
        headers,
        body,
    } = response;
    if !(200..=599).contains(&status) {
        return Err(refuse(format!(
            "status {status} is outside 200-599 (a module answers with a final status)"
        )));
    }
    if headers.len() > limits.max_response_headers {
        return Err(refuse(format!(
            "{} headers, more than the {} a module answer may have",
            headers.len(),
            limits.max_response_headers
        )));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > limits.max_response_header_bytes {
        return Err(refuse(format!(
            "{bytes} bytes of headers, more than the {} a module answer may have",
            limits.max_response_header_bytes
        )));
    }
    let mut kept = Vec::with_capacity(headers.len() + 3);
    let mut dropped = Vec::new();
    let mut has_type = false;
    for (name, value) in headers {
        if !is_token(&name) {
            return Err(refuse(format!(
                "header name {:?} is not an HTTP token",
                printable(&name, 64)
            )));
        }
        let name = name.to_ascii_lowercase();
        if !is_field_value(&value) {
            return Err(refuse(format!(
                "the value of header {name} holds a control character (CR, LF, NUL, ...)"
            )));
        }
        let allowed = match name.as_str() {
            "location" => location_allowed(&value, rules),
            n => !HOST_OWNED.contains(&n) && !HOST_OWNED_PREFIXES.iter().any(|p| n.starts_with(p)),
        };
        if !allowed {
            dropped.push(name);
            continue;
        }
        has_type |= name == "content-type";
        kept.push((name, value));
    }
    if !has_type {
        kept.push(("content-type".into(), DEFAULT_CONTENT_TYPE.into()));
    }
    kept.push(("x-content-type-options".into(), "nosniff".into()));
    kept.push(("content-security-policy".into(), HOST_CSP.into()));
    Ok(VettedAnswer {
        response: ModuleResponse {
            status,
            headers: kept,
            body,
        },
        dropped,
    })
}

/// Whether `name` is an HTTP token (RFC 9110 section 5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` is a field value without controls: visible ASCII,
/// spaces, tabs and bytes of UTF-8 text; never CR, LF, NUL or DEL.
fn is_field_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
}

/// Whether a `Location` may leave the host: an absolute path inside the
/// module's mount (no `..` segment, no backslash, not `//host`), or an
/// absolute URL of an origin the manifest allows.
fn location_allowed(value: &str, rules: &PageRules<'_>) -> bool {
    if value.contains('\\') {
        return false;
    }
    if value.starts_with('/') && !value.starts_with("//") {
        let path = value.split(['?', '#']).next().unwrap_or_default();
        let dotted = path.split('/').any(|segment| {
            let segment = segment.to_ascii_lowercase().replace("%2e", ".");
            segment == "." || segment == ".."
        });
        let inside = path == rules.mount
            || path
                .strip_prefix(rules.mount)
                .is_some_and(|rest| rest.starts_with('/'));
        return inside && !dotted;
    }
    origin_of_url(value).is_some_and(|origin| rules.pages.allows_origin(&origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> PagesDecl {
        PagesDecl {
            redirect_origins: vec!["https://pay.example.com".into()],
        }
    }

    fn vetted(status: u16, headers: &[(&str, &str)]) -> Result<VettedAnswer, CallError> {
        let pages = pages();
        let rules = PageRules {
            module: "hostile",
            mount: "/t/acme/m/hostile",
            pages: &pages,
        };
        let response = ModuleResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: Vec::new(),
        };
        vet(response, &RuntimeLimits::default(), &rules)
    }

    fn header<'a>(answer: &'a VettedAnswer, name: &str) -> Vec<&'a str> {
        answer
            .response
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn statuses_outside_200_to_599_are_refused_naming_the_module() {
        for status in [0, 100, 101, 103, 199, 600, 999] {
            let e = vetted(status, &[]).unwrap_err().to_string();
            assert!(
                e.contains("hostile") && e.contains(&status.to_string()),
                "{e}"
            );
        }
        for status in [200, 302, 404, 599] {
            assert!(vetted(status, &[]).is_ok());
        }
    }

    #[test]
    fn host_owned_headers_are_dropped_and_the_hosts_are_added() {
        let answer = vetted(
            200,
            &[
                ("Set-Cookie", "souk_session=x"),
                ("Access-Control-Allow-Origin", "*"),
                ("Strict-Transport-Security", "max-age=1"),
                ("Clear-Site-Data", "\"*\""),
                ("Connection", "close"),
                ("Transfer-Encoding", "chunked"),
                ("X-Content-Type-Options", "sniff"),
                ("Content-Security-Policy", "sandbox allow-same-origin"),
                ("X-Kept", "yes"),
            ],
        )
        .unwrap();
        assert_eq!(answer.dropped.len(), 7, "{:?}", answer.dropped);
        assert_eq!(header(&answer, "x-kept"), ["yes"]);
        assert_eq!(header(&answer, "x-content-type-options"), ["nosniff"]);
        assert_eq!(header(&answer, "content-type"), [DEFAULT_CONTENT_TYPE]);
        assert_eq!(
            header(&answer, "content-security-policy"),
            ["sandbox allow-same-origin", HOST_CSP]
        );
        assert!(!HOST_CSP.contains("allow-same-origin"));
    }

    #[test]
    fn control_characters_and_bad_names_refuse_the_answer() {
        for (name, value) in [
            ("x-a", "a\r\nset-cookie: b=c"),
            ("x-a", "a\nb"),
            ("x-a", "a\0b"),
            ("x a", "b"),
            ("", "b"),
            ("x:a", "b"),
        ] {
            assert!(vetted(200, &[(name, value)]).is_err(), "{name:?} {value:?}");
        }
        assert!(vetted(200, &[("x-a", "tab\tand ünïcode")]).is_ok());
    }

    #[test]
    fn header_count_and_bytes_are_bounded() {
        let many: Vec<(String, String)> = (0..=DEFAULT_MAX_HEADERS)
            .map(|i| (format!("x-{i}"), "v".into()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert!(vetted(200, &many).is_err());
        assert!(vetted(200, &many[..DEFAULT_MAX_HEADERS]).is_ok());
        let big = "a".repeat(DEFAULT_MAX_HEADER_BYTES);
        assert!(vetted(200, &[("x-big", &big)]).is_err());
    }

    #[test]
    fn locations_stay_in_the_module_unless_the_manifest_allows_the_origin() {
        for kept in [
            "/t/acme/m/hostile",
            "/t/acme/m/hostile/cards/1?x=/..#y",
            "https://pay.example.com/checkout?id=1",
            "HTTPS://PAY.example.com:443/x",
        ] {
            let answer = vetted(302, &[("location", kept)]).unwrap();
            assert_eq!(header(&answer, "location"), [kept], "{kept}");
        }
        for dropped in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "/t/acme/m/hostile/../other",
            "/t/acme/m/hostile/%2E%2e/other",
            "/t/acme/m/hostile-other/x",
            "/v1/tenants/acme/users",
            "whoami",
            "javascript:alert(1)",
            "https://pay.example.com@evil.example/",
            "http://pay.example.com/",
        ] {
            let answer = vetted(302, &[("location", dropped)]).unwrap();
            assert!(header(&answer, "location").is_empty(), "{dropped}");
            assert_eq!(answer.dropped, ["location"]);
        }
    }
}
