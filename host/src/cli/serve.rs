//! `souk serve`: the HTTP API, with the maintenance step on a schedule.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::module_origin::ModulePages;
use super::{GlobalOptions, config, init_tracing};
use crate::api;
use crate::error::SoukError;
use crate::souk::Souk;

// No doc comment: clap would take it as the command's about, which
// `Command::Serve` already gives.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "SOUK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "SOUK_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Seconds between runs of the subscription maintenance step (trial
    /// ends, renewals, grace, expiry, notifications); 0 turns the
    /// schedule off (run `souk maintenance run` from cron instead).
    #[arg(long, env = "SOUK_MAINTENANCE_INTERVAL_SECS", default_value_t = 60)]
    maintenance_interval_secs: u64,
}

/// Serves until SIGINT or SIGTERM; logs in the format asked for.
pub(super) async fn run(args: ServeArgs, global: &GlobalOptions) -> anyhow::Result<()> {
    init_tracing(&args.log_format);
    let souk = Souk::open(config(global)).await?;
    serve(souk, args.listen, args.maintenance_interval_secs, global).await
}

async fn serve(
    souk: Arc<Souk>,
    listen: SocketAddr,
    maintenance_interval_secs: u64,
    global: &GlobalOptions,
) -> anyhow::Result<()> {
    if souk
        .auth
        .ensure_operator_token()
        .map_err(|e: SoukError| anyhow::anyhow!(e))?
    {
        println!(
            "souk: created the operator token in {} (mode 0600); keep it secret",
            souk.auth.operator_token_path().display()
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let pages = ModulePages::start(&global.module_pages, addr, souk.clone()).await?;
    souk.public_origin.set(&pages.public_origin(addr));
    println!("souk: listening on http://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, data_dir = %souk.config.data_dir.display(), "serving");
    let registry = crate::registry::embedded(&souk.catalog, &souk.config.data_dir).await?;
    // Blobs of calls a stopped process never settled (see docs/files.md).
    tokio::spawn({
        let souk = souk.clone();
        async move {
            let removed = souk.sweep_files().await;
            if removed > 0 {
                tracing::info!(removed, "file blobs no row names were removed");
            }
        }
    });
    if maintenance_interval_secs > 0 {
        tokio::spawn(maintenance_loop(
            souk.clone(),
            Duration::from_secs(maintenance_interval_secs),
        ));
    }
    let (stop_events, stopped) = tokio::sync::watch::channel(false);
    let event_worker = tokio::spawn(super::events::run_worker(souk.clone(), stopped));
    let (stop_mail, mail_stopped) = tokio::sync::watch::channel(false);
    let mail = souk.start_mail_delivery(async move {
        let mut stopped = mail_stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    if mail.is_none() {
        println!("souk: {}", crate::mail::NO_RELAY_NOTE);
    }
    let (stop_jobs, jobs_shutdown) = tokio::sync::watch::channel(false);
    let job_tasks = [
        tokio::spawn(crate::jobs::runner::run(
            souk.clone(),
            jobs_shutdown.clone(),
        )),
        tokio::spawn(crate::jobs::schedules::run(souk.clone(), jobs_shutdown)),
    ];
    let closing = souk.clone();
    let app =
        pages.guard_api(api::router(souk).merge(souk_module_registry::http::router(registry)));
    let served = axum::serve(
        listener,
        // The peer address reaches handlers (sign-in throttling, public
        // routes' rate) as `ConnectInfo<SocketAddr>`.
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Job event streams end, so they do not hold the shutdown up.
        closing.jobs().board.close();
    })
    .await;
    // Running jobs are dropped (their transactions roll back) and run
    // again after the next start.
    let _ = stop_jobs.send(true);
    for task in job_tasks {
        let _ = task.await;
    }
    let _ = stop_events.send(true);
    let _ = event_worker.await;
    // The delivery finishes the message it is sending (bounded by the
    // send timeout), then stops.
    let _ = stop_mail.send(true);
    if let Some(mail) = mail {
        let _ = tokio::time::timeout(Duration::from_secs(70), mail).await;
    }
    pages.stop().await;
    served?;
    Ok(())
}

/// Runs the maintenance step every `every`, logging what it did; a failed
/// run is logged and retried at the next tick (the step is idempotent).
async fn maintenance_loop(souk: Arc<Souk>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match souk.run_maintenance().await {
            Ok(report) if !report.changes.is_empty() || report.notifications > 0 => {
                tracing::info!(
                    examined = report.examined,
                    changes = ?report.changes,
                    notifications = report.notifications,
                    "maintenance"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "maintenance run failed; retrying next tick"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
