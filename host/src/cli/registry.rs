//! `souk registry`: set up, rotate and serve a signed module registry,
//! change a version's state in it, and pull from one onto this host.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{GlobalOptions, config, init_tracing, open, print};
use crate::registry::StateChange;

#[derive(Debug, Subcommand)]
pub(super) enum RegistryCommand {
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

/// Which version to change, why, and with whose key.
#[derive(Debug, Args)]
pub(super) struct StateArgs {
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

/// Only `pull` opens this host's state; the others work on a registry
/// store or talk to a registry.
pub(super) async fn run(command: RegistryCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    let json = global.json;
    match command {
        RegistryCommand::Init {
            dir,
            root_key,
            snapshot_key,
            grants,
        } => {
            let root = souk_module_registry::KeyPair::read_private_key(&root_key)?;
            let snapshot = match snapshot_key {
                Some(path) => souk_module_registry::PublicKey::read(&path)?,
                None => root.public(),
            };
            let grants = grants
                .iter()
                .map(|g| crate::registry::parse_grant(g))
                .collect::<anyhow::Result<Vec<_>>>()?;
            crate::registry::init_store(
                &dir,
                &root,
                &snapshot,
                grants,
                crate::registry::unix_now(),
            )?;
            let value =
                serde_json::json!({"dir": dir.display().to_string(), "trust_root_version": 1});
            print(json, &value, |_| {
                format!(
                    "created registry store {} with trust root version 1",
                    dir.display()
                )
            })
        }
        RegistryCommand::Rotate {
            dir,
            root_key,
            new_root_key,
            grants,
            revoke,
        } => {
            let current = souk_module_registry::KeyPair::read_private_key(&root_key)?;
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
                crate::registry::rotate(&dir, &current, rotation, crate::registry::unix_now())?;
            let value = serde_json::json!({"trust_root_version": version});
            print(json, &value, |_| {
                format!("issued trust root version {version}")
            })
        }
        RegistryCommand::Serve {
            dir,
            snapshot_key,
            listen,
            max_uploads,
        } => {
            init_tracing("text");
            let key = souk_module_registry::KeyPair::read_private_key(&snapshot_key)?;
            crate::registry::serve_store(&dir, key, listen, config(global).limits, max_uploads)
                .await
        }
        RegistryCommand::Yank(state) => change_state(state, StateChange::Yank, json).await,
        RegistryCommand::Revoke(state) => change_state(state, StateChange::Revoke, json).await,
        RegistryCommand::Deprecate { state, replacement } => {
            let replacement = replacement
                .as_deref()
                .map(souk_module_registry::Slug::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("replacement {e}"))?;
            change_state(state, StateChange::Deprecate { replacement }, json).await
        }
        RegistryCommand::Pull {
            registry,
            trust_root,
            offline,
            modules,
        } => {
            let souk = open(global).await?;
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
    }
}

/// Yank, deprecate or revoke `state.version` of `state.module` in the
/// registry, signed with the publisher's key.
async fn change_state(state: StateArgs, change: StateChange, json: bool) -> anyhow::Result<()> {
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
    print(json, &receipt, |r| {
        format!("recorded for {} (log head {})", r.module, r.head)
    })
}
