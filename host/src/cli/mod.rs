//! The `souk` command. Every subcommand that works on a host's state opens
//! the same [`Souk`] the HTTP API uses and calls the same service function
//! as its API twin, so the CLI and the API cannot drift apart.
//!
//! One module per command group, each with its clap arguments and a `run`;
//! this module holds the top-level parser, the global options, and the one
//! `match` that hands each group its command.

mod events;
mod jobs;
mod keys;
mod mail;
mod maintenance;
mod module;
mod module_origin;
mod payment;
mod payments;
mod plans;
mod publish;
mod registry;
mod retention;
mod serve;
mod sso;
mod subscription;
mod tenant;
mod usage;
mod user;
mod webhook;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::runtime::RuntimeLimits;
use crate::souk::{Souk, SoukConfig};

/// Souk: a multi-tenant host for business modules that run as sandboxed
/// WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "souk", version, about)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalOptions {
    /// Where all state lives (control plane, tenant databases, packages,
    /// compile cache, archives, operator token).
    #[arg(long, global = true, env = "SOUK_DATA_DIR", default_value = ".souk")]
    data_dir: PathBuf,
    /// Directory of `.souk` packages made available at start (the bundled
    /// first-party modules). Default: `souk-modules` next to the directory
    /// holding the `souk` binary (for `target/debug/souk`, `target/souk-modules`).
    #[arg(long, global = true, env = "SOUK_MODULES_DIR")]
    modules_dir: Option<PathBuf>,
    /// Where module pages are served (`--module-listen`, `--module-origin`).
    #[command(flatten)]
    module_pages: module_origin::ModuleOriginArgs,
    /// Wall-clock budget of one module call, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "SOUK_CALL_TIMEOUT_MS",
        default_value_t = 1000
    )]
    call_timeout_ms: u64,
    /// Wall-clock budget of one migration's SQL (its up or down text), in
    /// milliseconds; SQLite interrupts a statement still running at it.
    #[arg(
        long,
        global = true,
        env = "SOUK_MIGRATION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    migration_timeout_ms: u64,
    /// Linear-memory cap per module instance, in MiB.
    #[arg(long, global = true, env = "SOUK_MEMORY_MIB", default_value_t = 64)]
    memory_mib: usize,
    /// The most linear memory per instance a plan may buy
    /// (`runtime.memory_mib`), in MiB; sizes the pooling allocator's memory
    /// slots. Default: --memory-mib (plans cannot raise memory).
    #[arg(long, global = true, env = "SOUK_MAX_MEMORY_MIB")]
    max_memory_mib: Option<usize>,
    /// The longest request deadline a plan may buy
    /// (`runtime.call_timeout_ms`), in milliseconds.
    #[arg(
        long,
        global = true,
        env = "SOUK_MAX_CALL_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    max_call_timeout_ms: u64,
    /// Instances that may run at once (sizes the pooling allocator).
    #[arg(long, global = true, env = "SOUK_MAX_INSTANCES", default_value_t = 128)]
    max_instances: u32,
    /// Module calls one tenant may have running at once; more are answered
    /// 429 with `Retry-After` and never reach the module. At most half of
    /// the instances that requests may use.
    #[arg(
        long,
        global = true,
        env = "SOUK_TENANT_CONCURRENCY",
        default_value_t = 8
    )]
    tenant_concurrency: u32,
    /// Tenant databases kept open at once (each holds up to four SQLite
    /// connections); past it the least recently used one is closed, and
    /// opened again on its tenant's next request.
    #[arg(
        long,
        global = true,
        env = "SOUK_OPEN_TENANTS",
        default_value_t = crate::tenancy::DEFAULT_OPEN_TENANTS
    )]
    open_tenants: usize,
    /// Largest file a module may store through the `files` interface, in
    /// bytes (a larger put is refused before it is hashed or written).
    #[arg(
        long,
        global = true,
        env = "SOUK_MAX_FILE_BYTES",
        default_value_t = crate::capabilities::files::DEFAULT_MAX_FILE_BYTES
    )]
    max_file_bytes: u64,
    #[command(flatten)]
    mail: mail::MailArgs,
    /// The operator's plan catalog: a YAML file, or a directory of YAML
    /// files merged in name order. Without one no module is priced: every
    /// module is free to install and fully entitled.
    #[arg(long, global = true, env = "SOUK_PLANS")]
    plans: Option<PathBuf>,
    /// Currency subscriptions are priced in unless a tenant asks for
    /// another (ISO 4217).
    #[arg(long, global = true, env = "SOUK_CURRENCY", default_value = "NPR")]
    currency: String,
    /// Run on a manual clock starting at this RFC 3339 instant instead of
    /// the system clock, for rehearsing billing over months (`serve`: the
    /// operator moves it with `POST /v1/clock`; `maintenance run`: the
    /// instant the step runs at).
    #[arg(long, global = true, env = "SOUK_MANUAL_CLOCK", value_parser = parse_instant)]
    manual_clock: Option<time::OffsetDateTime>,
    /// Most usage events one transaction of a tenant database takes
    /// (group commit of `POST /usage-events`); 1 writes every request in a
    /// transaction of its own.
    #[arg(
        long,
        global = true,
        env = "SOUK_USAGE_GROUP_MAX_EVENTS",
        default_value_t = crate::usage::group::DEFAULT_GROUP_MAX_EVENTS
    )]
    usage_group_max_events: usize,
    /// Users, sessions, sign-in throttling, public routes (docs/people.md).
    #[command(flatten)]
    people: user::PeopleOptions,
    /// Largest payload of one event a module emits, in bytes.
    #[arg(
        long,
        global = true,
        env = "SOUK_EVENT_MAX_PAYLOAD_BYTES",
        default_value_t = crate::capabilities::events::DEFAULT_MAX_PAYLOAD_BYTES
    )]
    event_max_payload_bytes: usize,
    /// Most headers one module answer may have (more: 502).
    #[arg(
        long,
        global = true,
        env = "SOUK_MODULE_MAX_HEADERS",
        default_value_t = crate::runtime::answer::DEFAULT_MAX_HEADERS
    )]
    module_max_headers: usize,
    /// Most bytes of header names and values one module answer may have
    /// (more: 502).
    #[arg(
        long,
        global = true,
        env = "SOUK_MODULE_MAX_HEADER_BYTES",
        default_value_t = crate::runtime::answer::DEFAULT_MAX_HEADER_BYTES
    )]
    module_max_header_bytes: usize,
    #[command(flatten)]
    events: events::EventArgs,
    /// Single sign-on (docs/sso.md).
    #[command(flatten)]
    sso: sso::SsoOptions,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    jobs: jobs::JobOptions,
    #[command(flatten)]
    retention: retention::RetentionOptions,
    /// Invoices and payment providers (docs/payments.md).
    #[command(flatten)]
    payments: payments::PaymentsOptions,
}

