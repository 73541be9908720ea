//! The `log` host interface: module log lines go into the host's structured
//! log, tagged with tenant and module, bounded in size and number so a
//! module cannot flood the host's log, and escaped so it cannot forge one:
//! a message is written by [`crate::runtime::printable`] (line breaks,
//! other control characters and Unicode separators as escapes), so in the
//! text format as in JSON a module's line is always one line of the host's
//! log, marked with its tenant and module.

/// Longest log message kept, after escaping (longer ones are cut and
/// marked).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Most log lines one call may write; later lines are dropped.
pub const MAX_LINES_PER_CALL: u32 = 256;

/// Implements the `log` interface of one API version (the same logic over
/// each version's generated types).
macro_rules! log_host {
    ($version:ident) => {
        mod $version {
            use super::{MAX_LINES_PER_CALL, MAX_MESSAGE_BYTES};
            use crate::runtime::CallState;
            use crate::runtime::bindings::$version::souk::module::log as wit;

            impl wit::Host for CallState {
                async fn log(&mut self, level: wit::Level, message: String) -> wasmtime::Result<()> {
                    self.log_lines += 1;
                    if self.log_lines > MAX_LINES_PER_CALL {
                        return Ok(());
                    }
                    let message = crate::runtime::printable(&message, MAX_MESSAGE_BYTES);
                    let tenant = self.context.tenant_id.as_str();
                    let module = self.context.module_slug.as_str();
                    match level {
                        wit::Level::Trace => {
                            tracing::trace!(target: "souk::module", tenant, module, "{message}")
                        }
                        wit::Level::Debug => {
                            tracing::debug!(target: "souk::module", tenant, module, "{message}")
                        }
                        wit::Level::Info => tracing::info!(target: "souk::module", tenant, module, "{message}"),
                        wit::Level::Warn => tracing::warn!(target: "souk::module", tenant, module, "{message}"),
                        wit::Level::Error => {
                            tracing::error!(target: "souk::module", tenant, module, "{message}")
                        }
                    }
                    Ok(())
                }
            }
        }
    };
}

log_host!(v0_1_0);
log_host!(v0_2_0);
