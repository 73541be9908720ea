//! `souk sso`: a tenant's OpenID Connect provider from the CLI (the twin
//! of `/v1/tenants/{t}/sso`, calling the same `Sso` functions as the
//! operator), and single sign-on's knobs (docs/sso.md), flags of every
//! command because every command opens the host with them (as people's
//! are).

use std::io::BufRead as _;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{GlobalOptions, open, print};
use crate::auth::Principal;
use crate::sso::input::SsoChanges;
use crate::sso::{SsoConfig, SsoSettings};

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

#[derive(Debug, Subcommand)]
pub(super) enum SsoCommand {
    /// Show a tenant's provider (never its client secret).
    Show {
        /// Tenant slug.
        tenant: String,
    },
    /// Configure (or replace) a tenant's provider; its discovery document
    /// and keys are checked first.
    Set {
        /// Tenant slug.
        tenant: String,
        /// The issuer, exactly as the provider writes it.
        #[arg(long)]
        issuer: String,
        /// The client id.
        #[arg(long)]
        client_id: String,
        /// Read the client secret from the first line of standard input
        /// (kept out of the process list and shell history). Without it,
        /// the stored secret is kept.
        #[arg(long)]
        client_secret_stdin: bool,
        /// An e-mail domain allowed to sign in (repeat; default: any).
        #[arg(long = "allowed-domain")]
        allowed_domains: Vec<String>,
        /// Do not create members for unknown verified addresses.
        #[arg(long)]
        no_provisioning: bool,
    },
    /// Remove a tenant's provider (users and sessions stay).
    Remove {
        /// Tenant slug.
        tenant: String,
    },
}

fn text(s: &SsoSettings) -> String {
    format!(
        "issuer {}\nclient {} (secret set)\nallowed domains: {}\nprovision members: {}\ncallback: {}",
        s.issuer,
        s.client_id,
        if s.allowed_domains.is_empty() {
            "any".to_owned()
        } else {
            s.allowed_domains.join(", ")
        },
        s.provision_members,
        s.callback_url
            .as_deref()
            .unwrap_or("<public URL>/v1/tenants/<tenant>/sso/callback (set --sso-public-url)"),
    )
}

pub(super) async fn run(command: SsoCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    let souk = open(global).await?;
    let json = global.json;
    let sso = souk.sso();
    let operator = Principal::Operator;
    match command {
        SsoCommand::Show { tenant } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            print(json, &sso.show(&tenant).await?, text)
        }
        SsoCommand::Set {
            tenant,
            issuer,
            client_id,
            client_secret_stdin,
            allowed_domains,
            no_provisioning,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let client_secret = if client_secret_stdin {
                let mut secret = String::new();
                std::io::stdin().lock().read_line(&mut secret)?;
                Some(secret.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let changes = SsoChanges {
                issuer,
                client_id,
                client_secret,
                allowed_domains,
                provision_members: Some(!no_provisioning),
            };
            let settings = sso.configure(&operator, &tenant, &changes).await?;
            print(json, &settings, text)
        }
        SsoCommand::Remove { tenant } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            sso.remove(&operator, &tenant).await?;
            print(json, &serde_json::json!({"removed": true}), |_| {
                format!("removed the single sign-on provider of {}", tenant.slug)
            })
        }
    }
}
