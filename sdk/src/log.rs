//! Logging into the host's log; the host tags every line with the tenant and
//! the module. Outside a component, lines go to standard error.
//!
//! ```no_run
//! souk_sdk::log::info(format_args!("imported {} members", 12));
//! souk_sdk::log::warn("member M-7 has no email");
//! ```

use std::fmt::Display;

use crate::runtime;

/// How severe a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Step-by-step detail, usually filtered out.
    Trace,
    /// Detail useful while debugging a module.
    Debug,
    /// Normal events worth keeping.
    Info,
    /// Something unexpected that the module handled.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// The level's name: `trace`, `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Writes one line at `level`.
pub fn log(level: Level, message: impl Display) {
    runtime::log(level, &message.to_string());
}

/// Writes one line at [`Level::Trace`].
pub fn trace(message: impl Display) {
    log(Level::Trace, message);
}

/// Writes one line at [`Level::Debug`].
pub fn debug(message: impl Display) {
    log(Level::Debug, message);
}

/// Writes one line at [`Level::Info`].
pub fn info(message: impl Display) {
    log(Level::Info, message);
}

/// Writes one line at [`Level::Warn`].
pub fn warn(message: impl Display) {
    log(Level::Warn, message);
}

/// Writes one line at [`Level::Error`].
pub fn error(message: impl Display) {
    log(Level::Error, message);
}
