//! `souk webhook`: a tenant's webhook endpoints and their delivery logs
//! (the twins of `/v1/tenants/{t}/modules/{m}/webhooks`, docs/webhooks.md).

use clap::Subcommand;

use super::{GlobalOptions, open, print};
use crate::events::{EndpointChange, NewEndpoint};

#[derive(Debug, Subcommand)]
pub(super) enum WebhookCommand {
    /// Register an endpoint; its signing secret is printed once.
    Create {
        /// Tenant slug.
        tenant: String,
        /// Module slug (installed for the tenant).
        module: String,
        /// Where to POST (https; http only with --webhook-allow-http).
        #[arg(long)]
        url: String,
        /// An event type to receive (repeat for several); none: all the
        /// module emits.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// A note.
        #[arg(long)]
        description: Option<String>,
    },
    /// List a module's endpoints (never their secrets).
    List {
        /// Tenant slug.
        tenant: String,
        /// Module slug.
        module: String,
    },
    /// Turn an endpoint's deliveries on or off.
    Enable {
        /// Tenant slug.
        tenant: String,
        /// Module slug.
        module: String,
        /// Endpoint id.
        id: String,
        /// `false` to turn deliveries off.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        on: bool,
    },
    /// Delete an endpoint.
    Delete {
        /// Tenant slug.
        tenant: String,
        /// Module slug.
        module: String,
        /// Endpoint id.
        id: String,
    },
    /// Give an endpoint a new secret (printed once); the old one signs too
    /// for the grace period.
    RotateSecret {
        /// Tenant slug.
        tenant: String,
        /// Module slug.
        module: String,
        /// Endpoint id.
        id: String,
    },
    /// An endpoint's delivery log, newest first.
    Deliveries {
        /// Tenant slug.
        tenant: String,
        /// Module slug.
        module: String,
        /// Endpoint id.
        id: String,
        /// Only deliveries with an id below this one (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// Deliveries per page (1 to 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Queue a delivery's event again.
    Redeliver {
        /// Tenant slug.
        tenant: String,
        /// Module slug.
        module: String,
        /// Endpoint id.
        id: String,
        /// Delivery id.
        delivery: i64,
    },
}

pub(super) async fn run(command: WebhookCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    let souk = open(global).await?;
    let json = global.json;
    let events = souk.events();
    match command {
        WebhookCommand::Create {
            tenant,
            module,
            url,
            event_types,
            description,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let new = NewEndpoint {
                url,
                event_types: (!event_types.is_empty()).then_some(event_types),
                description,
                enabled: None,
            };
            let created = events.create_endpoint(&tenant, &module, new).await?;
            print(json, &created, |c| {
                format!(
                    "created {} -> {}\nsigning secret (shown once): {}",
                    c.endpoint.id, c.endpoint.url, c.secret
                )
            })
        }
        WebhookCommand::List { tenant, module } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let endpoints = events.list_endpoints(&tenant, &module).await?;
            print(json, &endpoints, |list| {
                list.iter()
                    .map(|e| {
                        let types = e
                            .event_types
                            .as_ref()
                            .map_or_else(|| "all".to_owned(), |t| t.join(","));
                        let state = if e.enabled { "enabled" } else { "disabled" };
                        format!("{}\t{}\t{types}\t{state}", e.id, e.url)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        WebhookCommand::Enable {
            tenant,
            module,
            id,
            on,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let change = EndpointChange {
                enabled: Some(on),
                ..EndpointChange::default()
            };
            let endpoint = events
                .update_endpoint(&tenant, &module, &id, change)
                .await?;
            print(json, &endpoint, |e| {
                format!(
                    "{} {}",
                    e.id,
                    if e.enabled { "enabled" } else { "disabled" }
                )
            })
        }
        WebhookCommand::Delete { tenant, module, id } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            events.delete_endpoint(&tenant, &module, &id).await?;
            print(json, &serde_json::json!({"deleted": id}), |_| {
                format!("deleted {id}")
            })
        }
        WebhookCommand::RotateSecret { tenant, module, id } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let rotated = events.rotate_secret(&tenant, &module, &id).await?;
            print(json, &rotated, |r| {
                format!("new signing secret (shown once): {}", r.secret)
            })
        }
        WebhookCommand::Deliveries {
            tenant,
            module,
            id,
            before,
            limit,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let page = events
                .deliveries(&tenant, &module, &id, before, limit)
                .await?;
            print(json, &page, |p| {
                p.deliveries
                    .iter()
                    .map(|d| {
                        format!(
                            "{}\t{}\t{}\t{}\tattempts {}\t{}",
                            d.id,
                            d.event_id,
                            d.event_type,
                            d.status,
                            d.attempts,
                            d.last_error.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        WebhookCommand::Redeliver {
            tenant,
            module,
            id,
            delivery,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let queued = events.redeliver(&tenant, &module, &id, delivery).await?;
            print(json, &queued, |d| {
                format!("queued delivery {} of {}", d.id, d.event_id)
            })
        }
    }
}