fn parse_instant(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
        format!("{text:?} is not an RFC 3339 instant (e.g. 2026-01-01T00:00:00Z): {e}")
    })
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve(serve::ServeArgs),
    /// Time-driven subscription work.
    #[command(subcommand)]
    Maintenance(maintenance::MaintenanceCommand),
    /// Manage tenants' subscriptions (operator).
    #[command(subcommand)]
    Subscription(subscription::SubscriptionCommand),
    /// The plan catalog.
    #[command(subcommand)]
    Plans(plans::PlansCommand),
    /// Metered usage: record events, show a tenant's usage.
    #[command(subcommand)]
    Usage(usage::UsageCommand),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Manage modules and installations.
    #[command(subcommand)]
    Module(module::ModuleCommand),
    /// Manage a tenant's users (as the operator).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage a tenant's single sign-on provider (as the operator).
    #[command(subcommand)]
    Sso(sso::SsoCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Run or set up a signed module registry.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Sign a package and upload it to a registry.
    Publish(publish::PublishArgs),
    /// A tenant's webhook endpoints and their delivery logs.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Invoices, and bank transfers recorded by the operator.
    #[command(subcommand)]
    Payment(payment::PaymentCommand),
}

/// Runs the CLI; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("souk: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("souk: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_modules_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join("souk-modules"))
}

fn config(global: &GlobalOptions) -> SoukConfig {
    SoukConfig {
        data_dir: global.data_dir.clone(),
        modules_dir: global.modules_dir.clone().or_else(default_modules_dir),
        limits: RuntimeLimits {
            call_timeout: Duration::from_millis(global.call_timeout_ms.max(1)),
            memory_bytes: global.memory_mib.max(1) * 1024 * 1024,
            max_instances: global.max_instances.max(1),
            tenant_concurrency: global.tenant_concurrency.max(1),
            max_memory_bytes: global
                .max_memory_mib
                .unwrap_or(global.memory_mib)
                .max(global.memory_mib)
                .max(1)
                * 1024
                * 1024,
            max_call_timeout: Duration::from_millis(global.max_call_timeout_ms.max(1)),
            max_event_payload_bytes: global.event_max_payload_bytes.max(2),
            max_response_headers: global.module_max_headers.max(1),
            max_response_header_bytes: global.module_max_header_bytes.max(64),
            background_write_budget: global.jobs.background_write_budget(),
            ..RuntimeLimits::default()
        },
        migration_timeout: Duration::from_millis(global.migration_timeout_ms.max(1)),
        plans: global.plans.clone(),
        currency: global.currency.clone(),
        manual_clock: global.manual_clock,
        usage_groups: crate::usage::group::GroupLimits {
            max_events: global.usage_group_max_events.max(1),
        },
        open_tenants: global.open_tenants.max(1),
        jobs: global.jobs.config(),
        retention: global.retention.config(),
        people: global.people.config(),
        sso: global.sso.config(),
        max_file_bytes: global.max_file_bytes.max(1),
        events: global.events.config(),
        mail: global.mail.config(),
        payments: global.payments.config(),
    }
}

fn print<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", text(value))?;
    }
    Ok(())
}

/// Hands the command to its group. Each group opens the host's state
/// ([`open`]) only for the commands that work on it.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Serve(args) => serve::run(args, global).await,
        Command::Maintenance(command) => maintenance::run(command, global).await,
        Command::Subscription(command) => subscription::run(command, global).await,
        Command::Plans(command) => plans::run(command, global).await,
        Command::Usage(command) => usage::run(command, global).await,
        Command::Tenant(command) => tenant::run(command, global).await,
        Command::Module(command) => module::run(command, global).await,
        Command::User(command) => user::run(command, global).await,
        Command::Sso(command) => sso::run(command, global).await,
        Command::Payment(command) => payment::run(command, global).await,
        Command::Keys(command) => keys::run(command, global),
        Command::Registry(command) => registry::run(command, global).await,
        Command::Publish(args) => publish::run(args, global).await,
        Command::Webhook(command) => webhook::run(command, global).await,
    }
}

/// Opens the host's state for a command that works on it, with text logs
/// on standard error.
async fn open(global: &GlobalOptions) -> anyhow::Result<Arc<Souk>> {
    init_tracing("text");
    Souk::open(config(global)).await
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
