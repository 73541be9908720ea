//! `souk usage`: metered events and a tenant's usage report, through the
//! same [`Usage`](crate::usage::Usage) functions as
//! `POST /v1/tenants/{t}/usage-events` and `GET /v1/tenants/{t}/usage`.

use clap::Subcommand;

use super::{GlobalOptions, open, print};
use crate::usage::UsageEvent;

#[derive(Debug, Subcommand)]
pub(super) enum UsageCommand {
    /// Record one metered event for a tenant's module. An event whose
    /// idempotency key was already counted in its period changes nothing.
    Record {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Module slug.
        #[arg(long)]
        module: String,
        /// Meter key of the module's plan.
        #[arg(long)]
        meter: String,
        /// Units.
        #[arg(long, default_value_t = 1)]
        amount: u64,
        /// Counted once per key per metering period.
        #[arg(long)]
        idempotency_key: String,
    },
    /// Show a tenant's usage: every count limit and meter of its installed
    /// modules, with the plan's limits.
    Show {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Only this module.
        #[arg(long)]
        module: Option<String>,
    },
}

pub(super) async fn run(command: UsageCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    let souk = open(global).await?;
    let usage = souk.usage();
    match command {
        UsageCommand::Record {
            tenant,
            module,
            meter,
            amount,
            idempotency_key,
        } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let event = UsageEvent {
                module,
                meter,
                amount,
                idempotency_key,
            };
            let recorded = usage.record_one(&tenant, event).await?;
            print(global.json, &recorded, |r| {
                let limit = r.limit.map_or_else(String::new, |l| format!(" of {l}"));
                let counted = if r.counted {
                    "counted"
                } else {
                    "already counted, nothing changed"
                };
                format!(
                    "{} {} {}: {}; {}{limit} used from {} to {}",
                    tenant.slug, r.module, r.meter, counted, r.used, r.period_start, r.period_end
                )
            })
        }
        UsageCommand::Show { tenant, module } => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let report = usage.report(&tenant, module.as_deref()).await?;
            print(global.json, &report, |r| {
                let mut lines = vec![format!("{} usage at {}", tenant.slug, r.at)];
                for m in &r.modules {
                    lines.push(format!(
                        "{}\t{}",
                        m.module,
                        m.plan.as_deref().unwrap_or("(no plan)")
                    ));
                    for line in &m.usage {
                        let limit = line
                            .limit
                            .map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
                        let period = match (&line.period_start, &line.period_end) {
                            (Some(start), Some(end)) => format!("\t{start} to {end}"),
                            _ => String::new(),
                        };
                        lines.push(format!(
                            "  {}\t{}\t{} of {limit}{period}",
                            line.key, line.kind, line.used
                        ));
                    }
                }
                lines.join("\n")
            })
        }
    }
}
