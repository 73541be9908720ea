//! Schedules a manifest declares (`schedules:`, API 0.3.0 and later): a job
//! the host queues for every tenant that has the module installed, at a
//! steady cadence (`every: 1d`) or once a day at a UTC time (`at: "02:00"`).
//!
//! Time is counted in whole seconds since the Unix epoch (UTC), so this
//! crate needs no calendar: a cadence answers the *slot* an instant falls
//! in ([`Cadence::slot_at`]), the start of the latest period that began at
//! or before it. The host fires a schedule when the slot of "now" is later
//! than the slot it fired last, so a schedule fires exactly once per slot,
//! and once (not once per missed slot) after a downtime.

use std::fmt;

use serde::Deserialize;

/// The shortest `every` a schedule may have: one minute. Shorter cadences
/// would make schedules a busy loop of jobs rather than housekeeping.
pub const MIN_EVERY_SECS: u64 = 60;

/// The longest `every` a schedule may have: 366 days.
pub const MAX_EVERY_SECS: u64 = 366 * 86_400;

/// Longest schedule name, as for a job name.
pub const MAX_SCHEDULE_NAME_LEN: usize = 64;

const SECS_PER_DAY: i64 = 86_400;

/// When a schedule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cadence {
    /// Every this many seconds, in slots aligned to the Unix epoch (so
    /// `every: 1d` fires at 00:00 UTC and `every: 1h` on the hour).
    Every(u64),
    /// Once a day at this minute of the day, UTC (`at: "02:00"` is 120).
    DailyAt(u16),
}

impl Cadence {
    /// Parses `every` text: a whole number and a unit `s`, `m`, `h` or `d`
    /// (`90s`, `15m`, `1h`, `1d`), between [`MIN_EVERY_SECS`] and
    /// [`MAX_EVERY_SECS`].
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse_every(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{text:?} has no unit; write e.g. 15m, 1h or 1d"))?;
        let (number, unit) = text.split_at(split);
        if number.is_empty() || number.len() > 9 {
            return Err(format!(
                "{text:?} is not a whole number with a unit, e.g. 15m, 1h or 1d"
            ));
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a whole number with a unit"))?;
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            other => {
                return Err(format!(
                    "{other:?} is not a unit; use s, m, h or d (e.g. 15m, 1h, 1d)"
                ));
            }
        };
        let secs = n * scale;
        if secs < MIN_EVERY_SECS {
            return Err(format!(
                "{text:?} is shorter than the minimum of {MIN_EVERY_SECS} seconds"
            ));
        }
        if secs > MAX_EVERY_SECS {
            return Err(format!("{text:?} is longer than the maximum of 366 days"));
        }
        Ok(Cadence::Every(secs))
    }

    /// Parses `at` text: `HH:MM`, 24-hour, UTC.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse_at(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a time of day like \"02:00\" (HH:MM, UTC)");
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let hour: u16 = h.parse().map_err(|_| bad())?;
        let minute: u16 = m.parse().map_err(|_| bad())?;
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(Cadence::DailyAt(hour * 60 + minute))
    }

    /// The start of the latest slot that began at or before `unix_secs`
    /// (seconds since the Unix epoch, UTC).
    pub fn slot_at(self, unix_secs: i64) -> i64 {
        match self {
            Cadence::Every(every) => {
                let every = i64::try_from(every).unwrap_or(i64::MAX);
                unix_secs.div_euclid(every) * every
            }
            Cadence::DailyAt(minute) => {
                let offset = i64::from(minute) * 60;
                (unix_secs - offset).div_euclid(SECS_PER_DAY) * SECS_PER_DAY + offset
            }
        }
    }

    /// The start of the slot after the one `unix_secs` falls in: when the
    /// schedule fires next.
    pub fn next_slot_after(self, unix_secs: i64) -> i64 {
        let period = match self {
            Cadence::Every(every) => i64::try_from(every).unwrap_or(i64::MAX),
            Cadence::DailyAt(_) => SECS_PER_DAY,
        };
        self.slot_at(unix_secs).saturating_add(period)
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cadence::Every(secs) if secs % 86_400 == 0 => write!(f, "every {}d", secs / 86_400),
            Cadence::Every(secs) if secs % 3_600 == 0 => write!(f, "every {}h", secs / 3_600),
            Cadence::Every(secs) if secs % 60 == 0 => write!(f, "every {}m", secs / 60),
            Cadence::Every(secs) => write!(f, "every {secs}s"),
            Cadence::DailyAt(minute) => write!(f, "at {:02}:{:02}", minute / 60, minute % 60),
        }
    }
}

/// A schedule: the job `name` queued (with `{}` as its arguments) for
/// every tenant with the module installed, whenever `cadence` fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The job name the module's `run-job` receives; a job name
    /// (`[a-z][a-z0-9_.-]*`, at most [`MAX_SCHEDULE_NAME_LEN`]).
    pub name: String,
    /// When it fires.
    pub cadence: Cadence,
}

