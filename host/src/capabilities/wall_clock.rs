//! The wall clock a module sees through WASI (`wasi:clocks/wall-clock`,
//! what `std::time::SystemTime::now()` reads in a component): the host's
//! one clock ([`crate::clock`]) read when the call started, moving on with
//! the real time the call has taken since. A host started with
//! `--manual-clock` therefore shows its modules the manual time, so a
//! module's dates (a card's expiry, a daily schedule's "today") agree with
//! the host's subscriptions, schedules and usage periods.

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use wasmtime_wasi::HostWallClock;

/// A wall clock standing at the host's time of the call's start.
pub struct CallWallClock {
    /// The host clock's reading when the call started.
    start: OffsetDateTime,
    /// When (real time) that reading was taken.
    taken: Instant,
}

impl CallWallClock {
    /// A wall clock reading `start` now and moving on in real time.
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            start,
            taken: Instant::now(),
        }
    }
}

impl HostWallClock for CallWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        let at = self.start + self.taken.elapsed();
        // Before 1970 there is nothing a module could mean; WASI's wall
        // clock counts from the epoch.
        let nanos = (at - OffsetDateTime::UNIX_EPOCH).whole_nanoseconds();
        u64::try_from(nanos).map_or(Duration::ZERO, Duration::from_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_reads_the_host_time_given_not_the_machines() {
        let start = OffsetDateTime::from_unix_timestamp(1_772_323_200).unwrap(); // 2026-03-01
        let clock = CallWallClock::new(start);
        let now = clock.now();
        assert!(now >= Duration::from_secs(1_772_323_200), "{now:?}");
        assert!(now < Duration::from_secs(1_772_323_200 + 60), "{now:?}");
        let before_epoch = CallWallClock::new(OffsetDateTime::UNIX_EPOCH - time::Duration::DAY);
        assert_eq!(before_epoch.now(), Duration::ZERO);
    }
}
