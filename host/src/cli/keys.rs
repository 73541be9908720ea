//! `souk keys`: publisher signing keys.

use std::path::PathBuf;

use clap::Subcommand;

use super::{GlobalOptions, print};

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
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

/// Works on files only: no host state is opened.
pub(super) fn run(command: KeysCommand, global: &GlobalOptions) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate { out, name } => {
            let files = crate::registry::generate_key_pair(&out, &name)?;
            print(global.json, &files, |f| {
                format!(
                    "generated key {}\n  private key: {} (mode 0600; keep it secret)\n  public key:  {}",
                    f.id,
                    f.private_key.display(),
                    f.public_key.display()
                )
            })
        }
    }
}
