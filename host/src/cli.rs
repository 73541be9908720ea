//! The `souk` command. Every subcommand opens the same [`Souk`] the HTTP
//! API uses and calls the same functions, so the CLI and the API cannot
//! drift apart.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use souk_module_registry::Package;

use crate::auth::Principal;
use crate::error::SoukError;
use crate::runtime::RuntimeLimits;
use crate::souk::{Souk, SoukConfig};
use crate::{api, installer};

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
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

fn parse_instant(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
        format!("{text:?} is not an RFC 3339 instant (e.g. 2026-01-01T00:00:00Z): {e}")
    })
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve {
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
    },
    /// Time-driven subscription work.
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// Manage tenants' subscriptions (operator).
    #[command(subcommand)]
    Subscription(SubscriptionCommand),
    /// The plan catalog.
    #[command(subcommand)]
    Plans(PlansCommand),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage modules and installations.
    #[command(subcommand)]
    Module(ModuleCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run or set up a signed module registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Sign a package and upload it to a registry.
    Publish {
        /// The `.souk` package.
        package: PathBuf,
        /// Registry base URL, e.g. `http://127.0.0.1:8090`.
        #[arg(long, env = "SOUK_REGISTRY")]
        registry: String,
        /// The registry's trust root (`trust/1.root.json` of its store), to
        /// verify the registry before publishing to it.
        #[arg(long, env = "SOUK_TRUST_ROOT")]
        trust_root: PathBuf,
        /// The publisher's private key.
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate an ed25519 key pair: `<out>/<name>.key` (mode 0600, never
    /// printed) and `<out>/<name>.pub`.
    Generate {
        /// Directory for the key files.
        #[arg(long, default_value = "keys")]
        out: PathBuf,
        /// File name stem of the key files.
        #[arg(long, default_value = "publisher")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Create a registry store with trust root version 1.
    Init {
        /// The store directory (created).
        #[arg(long)]
        dir: PathBuf,
        /// Private key that signs trust roots.
        #[arg(long)]
        root_key: PathBuf,
        /// Public key that signs snapshots (default: the root key's).
        #[arg(long)]
        snapshot_key: Option<PathBuf>,
        /// A publisher: `<public key file>=<module pattern>[,<pattern>...]`,
        /// where a pattern is `*`, `acme-*` or a module slug. Repeatable.
        #[arg(long = "grant")]
        grants: Vec<String>,
    },
    /// Issue the next trust root: rotate the root key, grant publishers,
    /// revoke keys. Signed by the current and the new root key, so hosts
    /// follow from the root they pinned.
    Rotate {
        /// The store directory.
        #[arg(long)]
        dir: PathBuf,
        /// The current root's private key.
        #[arg(long)]
        root_key: PathBuf,
        /// The new root private key (omit to keep the current one).
        #[arg(long)]
        new_root_key: Option<PathBuf>,
        /// Grant a publisher: `<public key file>=<pattern>[,<pattern>...]`. Repeatable.
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// Revoke a key id (`ed25519:...`). Repeatable.
        #[arg(long = "revoke")]
        revoke: Vec<String>,
    },
    /// Serve a registry store over HTTP (its own process).
    Serve {
        /// The store directory.
        #[arg(long)]
        dir: PathBuf,
        /// Private key that signs snapshots (listed in the trust root).
        #[arg(long)]
        snapshot_key: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Publishes that may receive or check a package at once; more are
        /// answered 503 with Retry-After.
        #[arg(long, env = "SOUK_REGISTRY_MAX_UPLOADS", default_value_t = souk_module_registry::http::DEFAULT_MAX_UPLOADS)]
        max_uploads: usize,
    },
    /// Yank a version: not chosen for new installs; existing installs and
    /// lockfiles keep working.
    Yank(StateArgs),
    /// Deprecate a version, optionally naming a replacement module.
    Deprecate {
        #[command(flatten)]
        state: StateArgs,
        /// The module to use instead.
        #[arg(long)]
        replacement: Option<String>,
    },
    /// Revoke a version (malicious or broken): hosts refuse to run it.
    Revoke(StateArgs),
    /// Verify a registry and make its modules available on this host: the
    /// named ones (`membership` or `membership@1.2.0`), or the newest
    /// installable version of every module.
    Pull {
        /// Registry base URL.
        #[arg(long, env = "SOUK_REGISTRY")]
        registry: String,
        /// The trust root this host pins.
        #[arg(long, env = "SOUK_TRUST_ROOT")]
        trust_root: PathBuf,
        /// Use only what an earlier pull verified and cached.
        #[arg(long)]
        offline: bool,
        /// Modules to pull.
        modules: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MaintenanceCommand {
    /// Run the maintenance step once, now (or at `--manual-clock`): end
    /// trials, renew or mark renewals past due, expire after grace and move
    /// to the free plan, write notifications. Running it twice changes
    /// nothing the second time.
    Run,
}

#[derive(Debug, Subcommand)]
enum PlansCommand {
    /// Check the catalog given with `--plans` (and the plans modules
    /// suggest) against the modules available in the data directory, and
    /// print the plans in effect. Exits non-zero, naming the file, plan and
    /// key, when a plan does not fit its module.
    Check,
}

#[derive(Debug, Subcommand)]
enum SubscriptionCommand {
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

#[derive(Debug, Subcommand)]
enum TenantCommand {
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
enum TokenCommand {
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

/// Which version to change, why, and with whose key.
#[derive(Debug, Args)]
struct StateArgs {
    /// Module slug.
    module: String,
    /// Version.
    version: String,
    /// Why (shown to operators and tenants).
    #[arg(long)]
    reason: String,
    /// Registry base URL.
    #[arg(long, env = "SOUK_REGISTRY")]
    registry: String,
    /// The registry's trust root.
    #[arg(long, env = "SOUK_TRUST_ROOT")]
    trust_root: PathBuf,
    /// Private key of a publisher granted the module.
    #[arg(long)]
    key: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ModuleCommand {
    /// List modules available to install.
    List,
    /// Make a package available to install.
    Add {
        /// The `.souk` package file.
        package: PathBuf,
    },
    /// Build a package from a manifest and a compiled component.
    Pack {
        /// The `module.yaml`.
        #[arg(long)]
        manifest: PathBuf,
        /// The component (`.wasm` built for wasm32-wasip2).
        #[arg(long)]
        component: PathBuf,
        /// Output file (default: `<slug>-<version>.souk` in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Install a module for a tenant.
    Install {
        /// Tenant slug.
        tenant: String,
        /// Module slug.
        module: String,
        /// Version (default: the newest).
        #[arg(long)]
        version: Option<String>,
        /// Restore the data of an archive written by an uninstall.
        #[arg(long)]
        restore: Option<String>,
    },
    /// Upgrade a module for a tenant.
    Upgrade {
        /// Tenant slug.
        tenant: String,
        /// Module slug.
        module: String,
        /// Version (default: the newest).
        #[arg(long)]
        version: Option<String>,
    },
    /// Uninstall a module for a tenant (its data is archived first).
    Uninstall {
        /// Tenant slug.
        tenant: String,
        /// Module slug.
        module: String,
        /// If the module's uninstall hook or a down migration fails, drop
        /// its tables directly instead of refusing (the data is archived
        /// first; the audit log records the forced uninstall and why).
        #[arg(long)]
        force: bool,
    },
    /// List a tenant's installed modules.
    Installed {
        /// Tenant slug.
        tenant: String,
    },
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
            ..RuntimeLimits::default()
        },
        migration_timeout: Duration::from_millis(global.migration_timeout_ms.max(1)),
        plans: global.plans.clone(),
        currency: global.currency.clone(),
        manual_clock: global.manual_clock,
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.global.json;
    if let Command::Module(ModuleCommand::Pack {
        manifest,
        component,
        out,
    }) = &cli.command
    {
        return pack(manifest, component, out.as_ref(), json);
    }
    if let Command::Keys(KeysCommand::Generate { out, name }) = &cli.command {
        let files = crate::registry::generate_key_pair(out, name)?;
        return print(json, &files, |f| {
            format!(
                "generated key {}\n  private key: {} (mode 0600; keep it secret)\n  public key:  {}",
                f.id,
                f.private_key.display(),
                f.public_key.display()
            )
        });
    }
    if let Command::Registry(RegistryCommand::Init {
        dir,
        root_key,
        snapshot_key,
        grants,
    }) = &cli.command
    {
        let root = souk_module_registry::KeyPair::read_private_key(root_key)?;
        let snapshot = match snapshot_key {
            Some(path) => souk_module_registry::PublicKey::read(path)?,
            None => root.public(),
        };
        let grants = grants
            .iter()
            .map(|g| crate::registry::parse_grant(g))
            .collect::<anyhow::Result<Vec<_>>>()?;
        crate::registry::init_store(dir, &root, &snapshot, grants, crate::registry::unix_now())?;
        let value = serde_json::json!({"dir": dir.display().to_string(), "trust_root_version": 1});
        return print(json, &value, |_| {
            format!(
                "created registry store {} with trust root version 1",
                dir.display()
            )
        });
    }
    if let Command::Registry(RegistryCommand::Rotate {
        dir,
        root_key,
        new_root_key,
        grants,
        revoke,
    }) = &cli.command
    {
        let current = souk_module_registry::KeyPair::read_private_key(root_key)?;
        let rotation = crate::registry::Rotation {
            new_root_key: new_root_key
                .as_deref()
                .map(souk_module_registry::KeyPair::read_private_key)
                .transpose()?,
            grant: grants
                .iter()
                .map(|g| crate::registry::parse_grant(g))
                .collect::<anyhow::Result<Vec<_>>>()?,
            revoke: revoke
                .iter()
                .map(|k| souk_module_registry::KeyId::parse(k))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let version =
            crate::registry::rotate(dir, &current, rotation, crate::registry::unix_now())?;
        let value = serde_json::json!({"trust_root_version": version});
        return print(json, &value, |_| {
            format!("issued trust root version {version}")
        });
    }
    if let Command::Registry(RegistryCommand::Serve {
        dir,
        snapshot_key,
        listen,
        max_uploads,
    }) = &cli.command
    {
        init_tracing("text");
        let key = souk_module_registry::KeyPair::read_private_key(snapshot_key)?;
        return crate::registry::serve_store(
            dir,
            key,
            *listen,
            config(&cli.global).limits,
            *max_uploads,
        )
        .await;
    }
    if let Command::Publish {
        package,
        registry,
        trust_root,
        key,
    } = &cli.command
    {
        let key = souk_module_registry::KeyPair::read_private_key(key)?;
        let bytes =
            std::fs::read(package).with_context(|| format!("reading {}", package.display()))?;
        let mut bar = ProgressBar::new("uploading");
        let receipt = crate::registry::publish(registry, trust_root, &key, bytes, |sent, total| {
            bar.draw(sent, total)
        })
        .await?;
        bar.finish();
        return print(json, &receipt, |r| {
            format!(
                "published {} (log head {}, snapshot {})",
                r.module,
                r.head,
                r.snapshot_version
                    .map_or_else(|| "not yet issued".to_owned(), |v| v.to_string())
            )
        });
    }
    if let Command::Registry(
        RegistryCommand::Yank(state)
        | RegistryCommand::Revoke(state)
        | RegistryCommand::Deprecate { state, .. },
    ) = &cli.command
    {
        let change = match &cli.command {
            Command::Registry(RegistryCommand::Yank(_)) => crate::registry::StateChange::Yank,
            Command::Registry(RegistryCommand::Revoke(_)) => crate::registry::StateChange::Revoke,
            Command::Registry(RegistryCommand::Deprecate { replacement, .. }) => {
                crate::registry::StateChange::Deprecate {
                    replacement: replacement
                        .as_deref()
                        .map(souk_module_registry::Slug::parse)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("replacement {e}"))?,
                }
            }
            _ => return unreachable_command(),
        };
        let key = souk_module_registry::KeyPair::read_private_key(&state.key)?;
        let receipt = crate::registry::change_state(
            &state.registry,
            &state.trust_root,
            &key,
            &state.module,
            &state.version,
            &state.reason,
            change,
        )
        .await?;
        return print(json, &receipt, |r| {
            format!("recorded for {} (log head {})", r.module, r.head)
        });
    }
    if let Command::Serve {
        listen,
        log_format,
        maintenance_interval_secs,
    } = &cli.command
    {
        init_tracing(log_format);
        let souk = Souk::open(config(&cli.global)).await?;
        return serve(souk, *listen, *maintenance_interval_secs).await;
    }
    init_tracing("text");
    let souk = Souk::open(config(&cli.global)).await?;
    let operator = Principal::Operator;
    match cli.command {
        Command::Serve { .. }
        | Command::Module(ModuleCommand::Pack { .. })
        | Command::Keys(_)
        | Command::Publish { .. }
        | Command::Registry(
            RegistryCommand::Init { .. }
            | RegistryCommand::Rotate { .. }
            | RegistryCommand::Serve { .. }
            | RegistryCommand::Yank(_)
            | RegistryCommand::Deprecate { .. }
            | RegistryCommand::Revoke(_),
        ) => unreachable_command(),
        Command::Registry(RegistryCommand::Pull {
            registry,
            trust_root,
            offline,
            modules,
        }) => {
            let report = crate::registry::pull(
                &souk.catalog,
                &souk.runtime,
                &souk.config.data_dir,
                &registry,
                &trust_root,
                &modules,
                offline,
            )
            .await?;
            print(json, &report, |r| {
                r.revoked_installs
                    .iter()
                    .map(|x| {
                        format!(
                            "REVOKED: {} {} ({}) is installed for tenants {}; it will not run for them",
                            x.module,
                            x.version,
                            x.reason,
                            x.tenants.join(", ")
                        )
                    })
                    .chain(r.pulled.iter().map(|p| {
                        format!(
                            "verified and available: {} {} ({}, signed by {})",
                            p.module, p.version, p.digest, p.signer
                        )
                    }))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Plans(PlansCommand::Check) => {
            // `Souk::open` has loaded and checked the catalog already.
            let plans = souk.billing.plans();
            let summary: Vec<serde_json::Value> = plans
                .modules
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "module": m.module.as_str(),
                        "source": if m.suggested { "module" } else { "operator" },
                        "plans": m.plans.iter().map(|p| p.slug.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            print(json, &summary, |modules| {
                if modules.is_empty() {
                    return "no module is priced: every module is free to install and fully entitled".to_owned();
                }
                modules
                    .iter()
                    .map(|m| {
                        let plans: Vec<&str> = m["plans"]
                            .as_array()
                            .map(|p| p.iter().filter_map(|p| p.as_str()).collect())
                            .unwrap_or_default();
                        format!(
                            "{}\t{}\t({})",
                            m["module"].as_str().unwrap_or_default(),
                            plans.join(", "),
                            m["source"].as_str().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Maintenance(MaintenanceCommand::Run) => {
            let report = souk.run_maintenance().await?;
            print(json, &report, |r| {
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
        Command::Subscription(SubscriptionCommand::List { tenant }) => {
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
        Command::Subscription(SubscriptionCommand::Grant {
            tenant,
            module,
            plan,
            periods,
        }) => {
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
        Command::Subscription(SubscriptionCommand::Extend {
            tenant,
            module,
            periods,
        }) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let view = souk.billing.extend(&tenant, &module, periods).await?;
            print(json, &view, |s| {
                format!(
                    "{} {} {}: {} ({} period(s) prepaid)",
                    tenant.slug, s.module, s.plan, s.state, s.prepaid_periods
                )
            })
        }
        Command::Tenant(TenantCommand::Create { slug, name }) => {
            let name = name.unwrap_or_else(|| slug.clone());
            let tenant = souk.tenancy.create(&slug, &name).await?;
            print(json, &tenant, |t| {
                format!("created tenant {} ({})", t.slug, t.name)
            })
        }
        Command::Tenant(TenantCommand::List) => {
            let tenants = souk.tenancy.list().await?;
            print(json, &tenants, |ts| {
                ts.iter()
                    .map(|t| format!("{}\t{}\t{}", t.slug, t.name, t.created_at))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Tenant(TenantCommand::Token(TokenCommand::Create { tenant, name })) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let (info, token) = souk.auth.create_token(&tenant, &name).await?;
            let value = serde_json::json!({"id": info.id, "name": info.name, "token": token});
            print(json, &value, |_| token.clone())
        }
        Command::Tenant(TenantCommand::Token(TokenCommand::List { tenant })) => {
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
        Command::Tenant(TenantCommand::Token(TokenCommand::Revoke { tenant, id })) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let info = souk.auth.revoke_token(&tenant, &id).await?;
            print(json, &info, |t| {
                format!("revoked token {} ({})", t.id, t.name)
            })
        }
        Command::Module(ModuleCommand::List) => {
            let modules = souk.catalog.list().await?;
            print(json, &modules, |ms| {
                ms.iter()
                    .map(|m| {
                        let versions: Vec<&str> =
                            m.versions.iter().map(|v| v.version.as_str()).collect();
                        format!(
                            "{}\t{}\t{}\t{}",
                            m.slug,
                            m.latest,
                            m.name,
                            versions.join(", ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Module(ModuleCommand::Add { package }) => {
            let bytes = std::fs::read(&package)
                .with_context(|| format!("reading {}", package.display()))?;
            let version = souk.catalog.add_package(&souk.runtime, &bytes).await?;
            print(json, &version, |v| {
                format!("{} {} available ({})", v.slug, v.version, v.digest)
            })
        }
        Command::Module(ModuleCommand::Install {
            tenant,
            module,
            version,
            restore,
        }) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let request = installer::InstallRequest {
                module,
                version,
                restore_archive: restore,
            };
            let report = souk
                .installer()
                .install(&operator, &tenant, &request)
                .await?;
            print(json, &report, |r| {
                format!(
                    "installed {} {} for {} (migrations: {})",
                    r.installation.module,
                    r.installation.version,
                    tenant.slug,
                    r.applied_migrations.join(", ")
                )
            })
        }
        Command::Module(ModuleCommand::Upgrade {
            tenant,
            module,
            version,
        }) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let report = souk
                .installer()
                .upgrade(&operator, &tenant, &module, version.as_deref())
                .await?;
            print(json, &report, |r| {
                format!(
                    "upgraded {} to {} for {} (new migrations: {})",
                    r.installation.module,
                    r.installation.version,
                    tenant.slug,
                    if r.applied_migrations.is_empty() {
                        "none".into()
                    } else {
                        r.applied_migrations.join(", ")
                    }
                )
            })
        }
        Command::Module(ModuleCommand::Uninstall {
            tenant,
            module,
            force,
        }) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let removal = if force {
                installer::Removal::Forced { confirmation: None }
            } else {
                installer::Removal::Normal
            };
            let report = souk
                .installer()
                .uninstall(&operator, &tenant, &module, &removal)
                .await?;
            print(json, &report, |r| {
                let forced = match &r.forced {
                    Some(reason) => format!(" (forced: {reason})"),
                    None => String::new(),
                };
                format!(
                    "uninstalled {} {} from {}{forced}; data archived as {}",
                    r.module, r.version, tenant.slug, r.archive.id
                )
            })
        }
        Command::Module(ModuleCommand::Installed { tenant }) => {
            let tenant = souk.tenancy.by_slug(&tenant).await?;
            let list = souk.installer().list(&tenant).await?;
            print(json, &list, |l| {
                l.iter()
                    .map(|i| format!("{}\t{}\t{}", i.module, i.version, i.digest))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

/// A one-line progress bar on standard error.
struct ProgressBar {
    label: &'static str,
    drawn: bool,
}

impl ProgressBar {
    fn new(label: &'static str) -> Self {
        ProgressBar {
            label,
            drawn: false,
        }
    }

    fn draw(&mut self, done: u64, total: u64) {
        const WIDTH: u64 = 30;
        let total = total.max(1);
        let filled = (done.min(total) * WIDTH / total) as usize;
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            ".".repeat(WIDTH as usize - filled)
        );
        eprint!(
            "\r{} [{bar}] {:>3}% {:.1}/{:.1} KiB",
            self.label,
            done.min(total) * 100 / total,
            done as f64 / 1024.0,
            total as f64 / 1024.0
        );
        self.drawn = true;
    }

    fn finish(&mut self) {
        if self.drawn {
            eprintln!();
        }
    }
}

fn unreachable_command() -> anyhow::Result<()> {
    Err(anyhow::anyhow!("command handled earlier"))
}

fn pack(
    manifest: &PathBuf,
    component: &PathBuf,
    out: Option<&PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let manifest_text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let component_bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let bytes = Package::build(&manifest_text, &component_bytes)?;
    let package = Package::read(&bytes, Default::default())?;
    let out = out.cloned().unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}-{}.souk",
            package.manifest.slug, package.manifest.version
        ))
    });
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let value = serde_json::json!({
        "path": out.display().to_string(),
        "slug": package.manifest.slug.to_string(),
        "version": package.manifest.version.to_string(),
        "digest": package.digest.to_string(),
    });
    print(json, &value, |_| {
        format!("packed {} ({})", out.display(), package.digest)
    })
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

async fn serve(
    souk: Arc<Souk>,
    listen: SocketAddr,
    maintenance_interval_secs: u64,
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
    println!("souk: listening on http://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, data_dir = %souk.config.data_dir.display(), "serving");
    let registry = crate::registry::embedded(&souk.catalog, &souk.config.data_dir).await?;
    if maintenance_interval_secs > 0 {
        tokio::spawn(maintenance_loop(
            souk.clone(),
            Duration::from_secs(maintenance_interval_secs),
        ));
    }
    let app = api::router(souk).merge(souk_module_registry::http::router(registry));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
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
