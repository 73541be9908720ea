//! Single sign-on: a tenant's OpenID Connect provider, and signing its
//! users in with the authorization-code flow with PKCE ([`Sso`]).
//!
//! A tenant administrator configures one provider ([`Sso::configure`]):
//! the host reads its discovery document and key set then, and refuses a
//! provider it could not use. A sign-in starts at [`Sso::start`], which
//! keeps `state` and `nonce` (as hashes), the PKCE verifier and a
//! browser-binding secret server-side for [`SsoConfig::login_ttl`] and
//! sends the browser to the provider; the provider sends it back to
//! [`Sso::callback`], which takes the state (once), exchanges the code,
//! verifies the ID token ([`id_token`]), finds or provisions the user by
//! verified address and opens a session with the people service, exactly
//! as a password sign-in does.
//!
//! Allowed only while one of the tenant's subscriptions grants a feature
//! its module declares with `kind: sso` ([`Sso::require_feature`]).
//! docs/sso.md is the manual.

pub mod id_token;
pub mod input;
pub mod provider;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use souk_module_registry::FeatureKind;
use sqlx::SqliteConnection;

use crate::auth::Principal;
use crate::billing::service::Billing;
use crate::capabilities::context::Caller;
use crate::clock::{Clock, rfc3339};
use crate::control_plane::sso::{self, LoginRow, ProviderRow};
use crate::control_plane::{ControlPlane, audit};
use crate::entitlements::Decision;
use crate::error::SoukError;
use crate::installer::Installer;
use crate::people::throttle::PublicLimiter;
use crate::people::{People, SignIn, UserStatus};
use crate::secrets::{random_secret, token_hash};
use crate::tenancy::Tenant;
use crate::usage::Usage;

use id_token::{Expected, TokenError};
use input::{ReturnTo, SsoChanges};
use provider::{CodeExchange, ProviderClient, ProviderError};

/// Single sign-on's knobs (docs/sso.md).
#[derive(Debug, Clone)]
pub struct SsoConfig {
    /// Allow `http://` providers and providers at loopback, private and
    /// link-local addresses (default off: HTTPS to public addresses only).
    pub allow_insecure: bool,
    /// Bound on each request to a provider (default 10 s).
    pub http_timeout: Duration,
    /// How long a started sign-in may take to come back (default 10 min).
    pub login_ttl: Duration,
    /// Clock skew tolerated on an ID token's times (default 60 s).
    pub leeway: Duration,
    /// The shortest time between two fetches of a provider's key set
    /// prompted by tokens naming keys not in it (default 60 s).
    pub jwks_min_refresh: Duration,
    /// The host's public base URL (`https://souk.example.com`), from which
    /// the callback URL registered with providers is made; unset, the
    /// request's own `Host` is used.
    pub public_url: Option<String>,
}

impl Default for SsoConfig {
    fn default() -> Self {
        SsoConfig {
            allow_insecure: false,
            http_timeout: Duration::from_secs(10),
            login_ttl: Duration::from_secs(600),
            leeway: Duration::from_secs(60),
            jwks_min_refresh: Duration::from_secs(60),
            public_url: None,
        }
    }
}

/// What single sign-on keeps for the life of the host: its configuration
/// and the client (with its cached key sets).
#[derive(Debug)]
pub struct SsoState {
    /// The configuration.
    pub config: SsoConfig,
    /// The provider client.
    pub client: ProviderClient,
}

impl SsoState {
    /// The state for `config`.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a public URL that is not an http(s)
    /// URL; when the HTTP client cannot be built (its TLS backend).
    pub fn new(config: SsoConfig) -> Result<Self, SoukError> {
        if let Some(url) = &config.public_url {
            let parsed = reqwest::Url::parse(url).ok();
            if !parsed.is_some_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.has_host()
                    && u.query().is_none()
                    && u.fragment().is_none()
            }) {
                return Err(SoukError::Invalid(
                    "--sso-public-url must be an http(s) URL such as https://souk.example.com, \
                     without query or fragment"
                        .into(),
                ));
            }
        }
        let client = ProviderClient::new(&config)
            .map_err(|e| SoukError::Internal(anyhow::anyhow!("single sign-on client: {e}")))?;
        Ok(SsoState { config, client })
    }
}

