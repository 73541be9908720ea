//! `souk serve`'s module origin (docs/module-pages.md): where module pages
//! are served, and the second listener that serves them.

use std::io::Write;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use clap::Args;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api;
use crate::souk::Souk;

/// Where module pages are served (flags of every command; they matter to
/// `serve`).
#[derive(Debug, Args)]
pub(super) struct ModuleOriginArgs {
    /// Where module pages (`/t/{tenant}/m/{module}/...`) are served on an
    /// origin of their own: `auto` (the API's address, next port up, or a
    /// free port when that one is taken or `--listen` picks one), an
    /// address, or `off` (one origin: module answers are still sandboxed).
    #[arg(
        long,
        global = true,
        env = "SOUK_MODULE_LISTEN",
        default_value = "auto"
    )]
    module_listen: ModuleListen,
    /// The module origin as browsers reach it, `scheme://host[:port]`
    /// (e.g. `https://m.example.com` behind a proxy). Default: the module
    /// listener's own `http://` address. When known, a browser navigating
    /// to a module path on the API origin is redirected there.
    #[arg(long, global = true, env = "SOUK_MODULE_ORIGIN")]
    module_origin: Option<String>,
}

/// The value of `--module-listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ModuleListen {
    /// The API listener's address with the next port (a free port when the
    /// API's port is 0 or the next one is taken).
    Auto,
    /// No second listener.
    Off,
    /// This address.
    At(SocketAddr),
}

impl FromStr for ModuleListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(ModuleListen::Auto),
            "off" => Ok(ModuleListen::Off),
            other => other.parse().map(ModuleListen::At).map_err(|_| {
                format!("{other:?} is not `auto`, `off` or an address such as 127.0.0.1:8081")
            }),
        }
    }
}

impl ModuleListen {
    /// The address to listen on, for an API listening on `api`.
    fn address(self, api: SocketAddr) -> Option<SocketAddr> {
        match self {
            ModuleListen::Off => None,
            ModuleListen::At(addr) => Some(addr),
            ModuleListen::Auto => {
                let port = if api.port() == 0 {
                    0
                } else {
                    api.port().checked_add(1)?
                };
                Some(SocketAddr::new(api.ip(), port))
            }
        }
    }
}

/// The module origin while `souk serve` runs.
pub(super) struct ModulePages {
    origin: Option<String>,
    server: Option<(watch::Sender<bool>, JoinHandle<std::io::Result<()>>)>,
}

impl ModulePages {
    /// Binds the module listener (unless off), starts serving module
    /// pages on it, and prints where (`souk: module pages on ...`).
    ///
    /// # Errors
    /// An address that cannot be bound, or a `--module-origin` that is not
    /// an origin.
    pub(super) async fn start(
        args: &ModuleOriginArgs,
        api: SocketAddr,
        souk: Arc<Souk>,
    ) -> anyhow::Result<ModulePages> {
        let configured = match &args.module_origin {
            Some(text) => Some(
                souk_module_registry::manifest::normalize_origin(text).with_context(|| {
                    format!("--module-origin {text:?} is not an origin: write scheme://host[:port]")
                })?,
            ),
            None => None,
        };
        let Some(listen) = args.module_listen.address(api) else {
            if let Some(origin) = &configured {
                println!("souk: module pages on {origin} (served elsewhere)");
            } else {
                println!("souk: module pages on the API origin (sandboxed; no module origin)");
            }
            return Ok(ModulePages {
                origin: configured,
                server: None,
            });
        };
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => listener,
            // `auto` asked for the next port only as a convenience: taken,
            // any free port of the same address does.
            Err(e) if args.module_listen == ModuleListen::Auto && listen.port() != 0 => {
                tracing::warn!(%listen, error = %e, "the next port is taken; module pages get a free port");
                tokio::net::TcpListener::bind(SocketAddr::new(listen.ip(), 0))
                    .await
                    .with_context(|| format!("cannot listen for module pages on {}", listen.ip()))?
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot listen for module pages on {listen}"));
            }
        };
        let addr = listener.local_addr()?;
        let origin = configured.unwrap_or_else(|| format!("http://{addr}"));
        println!("souk: module pages on {origin}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, %origin, "serving module pages");
        let (stop, mut stopped) = watch::channel(false);
        let app = api::pages::module_origin_router(souk);
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
        });
        Ok(ModulePages {
            origin: Some(origin),
            server: Some((stop, server)),
        })
    }

    /// The origin module mounts are public at: the module origin, or the
    /// API listener's `http://` address (`api`) when module pages share
    /// the API's origin (set `--module-origin` behind a proxy).
    pub(super) fn public_origin(&self, api: SocketAddr) -> String {
        self.origin
            .clone()
            .unwrap_or_else(|| format!("http://{api}"))
    }

    /// The API origin's router, sending browsers' visits of module pages
    /// to the module origin when there is one.
    pub(super) fn guard_api(&self, app: Router) -> Router {
        match &self.origin {
            Some(origin) => api::pages::send_page_visits_to(app, origin),
            None => app,
        }
    }

    /// Stops the module listener (after the API's).
    pub(super) async fn stop(self) {
        if let Some((stop, server)) = self.server {
            let _ = stop.send(true);
            match server.await {
                Ok(Err(e)) => tracing::error!(error = %e, "the module origin failed"),
                Err(e) => tracing::error!(error = %e, "the module origin's task failed"),
                Ok(Ok(())) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_the_next_port_or_a_free_one() {
        let api: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            ModuleListen::Auto.address(api),
            Some("127.0.0.1:8081".parse().unwrap())
        );
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(ModuleListen::Auto.address(any), Some(any));
        assert_eq!(ModuleListen::Off.address(api), None);
        assert_eq!("off".parse(), Ok(ModuleListen::Off));
        assert!("nowhere".parse::<ModuleListen>().is_err());
    }
}
