//! `souk module`: packages (pack, add), the versions available, and a
//! tenant's installations (the twins of `/v1/modules` and
//! `/v1/tenants/{t}/modules`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use souk_module_registry::Package;

use super::{GlobalOptions, open, print};
use crate::auth::Principal;
use crate::installer;

#[derive(Debug, Subcommand)]
pub(super) enum ModuleCommand {
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

pub(super) async fn run(command: ModuleCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    let json = global.json;
    let operator = Principal::Operator;
    match command {
        ModuleCommand::Pack {
            manifest,
            component,
            out,
        } => pack(&manifest, &component, out.as_ref(), json),
        ModuleCommand::List => {
            let souk = open(global).await?;
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
        ModuleCommand::Add { package } => {
            let souk = open(global).await?;
            let bytes = std::fs::read(&package)
                .with_context(|| format!("reading {}", package.display()))?;
            let version = souk.add_package(&bytes).await?;
            print(json, &version, |v| {
                format!("{} {} available ({})", v.slug, v.version, v.digest)
            })
        }
        ModuleCommand::Install {
            tenant,
            module,
            version,
            restore,
        } => {
            let souk = open(global).await?;
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
        ModuleCommand::Upgrade {
            tenant,
            module,
            version,
        } => {
            let souk = open(global).await?;
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
        ModuleCommand::Uninstall {
            tenant,
            module,
            force,
        } => {
            let souk = open(global).await?;
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
        ModuleCommand::Installed { tenant } => {
            let souk = open(global).await?;
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