/// A schedule as the manifest writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    name: String,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    at: Option<String>,
}

/// Whether `name` is a valid job (and schedule) name:
/// `[a-z][a-z0-9_.-]*`, at most [`MAX_SCHEDULE_NAME_LEN`] bytes.
///
/// # Errors
/// A message saying which rule the name breaks.
pub fn check_job_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SCHEDULE_NAME_LEN {
        return Err(format!(
            "must be 1 to {MAX_SCHEDULE_NAME_LEN} characters long"
        ));
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    if !chars
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.' || c == '-')
    {
        return Err("may contain only lowercase letters, digits, '_', '.' and '-'".into());
    }
    Ok(())
}

impl RawSchedule {
    /// Checks one schedule; `Err` is (field suffix, reason).
    pub(crate) fn parse(self) -> Result<Schedule, (&'static str, String)> {
        check_job_name(&self.name).map_err(|e| ("name", e))?;
        let cadence = match (self.every, self.at) {
            (Some(every), None) => Cadence::parse_every(&every).map_err(|e| ("every", e))?,
            (None, Some(at)) => Cadence::parse_at(&at).map_err(|e| ("at", e))?,
            (Some(_), Some(_)) => {
                return Err(("", "has both `every` and `at`; give one".into()));
            }
            (None, None) => {
                return Err((
                    "",
                    "needs `every` (e.g. 1d) or `at` (e.g. \"02:00\")".into(),
                ));
            }
        };
        Ok(Schedule {
            name: self.name,
            cadence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_takes_each_unit_and_refuses_the_rest() {
        assert_eq!(Cadence::parse_every("90s"), Ok(Cadence::Every(90)));
        assert_eq!(Cadence::parse_every("15m"), Ok(Cadence::Every(900)));
        assert_eq!(Cadence::parse_every("2h"), Ok(Cadence::Every(7_200)));
        assert_eq!(Cadence::parse_every("1d"), Ok(Cadence::Every(86_400)));
        for bad in [
            "",
            "1",
            "d",
            "1w",
            "-1h",
            "1.5h",
            "59s",
            "0m",
            "367d",
            "1 h",
            "99999999999d",
        ] {
            assert!(Cadence::parse_every(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Cadence::parse_every("30s").unwrap_err().contains("minimum"));
    }

    #[test]
    fn at_takes_hh_mm_utc_only() {
        assert_eq!(Cadence::parse_at("02:00"), Ok(Cadence::DailyAt(120)));
        assert_eq!(Cadence::parse_at("23:59"), Ok(Cadence::DailyAt(1_439)));
        assert_eq!(Cadence::parse_at("00:00"), Ok(Cadence::DailyAt(0)));
        for bad in [
            "2:00", "24:00", "12:60", "12:0", "noon", "12-00", "+1:00", "12:00Z",
        ] {
            assert!(Cadence::parse_at(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn slots_of_every_are_aligned_to_the_epoch() {
        let hourly = Cadence::Every(3_600);
        assert_eq!(hourly.slot_at(0), 0);
        assert_eq!(hourly.slot_at(3_599), 0);
        assert_eq!(hourly.slot_at(3_600), 3_600);
        assert_eq!(hourly.slot_at(7_300), 7_200);
        assert_eq!(hourly.next_slot_after(7_300), 10_800);
        assert_eq!(hourly.slot_at(-1), -3_600);
    }

    #[test]
    fn slots_of_at_begin_at_that_time_each_day() {
        let two = Cadence::DailyAt(120);
        let day = 86_400;
        // 01:59 on day 10 is still in day 9's slot, 02:00 starts day 10's.
        assert_eq!(two.slot_at(10 * day + 7_199), 9 * day + 7_200);
        assert_eq!(two.slot_at(10 * day + 7_200), 10 * day + 7_200);
        assert_eq!(two.slot_at(10 * day + 80_000), 10 * day + 7_200);
        assert_eq!(two.next_slot_after(10 * day + 7_200), 11 * day + 7_200);
    }

    #[test]
    fn a_downtime_of_many_slots_is_one_slot_change() {
        // The host compares the slot of now with the slot it fired last:
        // three days later is one newer slot, not three.
        let daily = Cadence::Every(86_400);
        let fired = daily.slot_at(1_000);
        let later = daily.slot_at(3 * 86_400 + 1_000);
        assert!(later > fired);
        assert_eq!(daily.slot_at(later), later);
    }

    #[test]
    fn job_names_follow_the_rule() {
        for good in ["a", "nightly_expiry", "report.v2", "x-1"] {
            assert!(check_job_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "A", "_a", "a b", "a/b", &"a".repeat(65)] {
            assert!(check_job_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cadences_print_as_written() {
        assert_eq!(Cadence::Every(86_400).to_string(), "every 1d");
        assert_eq!(Cadence::Every(900).to_string(), "every 15m");
        assert_eq!(Cadence::Every(90).to_string(), "every 90s");
        assert_eq!(Cadence::DailyAt(125).to_string(), "at 02:05");
    }
}
