//! Single sign-on input parsed at the boundary: a provider's settings and
//! the `return_to` of a sign-in. Each parser answers a typed value or a
//! message naming the rule (never echoing more than the field).

use serde::Deserialize;

use crate::error::SoukError;

use super::provider::check_url;

/// The largest number of allowed e-mail domains.
pub const MAX_DOMAINS: usize = 100;

/// A provider's settings as sent to `PUT /v1/tenants/{t}/sso`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoChanges {
    /// The issuer identifier (an https URL, exactly as the provider
    /// writes it).
    pub issuer: String,
    /// The client id the provider issued.
    pub client_id: String,
    /// The client secret; absent: keep the stored one.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// E-mail domains allowed to sign in (default: any).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Whether unknown verified addresses become members (default true).
    #[serde(default)]
    pub provision_members: Option<bool>,
}

impl std::fmt::Debug for SsoChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoChanges")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

/// Settings checked.
pub struct ParsedSettings {
    /// The issuer.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The new client secret, if one came.
    pub client_secret: Option<String>,
    /// Lower-cased domains.
    pub allowed_domains: Vec<String>,
    /// Provision unknown verified addresses.
    pub provision_members: bool,
}

fn token_field(field: &str, text: &str, max: usize) -> Result<String, SoukError> {
    if text.is_empty() || text.len() > max || text.chars().any(|c| c.is_control() || c == ' ') {
        return Err(SoukError::Invalid(format!(
            "`{field}` must be 1 to {max} bytes without spaces or control characters"
        )));
    }
    Ok(text.to_owned())
}

/// Parses a domain name (labels of letters, digits and `-`, at least two),
/// lower-cased.
fn domain(text: &str) -> Result<String, SoukError> {
    let text = text.trim().to_lowercase();
    let labels: Vec<&str> = text.split('.').collect();
    let ok = text.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if !ok {
        return Err(SoukError::Invalid(
            "each of `allowed_domains` must be a domain name such as example.com".into(),
        ));
    }
    Ok(text)
}

impl SsoChanges {
    /// Checks every field; `allow_insecure` as the host's policy says.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] naming the field and the rule.
    pub fn parse(&self, allow_insecure: bool) -> Result<ParsedSettings, SoukError> {
        let issuer = token_field("issuer", &self.issuer, 2048)?;
        check_url("issuer", &issuer, allow_insecure)
            .map_err(|e| SoukError::Invalid(e.to_string()))?;
        if issuer.contains('?') {
            return Err(SoukError::Invalid(
                "the issuer must not contain a query".into(),
            ));
        }
        let client_id = token_field("client_id", &self.client_id, 255)?;
        let client_secret = self
            .client_secret
            .as_deref()
            .map(|s| token_field("client_secret", s, 1024))
            .transpose()?;
        if self.allowed_domains.len() > MAX_DOMAINS {
            return Err(SoukError::Invalid(format!(
                "`allowed_domains` may list at most {MAX_DOMAINS} domains"
            )));
        }
        let mut allowed_domains = self
            .allowed_domains
            .iter()
            .map(|d| domain(d))
            .collect::<Result<Vec<_>, _>>()?;
        allowed_domains.sort();
        allowed_domains.dedup();
        Ok(ParsedSettings {
            issuer,
            client_id,
            client_secret,
            allowed_domains,
            provision_members: self.provision_members.unwrap_or(true),
        })
    }
}

/// Where the browser goes after signing in: a path on this host, never
/// another site (no scheme, no `//` or `/\` start that a browser reads as
/// another host, no backslash or control character anywhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnTo(pub String);

impl ReturnTo {
    /// Parses `text`; absent or empty is `/`.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for anything but a relative path.
    pub fn parse(text: Option<&str>) -> Result<Self, SoukError> {
        let text = match text {
            None | Some("") => return Ok(ReturnTo("/".into())),
            Some(t) => t,
        };
        let refused = || {
            SoukError::Invalid(
                "`return_to` must be a path on this host starting with a single `/` \
                 (at most 2048 bytes)"
                    .into(),
            )
        };
        if text.len() > 2048
            || !text.starts_with('/')
            || text.starts_with("//")
            || text.contains('\\')
            || text.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(refused());
        }
        // What a browser would make of it, resolved against this host, must
        // stay on this host.
        let base = reqwest::Url::parse("http://souk.invalid/").map_err(|_| refused())?;
        let joined = base.join(text).map_err(|_| refused())?;
        if joined.host_str() != Some("souk.invalid") || joined.scheme() != "http" {
            return Err(refused());
        }
        Ok(ReturnTo(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_takes_relative_paths_only() {
        for good in ["/", "/t/acme/m/forum/", "/a?b=c#d", "/x/../y"] {
            assert_eq!(ReturnTo::parse(Some(good)).unwrap().0, good);
        }
        assert_eq!(ReturnTo::parse(None).unwrap().0, "/");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/\tx",
            "/ x",
            "http:/evil.example",
            "/%0d%0aSet-Cookie: x",
        ] {
            assert!(ReturnTo::parse(Some(bad)).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn settings_are_checked_and_domains_normalised() {
        let changes = SsoChanges {
            issuer: "https://id.example.com".into(),
            client_id: "souk".into(),
            client_secret: Some("s3cret".into()),
            allowed_domains: vec!["Example.COM".into(), "example.com".into()],
            provision_members: None,
        };
        let parsed = changes.parse(false).unwrap();
        assert_eq!(parsed.allowed_domains, vec!["example.com"]);
        assert!(parsed.provision_members);
        let mut http = changes.clone();
        http.issuer = "http://id.example.com".into();
        assert!(http.parse(false).is_err());
        assert!(http.parse(true).is_ok());
        let mut private = changes.clone();
        private.issuer = "https://10.0.0.1".into();
        assert!(private.parse(false).is_err());
        let mut bad_domain = changes.clone();
        bad_domain.allowed_domains = vec!["*.example.com".into()];
        assert!(bad_domain.parse(false).is_err());
        let mut empty = changes;
        empty.client_id = String::new();
        assert!(empty.parse(false).is_err());
    }
}
