//! `souk maintenance`: the time-driven subscription step, run once (the
//! twin of `POST /v1/maintenance/run`).

use clap::Subcommand;

use super::{GlobalOptions, open, print};

#[derive(Debug, Subcommand)]
pub(super) enum MaintenanceCommand {
    /// Run the maintenance step once, now (or at `--manual-clock`): end
    /// trials, renew or mark renewals past due, expire after grace and move
    /// to the free plan, write notifications. Running it twice changes
    /// nothing the second time.
    Run,
}

pub(super) async fn run(command: MaintenanceCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    match command {
        MaintenanceCommand::Run => {
            let souk = open(global).await?;
            let report = souk.run_maintenance().await?;
            print(global.json, &report, |r| {
                let mut text = format!(
                    "maintenance at {}: {} subscription(s) examined, {} change(s), {} notification(s), {} metering period(s) closed",
                    r.at,
                    r.examined,
                    r.changes.len(),
                    r.notifications,
                    r.periods_closed
                );
                for change in &r.changes {
                    text.push_str("\n  ");
                    text.push_str(change);
                }
                if !r.failed.is_empty() {
                    text.push_str(&format!(
                        "\n{} could not be maintained (retried by the next run; the others were):",
                        r.failed.len()
                    ));
                    for f in &r.failed {
                        text.push_str(&format!(
                            "\n  {}/{} {}: {}",
                            f.tenant, f.module, f.step, f.error
                        ));
                    }
                }
                text
            })
        }
    }
}
