//! Talking to an OpenID Connect provider: its discovery document, its key
//! set (cached, fetched again when a token names a key not in it) and its
//! token endpoint.
//!
//! Every request goes through [`ProviderClient`]: bounded in time
//! ([`SsoConfig::http_timeout`]) and size ([`MAX_RESPONSE_BYTES`]), no
//! redirects followed, and — unless the operator allows insecure providers
//! — HTTPS only, to host names that resolve to public addresses (a tenant
//! administrator chooses the issuer URL, so the host must not become a way
//! to reach the operator's private network).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::SsoConfig;
use super::id_token::KeySet;

/// The largest response the host reads from a provider.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why talking to a provider failed; each message says what to check.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// A URL the host will not use.
    #[error("{0}")]
    Url(String),
    /// The request failed or answered an error status.
    #[error("{0}")]
    Unreachable(String),
    /// The answer is not what the protocol says.
    #[error("{0}")]
    Invalid(String),
}

/// Whether `ip` is an address of the public internet (not loopback,
/// private, link-local, shared, documentation, multicast, unspecified or
/// reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Resolves host names to their public addresses only.
struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{} has no public address", name.as_str()).into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Parses a provider URL and checks it against the policy: `https` (or
/// `http` when insecure providers are allowed), no user info, no
/// fragment, and no literal address outside the public internet unless
/// insecure providers are allowed.
///
/// # Errors
/// [`ProviderError::Url`] naming `what` and the rule.
pub fn check_url(
    what: &str,
    text: &str,
    allow_insecure: bool,
) -> Result<reqwest::Url, ProviderError> {
    let bad = |why: &str| ProviderError::Url(format!("the {what} {why}"));
    let url = reqwest::Url::parse(text).map_err(|_| bad("is not an absolute URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        _ => return Err(bad("must be an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain a user name or password"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not contain a fragment"));
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(bad("has no host")),
    };
    if let Some(ip) = literal
        && !allow_insecure
        && !is_public(ip)
    {
        return Err(bad("points at an address outside the public internet"));
    }
    Ok(url)
}

/// The parts of a discovery document the host uses, checked.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// Where browsers are sent to sign in.
    pub authorization_endpoint: String,
    /// Where codes are exchanged.
    pub token_endpoint: String,
    /// The key set.
    pub jwks_uri: String,
    /// `client_secret_basic` (preferred) or `client_secret_post`.
    pub token_auth: &'static str,
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    response_types_supported: Vec<String>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// A token endpoint's answer, as far as the host reads it.
#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

/// A key set as cached.
#[derive(Clone)]
struct CachedKeys {
    keys: Arc<KeySet>,
    /// When, by the host's clock.
    fetched: OffsetDateTime,
}

/// The HTTP client for providers, with the key sets it fetched.
pub struct ProviderClient {
    http: reqwest::Client,
    allow_insecure: bool,
    jwks_min_refresh: Duration,
    keys: Mutex<HashMap<String, CachedKeys>>,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient")
            .field("allow_insecure", &self.allow_insecure)
            .finish_non_exhaustive()
    }
}

