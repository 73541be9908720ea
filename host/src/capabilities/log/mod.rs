//! The `log` capability: module log lines go into the host's structured
//! log, tagged with tenant and module, bounded in size and number so a
//! module cannot flood the host's log, and escaped so it cannot forge one:
//! a message is written by [`printable`] (line breaks, other control
//! characters and Unicode separators as escapes), so in the text format as
//! in JSON a module's line is always one line of the host's log, marked with
//! its tenant and module.
//!
//! Per-call state: [`LogState`] (the lines written so far); the interface
//! reaches it and the call's context through a [`LogView`]. [`printable`] is
//! also the rule for any module-chosen text the host shows elsewhere (hook
//! refusals, trap messages).

use wasmtime::component::{HasData, Linker};

use crate::capabilities::context::CallContext;

/// Longest log message kept, after escaping (longer ones are cut and
/// marked).
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Most log lines one call may write; later lines are dropped.
pub const MAX_LINES_PER_CALL: u32 = 256;

/// The `log` capability's state in one call.
#[derive(Debug, Default)]
pub struct LogState {
    /// Lines the module asked to write during this call, dropped ones
    /// included; past [`MAX_LINES_PER_CALL`] nothing more is written.
    lines: u32,
}

/// What the `log` interface reaches of a call's state.
pub struct LogView<'a> {
    /// The call's line counter.
    pub state: &'a mut LogState,
    /// The call's context, to tag each line with its tenant and module.
    pub context: &'a CallContext,
}

/// The [`HasData`] of the `log` interface: its host functions get a
/// [`LogView`].
struct LogData;

impl HasData for LogData {
    type Data<'a> = LogView<'a>;
}

/// Links the `log` interface of every API version; `view` picks the log
/// state and the context out of the store data.
///
/// # Errors
/// When the linker already defines the interface.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> LogView<'_>,
) -> wasmtime::Result<()> {
    crate::wit::v0_1_0::souk::module::log::add_to_linker::<T, LogData>(linker, view)?;
    crate::wit::v0_2_0::souk::module::log::add_to_linker::<T, LogData>(linker, view)?;
    crate::wit::v0_3_0::souk::module::log::add_to_linker::<T, LogData>(linker, view)?;
    Ok(())
}

/// The one `log` implementation, over the host's own level type; each API
/// version converts its level to it.
#[derive(Debug, Clone, Copy)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogView<'_> {
    fn write(&mut self, level: Level, message: &str) {
        self.state.lines += 1;
        if self.state.lines > MAX_LINES_PER_CALL {
            return;
        }
        let message = printable(message, MAX_MESSAGE_BYTES);
        let tenant = self.context.tenant_id.as_str();
        let module = self.context.module_slug.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "souk::module", tenant, module, "{message}"),
            Level::Debug => tracing::debug!(target: "souk::module", tenant, module, "{message}"),
            Level::Info => tracing::info!(target: "souk::module", tenant, module, "{message}"),
            Level::Warn => tracing::warn!(target: "souk::module", tenant, module, "{message}"),
            Level::Error => tracing::error!(target: "souk::module", tenant, module, "{message}"),
        }
    }
}

/// Implements the `log` interface of one API version: its level converted,
/// then [`LogView::write`].
macro_rules! log_host {
    ($version:ident) => {
        mod $version {
            use super::{Level, LogView};
            use crate::wit::$version::souk::module::log as wit;

            impl wit::Host for LogView<'_> {
                async fn log(
                    &mut self,
                    level: wit::Level,
                    message: String,
                ) -> wasmtime::Result<()> {
                    let level = match level {
                        wit::Level::Trace => Level::Trace,
                        wit::Level::Debug => Level::Debug,
                        wit::Level::Info => Level::Info,
                        wit::Level::Warn => Level::Warn,
                        wit::Level::Error => Level::Error,
                    };
                    self.write(level, &message);
                    Ok(())
                }
            }
        }
    };
}

log_host!(v0_1_0);
log_host!(v0_2_0);
log_host!(v0_3_0);

/// `text` made safe to show in an answer or a log line: control characters
/// (C0 including `\n` `\r` `\t`, DEL, C1), the Unicode line and paragraph
/// separators and the bidirectional controls are written as escapes (`\n`,
/// `\r`, `\t`, `\u{2028}`), so the text stays on one line and reads as it
/// is; and it is cut to at most `max_bytes` at a character boundary, ending
/// with a marker that says how much was cut. Backslashes are kept as they
/// are.
pub fn printable(text: &str, max_bytes: usize) -> String {
    /// Room kept for the marker: "… [" + 20 digits + " more bytes cut]".
    const MARKER_ROOM: usize = 48;
    let mut escaped_len = 0;
    for c in text.chars() {
        escaped_len += escaped_len_of(c);
        if escaped_len > max_bytes {
            break;
        }
    }
    let limit = if escaped_len <= max_bytes {
        usize::MAX
    } else {
        max_bytes.saturating_sub(MARKER_ROOM)
    };
    let mut out = String::with_capacity(escaped_len.min(max_bytes));
    for (at, c) in text.char_indices() {
        if out.len() + escaped_len_of(c) > limit {
            out.push_str(&format!("… [{} more bytes cut]", text.len() - at));
            break;
        }
        push_escaped(&mut out, c);
    }
    out
}

/// Whether [`printable`] writes `c` as an escape.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// How many bytes [`push_escaped`] writes for `c`.
fn escaped_len_of(c: char) -> usize {
    match c {
        '\n' | '\r' | '\t' => 2,
        c if needs_escape(c) => {
            let digits = (32 - u32::from(c).leading_zeros()).div_ceil(4).max(1);
            4 + digits as usize
        }
        c => c.len_utf8(),
    }
}

/// Writes `c` as [`printable`] shows it.
fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}
