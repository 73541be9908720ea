//! Fiscal years for invoice numbering: invoices are numbered from 1 in each
//! fiscal year, without gaps.
//!
//! Nepal's fiscal year starts on Shrawan 1 of the Bikram Sambat calendar,
//! which falls on 16 or 17 July. The host has no Bikram Sambat calendar
//! ([`crate::calendar`] is Gregorian), so the start is configuration: a
//! Gregorian month and day (`--invoice-fiscal-year-start`, default `07-17`)
//! read in a UTC offset (`--invoice-utc-offset`, default `+05:45`, Nepal's),
//! so an invoice issued at 23:00 UTC on 16 July is already on 17 July in
//! Kathmandu. An operator whose Shrawan 1 falls on the 16th sets `07-16`
//! for that year before the year turns.

use time::{Date, Month, OffsetDateTime, UtcOffset};

/// When a fiscal year starts: a day of the Gregorian year, in a UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiscalYearStart {
    month: Month,
    day: u8,
    offset: UtcOffset,
}

/// The default start: 17 July (Shrawan 1 in most years).
pub const DEFAULT_START: &str = "07-17";
/// The default offset the start is read in: Nepal time.
pub const DEFAULT_OFFSET: &str = "+05:45";

impl FiscalYearStart {
    /// Parses a start `MM-DD` and an offset `+HH:MM` / `-HH:MM`.
    ///
    /// # Errors
    /// A message naming the part that is not a day of the year (29 February
    /// is refused: it does not occur every year) or not an offset.
    pub fn parse(start: &str, offset: &str) -> Result<Self, String> {
        let bad_start = || format!("fiscal year start {start:?} is not MM-DD (e.g. 07-17)");
        let (month, day) = start.trim().split_once('-').ok_or_else(bad_start)?;
        let month: u8 = month.parse().map_err(|_| bad_start())?;
        let day: u8 = day.parse().map_err(|_| bad_start())?;
        let month = Month::try_from(month).map_err(|_| bad_start())?;
        // A common (non-leap) year must have the day.
        Date::from_calendar_date(2027, month, day).map_err(|_| bad_start())?;
        let offset = parse_offset(offset.trim())
            .ok_or_else(|| format!("UTC offset {offset:?} is not +HH:MM or -HH:MM"))?;
        Ok(FiscalYearStart { month, day, offset })
    }

    /// The fiscal year `at` falls in, named by the Gregorian year it starts in.
    pub fn year_of(&self, at: OffsetDateTime) -> FiscalYear {
        let local = at.to_offset(self.offset).date();
        let start_this_year = Date::from_calendar_date(local.year(), self.month, self.day);
        let starts = match start_this_year {
            Ok(start) if local >= start => local.year(),
            _ => local.year() - 1,
        };
        FiscalYear(starts)
    }
}

impl Default for FiscalYearStart {
    fn default() -> Self {
        FiscalYearStart {
            month: Month::July,
            day: 17,
            offset: parse_offset(DEFAULT_OFFSET).unwrap_or(UtcOffset::UTC),
        }
    }
}

fn parse_offset(text: &str) -> Option<UtcOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1i8, &text[1..]),
        b'-' => (-1i8, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i8 = hours.parse().ok()?;
    let minutes: i8 = minutes.parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

/// A fiscal year, named by the Gregorian year it starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FiscalYear(pub i32);

impl FiscalYear {
    /// The label invoices carry: `2026/27` for the year starting in 2026.
    pub fn label(self) -> String {
        format!("{}/{:02}", self.0, (self.0 + 1).rem_euclid(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn the_year_turns_on_the_start_day_in_nepal_time() {
        let start = FiscalYearStart::default();
        assert_eq!(start.year_of(at("2026-07-16T18:14:59Z")), FiscalYear(2025));
        // 18:15 UTC is midnight in Kathmandu (+05:45): 17 July there.
        assert_eq!(start.year_of(at("2026-07-16T18:15:00Z")), FiscalYear(2026));
        assert_eq!(start.year_of(at("2027-01-01T00:00:00Z")), FiscalYear(2026));
        assert_eq!(start.year_of(at("2027-07-16T12:00:00Z")), FiscalYear(2026));
        assert_eq!(FiscalYear(2026).label(), "2026/27");
        assert_eq!(FiscalYear(2099).label(), "2099/00");
    }

    #[test]
    fn starts_and_offsets_are_configurable_and_checked() {
        let january = FiscalYearStart::parse("01-01", "+00:00").unwrap();
        assert_eq!(
            january.year_of(at("2026-12-31T23:59:59Z")),
            FiscalYear(2026)
        );
        assert_eq!(
            january.year_of(at("2027-01-01T00:00:00Z")),
            FiscalYear(2027)
        );
        let west = FiscalYearStart::parse("04-01", "-05:00").unwrap();
        assert_eq!(west.year_of(at("2026-04-01T04:59:59Z")), FiscalYear(2025));
        assert_eq!(west.year_of(at("2026-04-01T05:00:00Z")), FiscalYear(2026));
        for (start, offset) in [
            ("02-29", "+05:45"),
            ("13-01", "+05:45"),
            ("07-32", "+05:45"),
            ("0717", "+05:45"),
            ("07-17", "05:45"),
            ("07-17", "+5:45"),
            ("07-17", "+15:00"),
            ("07-17", "+05:60"),
        ] {
            assert!(
                FiscalYearStart::parse(start, offset).is_err(),
                "{start} {offset}"
            );
        }
    }
}
