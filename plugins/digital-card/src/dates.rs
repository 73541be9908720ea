//! Calendar dates (`YYYY-MM-DD`) and instants, from the WASI wall clock,
//! which the host sets to its own clock (so `--manual-clock` reaches the
//! module).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A day of the proleptic Gregorian calendar, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(pub i64);

impl Day {
    /// Today (UTC).
    pub fn today() -> Self {
        Day(now_unix().div_euclid(86_400))
    }

    /// The day `days` later.
    pub fn plus(self, days: i64) -> Self {
        Day(self.0 + days)
    }

    /// Parses `YYYY-MM-DD` (years 1..=9999, real calendar days).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let shape_error = || format!("`{text}` is not a date written YYYY-MM-DD");
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(shape_error());
        }
        let number = |range: std::ops::Range<usize>| -> Result<i64, String> {
            let digits = &text[range];
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(shape_error());
            }
            digits.parse().map_err(|_| shape_error())
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month)
        {
            return Err(format!("`{text}` is not a day of the calendar"));
        }
        Ok(Day(days_from_civil(year, month, day)))
    }

    /// `YYYY-MM-DD`.
    pub fn format(self) -> String {
        let (year, month, day) = civil_from_days(self.0);
        format!("{year:04}-{month:02}-{day:02}")
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
pub fn format_instant(unix: i64) -> String {
    let day = Day(unix.div_euclid(86_400));
    let seconds = unix.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day.format(),
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        for text in ["1970-01-01", "2000-02-29", "2026-03-01", "9999-12-31", "0001-01-01"] {
            assert_eq!(Day::parse(text).unwrap().format(), text);
        }
        assert_eq!(Day::parse("1970-01-02").unwrap(), Day(1));
        assert_eq!(Day::parse("2026-02-28").unwrap().plus(1).format(), "2026-03-01");
        for bad in ["2026-02-29", "2026-13-01", "2026-00-10", "0000-01-01", "2026-1-01", "yesterday", "2026-01-3a"] {
            assert!(Day::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format_instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_instant(1_772_362_861), "2026-03-01T11:01:01Z");
    }
}