/// A tenant's provider as the API shows it: never the client secret.
#[derive(Debug, Clone, Serialize)]
pub struct SsoSettings {
    /// The issuer.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// Always true: a secret is stored (it is never shown).
    pub client_secret_set: bool,
    /// The e-mail domains allowed to sign in; empty: any.
    pub allowed_domains: Vec<String>,
    /// Whether unknown verified addresses become members.
    pub provision_members: bool,
    /// From the discovery document.
    pub authorization_endpoint: String,
    /// From the discovery document.
    pub token_endpoint: String,
    /// From the discovery document.
    pub jwks_uri: String,
    /// The redirect URI to register with the provider, when the host knows
    /// its public URL (`--sso-public-url`).
    pub callback_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A sign-in started: where to send the browser, and the secret the
/// browser must bring back (the `souk_sso` cookie).
#[derive(Debug, Clone)]
pub struct Started {
    /// The provider's authorization URL with this sign-in's parameters.
    pub location: String,
    /// The browser-binding secret.
    pub browser_secret: String,
}

/// What the provider sent back to the callback.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    /// `code`.
    pub code: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `error`, when the provider refused.
    pub error: Option<String>,
}

/// A finished sign-in: the session (as a password sign-in's) and where
/// to send the browser.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The session and its secrets.
    pub sign_in: SignIn,
    /// The relative path to go to.
    pub return_to: String,
    /// Whether the user was created by this sign-in.
    pub provisioned: bool,
}

fn no_sso(slug: &str) -> SoukError {
    SoukError::NotFound(format!("tenant {slug:?} has no single sign-on"))
}

fn login_refused() -> SoukError {
    SoukError::Unauthorized(
        "this sign-in is unknown, was used already or has expired; start again".into(),
    )
}

fn provider_refused(e: ProviderError) -> SoukError {
    SoukError::Unauthorized(format!("single sign-on failed: {e}"))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn domains_json(domains: &[String]) -> String {
    serde_json::Value::from(domains.to_vec()).to_string()
}

fn domains_of(row: &ProviderRow) -> Vec<String> {
    serde_json::from_str(&row.allowed_domains).unwrap_or_default()
}

/// The single sign-on service: borrows what it needs from the host
/// (build one per operation with `Souk::sso`).
pub struct Sso<'a> {
    /// Where providers and sign-ins are stored.
    pub control: &'a ControlPlane,
    /// The host's clock.
    pub clock: &'a dyn Clock,
    /// Configuration and the provider client.
    pub state: &'a SsoState,
    /// Users and sessions.
    pub people: People<'a>,
    /// The tenant's installations.
    pub installer: Installer<'a>,
    /// Keeps the engine's grants current.
    pub usage: Usage<'a>,
    /// The entitlement engine.
    pub billing: &'a Billing,
    /// The per-address rate of anonymous requests (shared with `public`
    /// routes): starting and finishing sign-ins count against it.
    pub public_limiter: &'a PublicLimiter,
}

