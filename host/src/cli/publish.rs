//! `souk publish`: sign a package and upload it to a registry.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::{GlobalOptions, print};

// No doc comment: clap would take it as the command's about, which
// `Command::Publish` already gives.
#[derive(Debug, Args)]
pub(super) struct PublishArgs {
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
}

/// Talks to the registry only: no host state is opened.
pub(super) async fn run(args: PublishArgs, global: &GlobalOptions) -> anyhow::Result<()> {
    let key = souk_module_registry::KeyPair::read_private_key(&args.key)?;
    let bytes = std::fs::read(&args.package)
        .with_context(|| format!("reading {}", args.package.display()))?;
    let mut bar = ProgressBar::new("uploading");
    let receipt = crate::registry::publish(
        &args.registry,
        &args.trust_root,
        &key,
        bytes,
        |sent, total| bar.draw(sent, total),
    )
    .await?;
    bar.finish();
    print(global.json, &receipt, |r| {
        format!(
            "published {} (log head {}, snapshot {})",
            r.module,
            r.head,
            r.snapshot_version
                .map_or_else(|| "not yet issued".to_owned(), |v| v.to_string())
        )
    })
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
