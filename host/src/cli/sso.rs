//! Single sign-on's knobs (docs/sso.md), flags of every command because
//! every command opens the host with them (as people's are).

use std::time::Duration;

use clap::Args;

use crate::sso::SsoConfig;

#[derive(Debug, Args)]
pub(super) struct SsoOptions {
    /// Allow OpenID Connect providers over plain http and at loopback,
    /// private or link-local addresses (for tests and labs; off: https to
    /// public addresses only).
    #[arg(long, global = true, env = "SOUK_SSO_ALLOW_INSECURE")]
    sso_allow_insecure: bool,
    /// Seconds each request to a provider may take.
    #[arg(
        long,
        global = true,
        env = "SOUK_SSO_HTTP_TIMEOUT_SECS",
        default_value_t = 10
    )]
    sso_http_timeout_secs: u64,
    /// Seconds a started sign-in may take to come back from the provider.
    #[arg(
        long,
        global = true,
        env = "SOUK_SSO_LOGIN_TTL_SECS",
        default_value_t = 600
    )]
    sso_login_ttl_secs: u64,
    /// Seconds of clock skew tolerated on an ID token's times.
    #[arg(
        long,
        global = true,
        env = "SOUK_SSO_LEEWAY_SECS",
        default_value_t = 60
    )]
    sso_leeway_secs: u64,
    /// Shortest interval, in seconds, between two fetches of a provider's
    /// keys prompted by tokens naming keys it does not publish.
    #[arg(
        long,
        global = true,
        env = "SOUK_SSO_JWKS_REFRESH_SECS",
        default_value_t = 60
    )]
    sso_jwks_refresh_secs: u64,
    /// The host's public base URL (e.g. https://souk.example.com): the
    /// callback URL given to providers is made from it. Unset: from each
    /// request's Host header.
    #[arg(long, global = true, env = "SOUK_SSO_PUBLIC_URL")]
    sso_public_url: Option<String>,
}

impl SsoOptions {
    pub(super) fn config(&self) -> SsoConfig {
        SsoConfig {
            allow_insecure: self.sso_allow_insecure,
            http_timeout: Duration::from_secs(self.sso_http_timeout_secs.max(1)),
            login_ttl: Duration::from_secs(self.sso_login_ttl_secs.max(1)),
            leeway: Duration::from_secs(self.sso_leeway_secs),
            jwks_min_refresh: Duration::from_secs(self.sso_jwks_refresh_secs),
            public_url: self.sso_public_url.clone(),
        }
    }
}