impl Sso<'_> {
    fn config(&self) -> &SsoConfig {
        &self.state.config
    }

    async fn provider(&self, tenant: &Tenant) -> Result<Option<ProviderRow>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(sso::provider(&mut conn, &tenant.id).await?)
    }

    fn callback_url(&self, tenant: &Tenant, base: Option<&str>) -> Option<String> {
        let base = self.config().public_url.as_deref().or(base)?;
        Some(format!(
            "{}/v1/tenants/{}/sso/callback",
            base.trim_end_matches('/'),
            tenant.slug
        ))
    }

    fn settings(&self, tenant: &Tenant, row: &ProviderRow) -> SsoSettings {
        SsoSettings {
            issuer: row.issuer.clone(),
            client_id: row.client_id.clone(),
            client_secret_set: true,
            allowed_domains: domains_of(row),
            provision_members: row.provision_members,
            authorization_endpoint: row.authorization_endpoint.clone(),
            token_endpoint: row.token_endpoint.clone(),
            jwks_uri: row.jwks_uri.clone(),
            callback_url: self.callback_url(tenant, None),
            created_at: row.created_at.clone(),
            updated_at: row.updated_at.clone(),
        }
    }

    /// Checks that one of the tenant's subscriptions grants a feature of
    /// kind `sso`: over the tenant's installed modules whose manifests
    /// declare one, the entitlement engine is asked; the first allows it.
    ///
    /// # Errors
    /// [`SoukError::Denied`] (402 with the feature, reason and upgrade) as
    /// the engine answers for the first such feature;
    /// [`SoukError::PaymentRequired`] when no installed module declares
    /// one.
    pub async fn require_feature(&self, tenant: &Tenant) -> Result<(), SoukError> {
        let engine = self.billing.engine();
        let mut first_denial = None;
        for installation in self.installer.list(tenant).await? {
            let resolved = self.usage.ensure_grant(tenant, &installation).await?;
            let manifest = &resolved.manifest;
            for feature in manifest
                .features
                .iter()
                .filter(|f| f.kind == FeatureKind::Sso)
            {
                match engine.check_feature(&tenant.id, manifest.slug.as_str(), &feature.key) {
                    Decision::Allowed => return Ok(()),
                    Decision::Denied(denial) => {
                        first_denial.get_or_insert(denial);
                    }
                }
            }
        }
        Err(match first_denial {
            Some(denial) => SoukError::Denied(Box::new(denial)),
            None => SoukError::PaymentRequired(format!(
                "single sign-on needs a plan with a single sign-on feature, and none of the \
                 modules tenant {} has installed offers one",
                tenant.slug
            )),
        })
    }

    /// The tenant's provider settings.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when none is configured.
    pub async fn show(&self, tenant: &Tenant) -> Result<SsoSettings, SoukError> {
        let row = self
            .provider(tenant)
            .await?
            .ok_or_else(|| no_sso(&tenant.slug))?;
        Ok(self.settings(tenant, &row))
    }

    /// Configures (or replaces) the tenant's provider after reading its
    /// discovery document and key set. A change without a client secret
    /// keeps the stored one.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a bad field or a provider the host cannot
    /// use (saying what is wrong); the feature gate's 402.
    pub async fn configure(
        &self,
        actor: &Principal,
        tenant: &Tenant,
        changes: &SsoChanges,
    ) -> Result<SsoSettings, SoukError> {
        let parsed = changes.parse(self.state.client.allow_insecure())?;
        self.require_feature(tenant).await?;
        let stored = self.provider(tenant).await?;
        let client_secret = match (parsed.client_secret, &stored) {
            (Some(secret), _) => secret,
            (None, Some(row)) => row.client_secret.clone(),
            (None, None) => {
                return Err(SoukError::Invalid(
                    "`client_secret` is required when no provider is configured yet".into(),
                ));
            }
        };
        let client = &self.state.client;
        let discovery = client
            .discover(&parsed.issuer)
            .await
            .map_err(|e| SoukError::Invalid(format!("the provider cannot be used: {e}")))?;
        client
            .refresh_keys(&discovery.jwks_uri, self.clock.now())
            .await
            .map_err(|e| SoukError::Invalid(format!("the provider cannot be used: {e}")))?;
        let at = rfc3339(self.clock.now());
        let row = ProviderRow {
            tenant_id: tenant.id.clone(),
            issuer: parsed.issuer,
            client_id: parsed.client_id,
            client_secret,
            allowed_domains: domains_json(&parsed.allowed_domains),
            provision_members: parsed.provision_members,
            authorization_endpoint: discovery.authorization_endpoint,
            token_endpoint: discovery.token_endpoint,
            jwks_uri: discovery.jwks_uri,
            token_auth: discovery.token_auth.to_owned(),
            created_at: stored
                .as_ref()
                .map_or_else(|| at.clone(), |s| s.created_at.clone()),
            updated_at: at.clone(),
        };
        let mut tx = self.control.pool().begin().await?;
        sso::save_provider(&mut tx, &row).await?;
        let detail = format!(
            "issuer {}, client {}{}",
            row.issuer,
            row.client_id,
            if changes.client_secret.is_some() {
                ", new client secret"
            } else {
                ""
            }
        );
        record(
            &mut tx,
            tenant,
            &at,
            "sso_configure",
            actor.caller(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(self.settings(tenant, &row))
    }

    /// Removes the tenant's provider (and the sign-ins under way). Users
    /// and their sessions stay.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when none is configured.
    pub async fn remove(&self, actor: &Principal, tenant: &Tenant) -> Result<(), SoukError> {
        let at = rfc3339(self.clock.now());
        let mut tx = self.control.pool().begin().await?;
        let issuer = sso::provider(&mut tx, &tenant.id)
            .await?
            .ok_or_else(|| no_sso(&tenant.slug))?
            .issuer;
        sso::remove_provider(&mut tx, &tenant.id).await?;
        let detail = format!("issuer {issuer}");
        record(&mut tx, tenant, &at, "sso_remove", actor.caller(), &detail).await?;
        tx.commit().await?;
        Ok(())
    }

    fn throttle(&self, address: Option<IpAddr>) -> Result<(), SoukError> {
        let Some(address) = address else {
            return Ok(());
        };
        self.public_limiter
            .take(address, self.clock.now())
            .map_err(|wait| SoukError::TooManyRequests {
                detail: format!(
                    "too many sign-ins from this address; try again in {}s",
                    wait.as_secs().max(1)
                ),
                retry_after: wait,
            })
    }

    /// The tenant named `slug` and its provider; one answer for an unknown
    /// tenant and one without single sign-on, so anonymous callers learn
    /// nothing about which tenants exist.
    async fn tenant_with_provider(&self, slug: &str) -> Result<(Tenant, ProviderRow), SoukError> {
        let tenant = self
            .control
            .tenant_by_slug(slug)
            .await?
            .ok_or_else(|| no_sso(slug))?;
        let row = self.provider(&tenant).await?.ok_or_else(|| no_sso(slug))?;
        Ok((tenant, row))
    }

    /// Starts a sign-in for tenant `slug` that ends at `return_to`.
    /// `base` is the request's own origin (`http://host:port`), used for
    /// the callback URL when `--sso-public-url` is not set.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for a tenant without single sign-on,
    /// [`SoukError::Invalid`] for a `return_to` that is not a relative
    /// path, the feature gate's 402, [`SoukError::TooManyRequests`].
    pub async fn start(
        &self,
        slug: &str,
        return_to: Option<&str>,
        base: &str,
        address: Option<IpAddr>,
    ) -> Result<Started, SoukError> {
        self.throttle(address)?;
        let return_to = ReturnTo::parse(return_to)?;
        let (tenant, provider) = self.tenant_with_provider(slug).await?;
        self.require_feature(&tenant).await?;
        let redirect_uri = self
            .callback_url(&tenant, Some(base))
            .ok_or_else(|| no_sso(slug))?;
        let state = random_secret();
        let nonce = random_secret();
        let code_verifier = random_secret();
        let browser_secret = random_secret();
        let now = self.clock.now();
        let ttl = self.config().login_ttl;
        let row = LoginRow {
            state_hash: token_hash(&state),
            tenant_id: tenant.id.clone(),
            nonce_hash: token_hash(&nonce),
            browser_hash: token_hash(&browser_secret),
            code_verifier: code_verifier.clone(),
            redirect_uri: redirect_uri.clone(),
            return_to: return_to.0,
            created_at: rfc3339(now),
            expires_at: (now + ttl).unix_timestamp(),
        };
        let mut conn = self.control.pool().acquire().await?;
        let forget_before = (now - Duration::from_secs(24 * 3600)).unix_timestamp();
        sso::insert_login(&mut conn, &row, forget_before).await?;
        let mut location = reqwest::Url::parse(&provider.authorization_endpoint).map_err(|_| {
            SoukError::Invalid("the provider's authorization endpoint is not a URL".into())
        })?;
        location
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &s256(&code_verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(Started {
            location: location.into(),
            browser_secret,
        })
    }

    /// Finishes a sign-in for tenant `slug` with what the provider sent
    /// back and the browser's `souk_sso` cookie.
    ///
    /// # Errors
    /// [`SoukError::Unauthorized`] for an unknown, used or expired state,
    /// another browser's, a provider's refusal, a failed code exchange or
    /// an ID token that does not verify (naming the rule);
    /// [`SoukError::Forbidden`] for an address the tenant does not allow,
    /// an unknown address when provisioning is off, or a disabled user;
    /// the feature gate's 402.
    pub async fn callback(
        &self,
        slug: &str,
        params: &CallbackParams,
        browser_secret: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Finished, SoukError> {
        self.throttle(address)?;
        let (tenant, provider) = self.tenant_with_provider(slug).await?;
        let state = params.state.as_deref().ok_or_else(login_refused)?;
        let now = self.clock.now();
        let mut conn = self.control.pool().acquire().await?;
        let login = sso::take_login(
            &mut conn,
            &tenant.id,
            &token_hash(state),
            now.unix_timestamp(),
            &rfc3339(now),
        )
        .await?
        .ok_or_else(login_refused)?;
        drop(conn);
        if browser_secret.map(token_hash).as_deref() != Some(login.browser_hash.as_str()) {
            return Err(SoukError::Unauthorized(
                "this sign-in was started in another browser (or its cookie is gone); start again"
                    .into(),
            ));
        }
        if let Some(error) = &params.error {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(SoukError::Unauthorized(format!(
                "the provider refused the sign-in ({code})"
            )));
        }
        let code = params
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| SoukError::Unauthorized("the provider sent back no code".into()))?;
        self.require_feature(&tenant).await?;
        let client = &self.state.client;
        let token = client
            .exchange(&CodeExchange {
                token_endpoint: &provider.token_endpoint,
                token_auth: &provider.token_auth,
                client_id: &provider.client_id,
                client_secret: &provider.client_secret,
                code,
                redirect_uri: &login.redirect_uri,
                code_verifier: &login.code_verifier,
            })
            .await
            .map_err(provider_refused)?;
        let kid = id_token::kid_of(&token);
        let keys = client
            .keys(&provider.jwks_uri, kid.as_deref(), self.clock.now())
            .await
            .map_err(provider_refused)?;
        let expected = Expected {
            issuer: &provider.issuer,
            client_id: &provider.client_id,
            nonce_hash: &login.nonce_hash,
            now: self.clock.now().unix_timestamp(),
            leeway: i64::try_from(self.config().leeway.as_secs()).unwrap_or(60),
        };
        let identity = id_token::verify(&token, &keys, &expected).map_err(|e| match e {
            TokenError::EmailNotVerified => SoukError::Forbidden(e.to_string()),
            other => SoukError::Unauthorized(format!("single sign-on failed: {other}")),
        })?;
        let (user, provisioned) = self
            .user_for(&tenant, &provider, &identity, address)
            .await?;
        let sign_in = self.people.open_session(&tenant, &user.id, address).await?;
        let at = rfc3339(self.clock.now());
        let detail = format!(
            "{}: session {} via {} (subject {}){}",
            user.id,
            sign_in.session.id,
            provider.issuer,
            identity.subject,
            if provisioned { ", provisioned" } else { "" }
        );
        let actor = Caller::user(&user.id, &user.display_name, user.role, None);
        let mut conn = self.control.pool().acquire().await?;
        record(&mut conn, &tenant, &at, "sso_login", actor, &detail).await?;
        Ok(Finished {
            sign_in,
            return_to: login.return_to,
            provisioned,
        })
    }

    /// The user a verified identity signs in as: the tenant's user with
    /// that address (an invited one becomes active), or a new member.
    async fn user_for(
        &self,
        tenant: &Tenant,
        provider: &ProviderRow,
        identity: &id_token::Identity,
        address: Option<IpAddr>,
    ) -> Result<(crate::people::User, bool), SoukError> {
        let domain = identity
            .email
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        let allowed = domains_of(provider);
        let existing = self.people.user_by_email(tenant, &identity.email).await?;
        let refuse = |why: String| SoukError::Forbidden(why);
        if !allowed.is_empty() && !allowed.contains(&domain) {
            if let Some(user) = &existing {
                self.record_refusal(tenant, user, "address domain not allowed", address)
                    .await?;
            }
            return Err(refuse(format!(
                "tenant {} does not allow sign-ins from addresses at {domain}",
                tenant.slug
            )));
        }
        match existing {
            Some(user) if user.status == UserStatus::Disabled => {
                self.record_refusal(tenant, &user, "user disabled", address)
                    .await?;
                Err(refuse(
                    "this user is disabled; ask an administrator of the tenant".into(),
                ))
            }
            Some(user) if user.status == UserStatus::Invited => {
                let user = self
                    .people
                    .activate_verified(tenant, &user.id, &provider.issuer)
                    .await?;
                Ok((user, false))
            }
            Some(user) => Ok((user, false)),
            None if provider.provision_members => {
                let user = self
                    .people
                    .provision_member(
                        tenant,
                        &identity.email,
                        identity.name.as_deref(),
                        &provider.issuer,
                    )
                    .await?;
                Ok((user, true))
            }
            None => Err(refuse(format!(
                "tenant {} has no user with this address; ask an administrator to invite you",
                tenant.slug
            ))),
        }
    }

    async fn record_refusal(
        &self,
        tenant: &Tenant,
        user: &crate::people::User,
        why: &str,
        address: Option<IpAddr>,
    ) -> Result<(), SoukError> {
        let at = rfc3339(self.clock.now());
        let from = address.map_or_else(String::new, |a| format!(" from {a}"));
        let detail = format!("{}: single sign-on, {why}{from}", user.id);
        let mut conn = self.control.pool().acquire().await?;
        record(
            &mut conn,
            tenant,
            &at,
            "login_failed",
            Caller::anonymous(),
            &detail,
        )
        .await
    }
}

async fn record(
    conn: &mut SqliteConnection,
    tenant: &Tenant,
    at: &str,
    action: &str,
    actor: Caller,
    detail: &str,
) -> Result<(), SoukError> {
    audit::record_host_event(
        conn,
        &audit::NewAuditEvent {
            at,
            tenant_id: &tenant.id,
            module: "",
            action,
            from: None,
            to: None,
            actor_kind: Some(actor.kind.as_str()),
            actor_id: &actor.id,
            actor_name: &actor.name,
            detail: Some(detail),
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_must_be_an_http_url() {
        for good in ["https://souk.example.com", "http://127.0.0.1:8080/base/"] {
            let config = SsoConfig {
                public_url: Some(good.into()),
                ..SsoConfig::default()
            };
            assert!(SsoState::new(config).is_ok(), "{good}");
        }
        for bad in [
            "souk.example.com",
            "ftp://x.example",
            "https://x.example/?a=b",
            "",
        ] {
            let config = SsoConfig {
                public_url: Some(bad.into()),
                ..SsoConfig::default()
            };
            assert!(SsoState::new(config).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pkce_challenge_is_the_rfc_7636_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
