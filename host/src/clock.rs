//! Where the host's time comes from: one [`Clock`] serves every timestamp
//! the host writes — subscription periods, usage events, audit rows — so a
//! host started with `--manual-clock` (a [`RecordedClock`]) is consistent
//! everywhere; and one [`rfc3339`] writes those instants as text.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::error::SoukError;

/// Where time comes from, so tests can walk a subscription through months.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> OffsetDateTime;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to: in tests, for one maintenance run
/// (which sees one "now"), and inside the host's [`RecordedClock`].
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        ManualClock(Mutex::new(at))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The file, in the host's data directory, that keeps a manual clock's
/// instant between runs.
const MANUAL_CLOCK_FILE: &str = "manual-clock";

/// The host's manual clock (`--manual-clock`): a [`ManualClock`] whose
/// instant is recorded in the data directory whenever the operator moves
/// it, so a restarted host resumes from there and time never runs
/// backwards under a subscription.
#[derive(Debug)]
pub struct RecordedClock {
    clock: ManualClock,
    file: PathBuf,
}

impl RecordedClock {
    /// The manual clock of `data_dir`, standing at `start`, or at the
    /// instant an earlier run recorded there when that is later.
    ///
    /// # Errors
    /// When the recorded instant cannot be read or is not RFC 3339.
    pub fn resume(data_dir: &Path, start: OffsetDateTime) -> anyhow::Result<Self> {
        let file = data_dir.join(MANUAL_CLOCK_FILE);
        let recorded = match std::fs::read_to_string(&file) {
            Ok(text) => Some(
                OffsetDateTime::parse(text.trim(), &Rfc3339)
                    .with_context(|| format!("{} is not an RFC 3339 instant", file.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", file.display())),
        };
        let at = recorded.map_or(start, |recorded| recorded.max(start));
        Ok(RecordedClock {
            clock: ManualClock::new(at),
            file,
        })
    }

    /// Moves the clock to `at` and records it (the record first: if it
    /// cannot be written, the clock stays where it was).
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for an instant before the current one;
    /// [`SoukError::Internal`] when the record cannot be written.
    pub fn set(&self, at: OffsetDateTime) -> Result<(), SoukError> {
        let now = self.clock.now();
        if at < now {
            return Err(SoukError::Invalid(format!(
                "the clock only moves forward (now {}, asked for {})",
                rfc3339(now),
                rfc3339(at)
            )));
        }
        std::fs::write(&self.file, rfc3339(at))
            .map_err(|e| SoukError::Internal(anyhow::anyhow!("{}: {e}", self.file.display())))?;
        self.clock.set(at);
        Ok(())
    }
}

impl Clock for RecordedClock {
    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}

/// RFC 3339 text of `at`, as the host stores and shows instants. Falls
/// back to unix seconds for the instants RFC 3339 cannot write (years
/// outside 0000–9999), which the host's own clocks never produce.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    #[test]
    fn instants_are_written_as_rfc3339() {
        assert_eq!(rfc3339(at("2027-01-31T10:30:00Z")), "2027-01-31T10:30:00Z");
        assert_eq!(
            rfc3339(at("2027-01-31T10:30:00+05:45")),
            "2027-01-31T10:30:00+05:45"
        );
    }

    #[test]
    fn a_recorded_clock_resumes_where_it_was_moved_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let start = at("2027-01-01T00:00:00Z");
        let clock = RecordedClock::resume(dir.path(), start).unwrap();
        assert_eq!(clock.now(), start);
        clock.set(at("2027-03-01T00:00:00Z")).unwrap();
        assert!(matches!(
            clock.set(at("2027-02-01T00:00:00Z")),
            Err(SoukError::Invalid(_))
        ));
        assert_eq!(clock.now(), at("2027-03-01T00:00:00Z"));
        // A restart with the same start resumes from the recorded instant;
        // a later start wins over it.
        let resumed = RecordedClock::resume(dir.path(), start).unwrap();
        assert_eq!(resumed.now(), at("2027-03-01T00:00:00Z"));
        let later = RecordedClock::resume(dir.path(), at("2027-06-01T00:00:00Z")).unwrap();
        assert_eq!(later.now(), at("2027-06-01T00:00:00Z"));
    }
}
