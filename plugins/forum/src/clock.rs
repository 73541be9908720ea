//! The module's one clock: the WASI wall clock, which the host sets from
//! its own clock at the start of each call (so `--manual-clock` reaches the
//! forum's times too: edit windows, bans, polls, digests). Every time the
//! module stores or compares is this one, bound into SQL as a parameter,
//! never SQLite's `unixepoch()` (the real wall clock).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
