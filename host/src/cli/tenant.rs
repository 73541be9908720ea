//! `souk tenant`: tenants and their API tokens (the twins of
//! `/v1/tenants` and `/v1/tenants/{t}/tokens`).

use clap::Subcommand;

use super::{GlobalOptions, open, print};

#[derive(Debug, Subcommand)]
pub(super) enum TenantCommand {
    /// Create a tenant.
    Create {
        /// URL identifier: lowercase letters, digits, '-'.
        slug: String,
        /// Display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// List tenants.
    List,
    /// Manage a tenant's API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Create a token; it is printed once and never stored.
    Create {
        /// Tenant slug.
        tenant: String,
        /// What the token is for.
        #[arg(long)]
        name: String,
    },
    /// List a tenant's tokens (never their secrets).
    List {
        /// Tenant slug.
        tenant: String,
    },
    /// Revoke a token.
    Revoke {
        /// Tenant slug.
        tenant: String,
        /// Token id.
        id: String,
    },
}

pub(super) async fn run(command: TenantCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    let souk = open(global).await?;
    let json = global.json;
    match command {
        TenantCommand::Create { slug, name } => {
            let name = name.unwrap_or_else(|| slug.clone());
            let tenant = souk.tenancy.create(&slug, &name).await?;
            print(json, &tenant, |t| {
                format!("created tenant {} ({})", t.slug, t.name)
            })
        }
        TenantCommand::List => {
            let tenants = souk.tenancy.list().await?;
            print(json, &tenants, |ts| {
                ts.iter()
                    .map(|t| format!("{}\t{}\t{}", t.slug, t.name, t.created_at))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        TenantCommand::Token(TokenCommand::Create { tenant, name }) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let (info, token) = souk.auth.create_token(&tenant, &name).await?;
            let value = serde_json::json!({"id": info.id, "name": info.name, "token": token});
            print(json, &value, |_| token.clone())
        }
        TenantCommand::Token(TokenCommand::List { tenant }) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let tokens = souk.auth.list_tokens(&tenant).await?;
            print(json, &tokens, |ts| {
                ts.iter()
                    .map(|t| {
                        format!(
                            "{}\t{}\t{}",
                            t.id,
                            t.name,
                            t.revoked_at
                                .as_deref()
                                .map_or("active".into(), |r| format!("revoked {r}"))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        TenantCommand::Token(TokenCommand::Revoke { tenant, id }) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let info = souk.auth.revoke_token(&tenant, &id).await?;
            print(json, &info, |t| {
                format!("revoked token {} ({})", t.id, t.name)
            })
        }
    }
}
