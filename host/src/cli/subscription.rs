//! `souk subscription`: a tenant's subscriptions, and the operator's grants
//! and extensions (the twins of `GET /v1/tenants/{t}/subscriptions` and
//! `POST .../subscriptions/{m}/grant` and `.../extend`).

use clap::Subcommand;

use super::{GlobalOptions, open, print};

#[derive(Debug, Subcommand)]
pub(super) enum SubscriptionCommand {
    /// List a tenant's subscriptions.
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// Put a tenant on a plan, active now, with periods paid by the operator.
    Grant {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Module slug.
        #[arg(long)]
        module: String,
        /// Plan slug.
        #[arg(long)]
        plan: String,
        /// Periods paid (at least 1).
        #[arg(long, default_value_t = 1)]
        periods: u32,
    },
    /// Add paid periods to a tenant's subscription.
    Extend {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Module slug.
        #[arg(long)]
        module: String,
        /// Periods to add.
        #[arg(long)]
        periods: u32,
    },
}

pub(super) async fn run(
    command: SubscriptionCommand,
    global: &GlobalOptions,
) -> anyhow::Result<()> {
    let souk = open(global).await?;
    let json = global.json;
    match command {
        SubscriptionCommand::List { tenant } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let list = souk.billing.list(&tenant).await?;
            print(json, &list, |list| {
                list.iter()
                    .map(|s| {
                        format!(
                            "{}\t{}\t{}\tuntil {}",
                            s.module, s.plan, s.state, s.period_end
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        SubscriptionCommand::Grant {
            tenant,
            module,
            plan,
            periods,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let view = souk
                .billing
                .grant(&tenant, &module, &plan, periods, None)
                .await?;
            print(json, &view, |s| {
                format!(
                    "{} is on {} {} ({}) until {}",
                    tenant.slug, s.module, s.plan, s.state, s.period_end
                )
            })
        }
        SubscriptionCommand::Extend {
            tenant,
            module,
            periods,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let view = souk.billing.extend(&tenant, &module, periods).await?;
            print(json, &view, |s| {
                format!(
                    "{} {} {}: {} ({} period(s) prepaid)",
                    tenant.slug, s.module, s.plan, s.state, s.prepaid_periods
                )
            })
        }
    }
}
