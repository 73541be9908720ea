//! The manifest's `pages:` section (API 0.3.0): what the host lets a
//! module's answers do in a browser beyond its own pages.
//!
//! ```yaml
//! pages:
//!   redirect_origins: [https://pay.example.com]
//! ```
//!
//! By default a module's `Location` header may point only at the module's
//! own paths (`/t/{tenant}/m/{module}/...`); the host drops any other.
//! `redirect_origins` lists the other origins (scheme, host and port, no
//! path) its redirects may go to, e.g. a payment provider's checkout.

use serde::Deserialize;

/// The most origins `pages.redirect_origins` may list.
pub const MAX_REDIRECT_ORIGINS: usize = 16;

/// The `pages:` section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPages {
    #[serde(default)]
    redirect_origins: Vec<String>,
}

/// What a module's pages may do beyond the host's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PagesDecl {
    /// Origins other than the host's a `Location` header may name, each
    /// `scheme://host[:port]` in lower case, without a default port
    /// (`https://pay.example.com`); empty: only the module's own paths.
    pub redirect_origins: Vec<String>,
}

impl PagesDecl {
    /// Whether a redirect to absolute URL origin `origin` (as
    /// [`normalize_origin`] gives it) is allowed.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.redirect_origins.iter().any(|o| o == origin)
    }
}

impl RawPages {
    /// Checks and normalizes each origin.
    pub(super) fn parse(self) -> Result<PagesDecl, (String, String)> {
        if self.redirect_origins.len() > MAX_REDIRECT_ORIGINS {
            return Err((
                "pages.redirect_origins".into(),
                format!("at most {MAX_REDIRECT_ORIGINS} origins"),
            ));
        }
        let mut origins: Vec<String> = Vec::new();
        for (i, text) in self.redirect_origins.iter().enumerate() {
            let origin = normalize_origin(text).ok_or_else(|| {
                (
                    format!("pages.redirect_origins[{i}]"),
                    format!(
                        "{text:?} is not an origin: write `https://host` or `https://host:port`, \
                         without a path"
                    ),
                )
            })?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(PagesDecl {
            redirect_origins: origins,
        })
    }
}

/// The origin `scheme://host[:port]` of an absolute `http` or `https` URL
/// with nothing after the authority but an optional `/`, in lower case
/// and without the scheme's default port; `None` for anything else
/// (another scheme, user info, a path, a query, spaces or controls).
pub fn normalize_origin(text: &str) -> Option<String> {
    let (scheme, rest) = split_scheme(text)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let authority = checked_authority(authority)?;
    Some(origin_of(&scheme, &authority))
}

/// The origin of absolute URL `url` (`http` or `https`, any path), in
/// the form [`normalize_origin`] gives; `None` when `url` is not such a URL.
pub fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = split_scheme(url)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = checked_authority(&rest[..end])?;
    Some(origin_of(&scheme, &authority))
}

fn split_scheme(text: &str) -> Option<(String, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    (scheme == "http" || scheme == "https").then_some((scheme, rest))
}

fn checked_authority(authority: &str) -> Option<String> {
    let ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then(|| authority.to_ascii_lowercase())
}

fn origin_of(scheme: &str, authority: &str) -> String {
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    format!("{scheme}://{authority}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_and_paths_refused() {
        assert_eq!(
            normalize_origin("HTTPS://Pay.Example.com:443/").as_deref(),
            Some("https://pay.example.com")
        );
        assert_eq!(
            normalize_origin("http://127.0.0.1:8081").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        for bad in [
            "pay.example.com",
            "javascript://x",
            "https://user@evil.example",
            "https://pay.example.com/checkout",
            "https://",
            "https://a b",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_urls_origin_ignores_its_path_and_refuses_user_info() {
        assert_eq!(
            origin_of_url("https://pay.example.com/x?y#z").as_deref(),
            Some("https://pay.example.com")
        );
        assert_eq!(origin_of_url("https://pay.example.com@evil.example/"), None);
        assert_eq!(origin_of_url("//evil.example/"), None);
        assert_eq!(origin_of_url("/t/a/m/b"), None);
    }
}
