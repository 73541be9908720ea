//! `souk plans`: the plan catalog in effect. `list` is the twin of
//! `GET /v1/plans`; both print [`listing::listing`], and `check` its
//! [`listing::summary`].

use clap::Subcommand;

use super::{GlobalOptions, open, print};
use crate::billing::listing;

#[derive(Debug, Subcommand)]
pub(super) enum PlansCommand {
    /// Check the catalog given with `--plans` (and the plans modules
    /// suggest) against the modules available in the data directory, and
    /// print the plans in effect. Exits non-zero, naming the file, plan and
    /// key, when a plan does not fit its module.
    Check,
    /// List the plans in effect with their prices, features, limits and
    /// meters, and the bundles (what `GET /v1/plans` answers).
    List,
}

/// What `check` and `list` print when no module is priced.
const NOTHING_PRICED: &str =
    "no module is priced: every module is free to install and fully entitled";

pub(super) async fn run(command: PlansCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    // `Souk::open` loads and checks the catalog.
    let souk = open(global).await?;
    let plans = souk.billing.plans();
    match command {
        PlansCommand::Check => print(global.json, &listing::summary(&plans), |modules| {
            if modules.is_empty() {
                return NOTHING_PRICED.to_owned();
            }
            modules
                .iter()
                .map(|m| format!("{}\t{}\t({})", m.module, m.plans.join(", "), m.source))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        PlansCommand::List => print(global.json, &listing::listing(&plans), |listing| {
            if listing.modules.is_empty() && listing.bundles.is_empty() {
                return NOTHING_PRICED.to_owned();
            }
            let mut lines = Vec::new();
            for m in &listing.modules {
                lines.push(format!("{}\t({})", m.module, m.source));
                for p in &m.plans {
                    let price = if p.free {
                        "free".to_owned()
                    } else {
                        p.prices
                            .iter()
                            .map(|(currency, minor)| format!("{currency} {minor}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    lines.push(format!("  {}\t{}\t{price}", p.slug, p.name));
                }
            }
            for b in &listing.bundles {
                let plans: Vec<String> = b.plans.iter().map(|(m, p)| format!("{m} {p}")).collect();
                lines.push(format!(
                    "bundle {}\t{}\t{}\t{} bps off",
                    b.slug,
                    b.name,
                    plans.join(", "),
                    b.discount_bps
                ));
            }
            lines.join("\n")
        }),
    }
}