impl ProviderClient {
    /// A client following `config`.
    ///
    /// # Errors
    /// When the TLS backend cannot start.
    pub fn new(config: &SsoConfig) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("souk/", env!("CARGO_PKG_VERSION")));
        if !config.allow_insecure {
            builder = builder
                .https_only(true)
                .dns_resolver(Arc::new(PublicResolver));
        }
        Ok(ProviderClient {
            http: builder.build()?,
            allow_insecure: config.allow_insecure,
            jwks_min_refresh: config.jwks_min_refresh,
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `http` and non-public addresses are allowed.
    pub fn allow_insecure(&self) -> bool {
        self.allow_insecure
    }

    async fn read(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Vec<u8>, ProviderError> {
        let unreachable = |why: String| ProviderError::Unreachable(format!("the {what} {why}"));
        let mut response = request
            .send()
            .await
            .map_err(|e| unreachable(format!("could not be fetched ({})", short(&e))))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(format!("could not be read ({})", short(&e))))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(unreachable(format!(
                    "answered more than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(unreachable(format!("answered HTTP {}", status.as_u16())));
        }
        Ok(body)
    }

    /// Fetches and checks `issuer`'s discovery document: it names the same
    /// issuer, offers the code flow, RS256 ID tokens, PKCE with S256 (when
    /// it lists methods) and a client-secret authentication the host
    /// speaks; its endpoints pass the URL policy.
    ///
    /// # Errors
    /// [`ProviderError`] saying what is wrong.
    pub async fn discover(&self, issuer: &str) -> Result<Discovery, ProviderError> {
        check_url("issuer", issuer, self.allow_insecure)?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let bytes = self.read(self.http.get(&url), "discovery document").await?;
        let doc: DiscoveryDocument = serde_json::from_slice(&bytes).map_err(|_| {
            ProviderError::Invalid(
                "the discovery document is not an OpenID Connect provider's metadata (issuer, \
                 authorization_endpoint, token_endpoint and jwks_uri are required)"
                    .into(),
            )
        })?;
        let invalid = |why: &str| ProviderError::Invalid(format!("the discovery document {why}"));
        if doc.issuer != issuer {
            return Err(invalid(
                "names another issuer; configure the issuer exactly as the provider writes it",
            ));
        }
        if !doc.response_types_supported.iter().any(|t| t == "code") {
            return Err(invalid("does not offer the authorization-code flow"));
        }
        if !doc
            .id_token_signing_alg_values_supported
            .iter()
            .any(|a| matches!(a.as_str(), "RS256" | "RS384" | "RS512"))
        {
            return Err(invalid("offers no RSA signature (RS256) for ID tokens"));
        }
        if let Some(methods) = &doc.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(invalid("does not offer PKCE with S256"));
        }
        let token_auth = match &doc.token_endpoint_auth_methods_supported {
            None => "client_secret_basic",
            Some(methods) if methods.iter().any(|m| m == "client_secret_basic") => {
                "client_secret_basic"
            }
            Some(methods) if methods.iter().any(|m| m == "client_secret_post") => {
                "client_secret_post"
            }
            Some(_) => {
                return Err(invalid(
                    "offers neither client_secret_basic nor client_secret_post at its token endpoint",
                ));
            }
        };
        for (what, url) in [
            ("authorization endpoint", &doc.authorization_endpoint),
            ("token endpoint", &doc.token_endpoint),
            ("JWKS URI", &doc.jwks_uri),
        ] {
            check_url(what, url, self.allow_insecure)?;
        }
        Ok(Discovery {
            authorization_endpoint: doc.authorization_endpoint,
            token_endpoint: doc.token_endpoint,
            jwks_uri: doc.jwks_uri,
            token_auth,
        })
    }

    async fn fetch_keys(
        &self,
        jwks_uri: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<KeySet>, ProviderError> {
        check_url("JWKS URI", jwks_uri, self.allow_insecure)?;
        let bytes = self.read(self.http.get(jwks_uri), "JWKS").await?;
        let keys = KeySet::parse(&bytes).map_err(ProviderError::Invalid)?;
        if keys.keys.is_empty() {
            return Err(ProviderError::Invalid(
                "the JWKS holds no RSA signature key of at least 2048 bits".into(),
            ));
        }
        let keys = Arc::new(keys);
        self.lock_keys().insert(
            jwks_uri.to_owned(),
            CachedKeys {
                keys: keys.clone(),
                fetched: now,
            },
        );
        Ok(keys)
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedKeys>> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key set at `jwks_uri`: the cached one, fetched when there is
    /// none — or when `kid` is given, not in the cached set, and the set
    /// was fetched longer than the minimum refresh interval before `now`
    /// (the host's clock): a provider rotating its keys is followed at
    /// once, a stream of tokens naming unknown keys costs one fetch per
    /// interval.
    ///
    /// # Errors
    /// [`ProviderError`] when a needed fetch fails.
    pub async fn keys(
        &self,
        jwks_uri: &str,
        kid: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Arc<KeySet>, ProviderError> {
        let cached = self.lock_keys().get(jwks_uri).cloned();
        match cached {
            Some(c) => {
                let known = kid.is_none_or(|kid| c.keys.has_kid(kid));
                if known || now < c.fetched + self.jwks_min_refresh {
                    Ok(c.keys)
                } else {
                    self.fetch_keys(jwks_uri, now).await
                }
            }
            None => self.fetch_keys(jwks_uri, now).await,
        }
    }

    /// Fetches the key set at `jwks_uri` now (when configuring).
    ///
    /// # Errors
    /// [`ProviderError`].
    pub async fn refresh_keys(
        &self,
        jwks_uri: &str,
        now: OffsetDateTime,
    ) -> Result<Arc<KeySet>, ProviderError> {
        self.fetch_keys(jwks_uri, now).await
    }

    /// Exchanges `code` at the token endpoint; answers the ID token.
    ///
    /// # Errors
    /// [`ProviderError`] when the endpoint refuses or answers no ID token.
    pub async fn exchange(&self, exchange: &CodeExchange<'_>) -> Result<String, ProviderError> {
        check_url(
            "token endpoint",
            exchange.token_endpoint,
            self.allow_insecure,
        )?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", exchange.code),
            ("redirect_uri", exchange.redirect_uri),
            ("code_verifier", exchange.code_verifier),
        ];
        let mut request = self
            .http
            .post(exchange.token_endpoint)
            .header(reqwest::header::ACCEPT, "application/json");
        if exchange.token_auth == "client_secret_post" {
            form.push(("client_id", exchange.client_id));
            form.push(("client_secret", exchange.client_secret));
        } else {
            // RFC 6749 2.3.1: both parts form-urlencoded before Basic.
            request = request.basic_auth(
                form_encode(exchange.client_id),
                Some(form_encode(exchange.client_secret)),
            );
        }
        let bytes = self.read(request.form(&form), "token endpoint").await?;
        let answer: TokenAnswer = serde_json::from_slice(&bytes).map_err(|_| {
            ProviderError::Invalid("the token endpoint answered no `id_token`".into())
        })?;
        Ok(answer.id_token)
    }
}

/// What exchanging a code needs.
pub struct CodeExchange<'a> {
    /// The provider's token endpoint.
    pub token_endpoint: &'a str,
    /// `client_secret_basic` or `client_secret_post`.
    pub token_auth: &'a str,
    /// The client id.
    pub client_id: &'a str,
    /// The client secret.
    pub client_secret: &'a str,
    /// The code the provider sent back.
    pub code: &'a str,
    /// The redirect URI the sign-in started with.
    pub redirect_uri: &'a str,
    /// The PKCE verifier.
    pub code_verifier: &'a str,
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A short, path-free description of a request failure.
fn short(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirected"
    } else {
        "request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn provider_urls_follow_the_policy() {
        assert!(check_url("issuer", "https://id.example.com/realms/x", false).is_ok());
        for bad in [
            "http://id.example.com",
            "https://user:pw@id.example.com",
            "https://id.example.com/#x",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://169.254.169.254/latest",
            "ftp://id.example.com",
            "id.example.com",
        ] {
            assert!(check_url("issuer", bad, false).is_err(), "{bad}");
        }
        assert!(check_url("issuer", "http://127.0.0.1:8080", true).is_ok());
    }
}
