//! Fiscal years for invoice numbering: invoices are numbered from 1 in each
//! fiscal year, without gaps.
//!
//! Nepal's fiscal year starts on Shrawan 1 of the Bikram Sambat (BS)
//! calendar, which falls on 15, 16, 17 or 18 July depending on the year. The
//! default rule, `bs` (`--invoice-fiscal-year-start bs`), takes that day
//! from [`SHRAWAN_1`], a table of BS years 2070 to 2101, and names a year
//! after the BS years it spans (`2082/83`). The alternative is a Gregorian
//! month and day (`MM-DD`, e.g. `04-01`), the year then named after the
//! Gregorian years (`2026/27`). Either day is read in a UTC offset
//! (`--invoice-utc-offset`, default `+05:45`, Nepal's), so an invoice
//! issued at 18:15 UTC on 16 July 2025 is already on Shrawan 1, 2082 in
//! Kathmandu.
//!
//! **Outside the table** (before Shrawan 1, 2070 = 16 July 2013, or from
//! Shrawan 1, 2101 = 16 July 2044 on) the `bs` rule falls back to 17 July
//! (the most common Shrawan 1) and logs a warning for each invoice so
//! numbered: extend the table, or set `MM-DD`, before then.

use time::{Date, Month, OffsetDateTime, UtcOffset};

/// Shrawan 1 of BS years 2070 to 2101 as Gregorian dates: `(BS year,
/// year, month, day)`.
///
/// Source: the month lengths of the `nepdate` crate, version
/// 0.1.0-beta.1 on crates.io (`src/generated/calendar.rs`, MIT; its data
/// come from NepDate, <https://github.com/RajuPrasai/NepDate>, commit
/// cb05cb65c7d3cb570c76992a8e83ed1e73213346), with its epoch 1 Baishakh
/// 1901 BS = 11 April 1844: Shrawan 1 of a year is its Baishakh 1 plus the
/// lengths of Baishakh, Jestha and Ashad. Cross-checked against two other
/// crates with their own tables (`nepdate-cli` 0.1.5 and `adtobs` 0.2.0):
/// all three agree on every year from 2070 to 2085 — among them Shrawan 1,
/// 2080 = 17 July 2023, 2081 = 16 July 2024, 2082 = 17 July 2025, 2083 =
/// 17 July 2026 — and on 2087 and 2091–2099. They disagree on 2086, 2088,
/// 2089 and 2090 (years whose official calendar is not published yet):
/// this table follows `nepdate`; an operator who learns otherwise for such
/// a year sets `MM-DD` for it before it turns. The day of each entry is
/// checked by the tests below against month lengths.
pub const SHRAWAN_1: [(i32, i32, u8, u8); 32] = [
    (2070, 2013, 7, 16),
    (2071, 2014, 7, 17),
    (2072, 2015, 7, 17),
    (2073, 2016, 7, 16),
    (2074, 2017, 7, 16),
    (2075, 2018, 7, 17),
    (2076, 2019, 7, 17),
    (2077, 2020, 7, 16),
    (2078, 2021, 7, 16),
    (2079, 2022, 7, 17),
    (2080, 2023, 7, 17),
    (2081, 2024, 7, 16),
    (2082, 2025, 7, 17),
    (2083, 2026, 7, 17),
    (2084, 2027, 7, 17),
    (2085, 2028, 7, 16),
    (2086, 2029, 7, 16),
    (2087, 2030, 7, 17),
    (2088, 2031, 7, 18),
    (2089, 2032, 7, 17),
    (2090, 2033, 7, 17),
    (2091, 2034, 7, 17),
    (2092, 2035, 7, 17),
    (2093, 2036, 7, 16),
    (2094, 2037, 7, 17),
    (2095, 2038, 7, 17),
    (2096, 2039, 7, 17),
    (2097, 2040, 7, 16),
    (2098, 2041, 7, 17),
    (2099, 2042, 7, 17),
    (2100, 2043, 7, 17),
    (2101, 2044, 7, 16),
];

/// BS years minus Gregorian years from Shrawan 1 to 31 December.
const BS_AHEAD: i32 = 57;

/// Shrawan 1 of table entry `i` as a date.
fn shrawan_1(i: usize) -> Option<Date> {
    let (_, year, month, day) = *SHRAWAN_1.get(i)?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// The BS fiscal year `local` (a date in the configured offset) falls in,
/// if the table covers it.
fn bs_year_of(local: Date) -> Option<i32> {
    let first = shrawan_1(0)?;
    if local < first {
        return None;
    }
    // The last entry only ends the year before it.
    (1..SHRAWAN_1.len()).find_map(|next| {
        let end = shrawan_1(next)?;
        (local < end).then(|| SHRAWAN_1[next - 1].0)
    })
}

/// When a fiscal year starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Shrawan 1 of each BS year ([`SHRAWAN_1`]).
    BikramSambat,
    /// A day of the Gregorian year.
    Gregorian { month: Month, day: u8 },
}

/// When a fiscal year starts (Shrawan 1, or a day of the Gregorian year),
/// read in a UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiscalYearStart {
    rule: Rule,
    offset: UtcOffset,
}

/// The default start: Shrawan 1 (Bikram Sambat).
pub const DEFAULT_START: &str = "bs";
/// The default offset the start is read in: Nepal time.
pub const DEFAULT_OFFSET: &str = "+05:45";

impl FiscalYearStart {
    /// Parses a start (`bs`, or `MM-DD`) and an offset `+HH:MM` / `-HH:MM`.
    ///
    /// # Errors
    /// A message naming the part that is not `bs` or a day of the year (29
    /// February is refused: it does not occur every year), or not an
    /// offset.
    pub fn parse(start: &str, offset: &str) -> Result<Self, String> {
        let offset = parse_offset(offset.trim())
            .ok_or_else(|| format!("UTC offset {offset:?} is not +HH:MM or -HH:MM"))?;
        if start.trim().eq_ignore_ascii_case("bs") {
            return Ok(FiscalYearStart {
                rule: Rule::BikramSambat,
                offset,
            });
        }
        let bad_start = || {
            format!(
                "fiscal year start {start:?} is neither `bs` (Shrawan 1) nor MM-DD (e.g. 04-01)"
            )
        };
        let (month, day) = start.trim().split_once('-').ok_or_else(bad_start)?;
        let month: u8 = month.parse().map_err(|_| bad_start())?;
        let day: u8 = day.parse().map_err(|_| bad_start())?;
        let month = Month::try_from(month).map_err(|_| bad_start())?;
        // A common (non-leap) year must have the day.
        Date::from_calendar_date(2027, month, day).map_err(|_| bad_start())?;
        Ok(FiscalYearStart {
            rule: Rule::Gregorian { month, day },
            offset,
        })
    }

    /// The fiscal year `at` falls in, named by the year it starts in (a BS
    /// year under the `bs` rule, a Gregorian one otherwise).
    pub fn year_of(&self, at: OffsetDateTime) -> FiscalYear {
        let local = at.to_offset(self.offset).date();
        FiscalYear(match self.rule {
            Rule::Gregorian { month, day } => gregorian_start_year(local, month, day),
            Rule::BikramSambat => bs_year_of(local).unwrap_or_else(|| {
                tracing::warn!(
                    date = %local,
                    "the Bikram Sambat table does not cover this date; its fiscal year is taken to start on 17 July"
                );
                gregorian_start_year(local, Month::July, 17) + BS_AHEAD
            }),
        })
    }

    /// Whether the `bs` rule's table covers `at` (always true for `MM-DD`).
    pub fn covers(&self, at: OffsetDateTime) -> bool {
        match self.rule {
            Rule::Gregorian { .. } => true,
            Rule::BikramSambat => bs_year_of(at.to_offset(self.offset).date()).is_some(),
        }
    }
}

/// The Gregorian year of the last `month`-`day` on or before `local`.
fn gregorian_start_year(local: Date, month: Month, day: u8) -> i32 {
    match Date::from_calendar_date(local.year(), month, day) {
        Ok(start) if local >= start => local.year(),
        _ => local.year() - 1,
    }
}

impl Default for FiscalYearStart {
    fn default() -> Self {
        FiscalYearStart {
            rule: Rule::BikramSambat,
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

/// A fiscal year, named by the year it starts in (BS or Gregorian, as the
/// rule that made it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FiscalYear(pub i32);

impl FiscalYear {
    /// The label invoices carry: `2082/83` for the year starting in 2082.
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
    fn the_bs_year_turns_on_shrawan_1_in_nepal_time() {
        let start = FiscalYearStart::default();
        assert_eq!(start, FiscalYearStart::parse("bs", "+05:45").unwrap());
        // Shrawan 1, 2081 = 16 July 2024: midnight in Kathmandu (+05:45) is
        // 18:15 UTC the day before.
        assert_eq!(start.year_of(at("2024-07-15T18:14:59Z")), FiscalYear(2080));
        assert_eq!(start.year_of(at("2024-07-15T18:15:00Z")), FiscalYear(2081));
        // Shrawan 1, 2082 = 17 July 2025: 16 July is still 2081/82.
        assert_eq!(start.year_of(at("2025-07-16T12:00:00Z")), FiscalYear(2081));
        assert_eq!(start.year_of(at("2025-07-16T18:14:59Z")), FiscalYear(2081));
        assert_eq!(start.year_of(at("2025-07-16T18:15:00Z")), FiscalYear(2082));
        assert_eq!(start.year_of(at("2026-01-01T00:00:00Z")), FiscalYear(2082));
        assert_eq!(start.year_of(at("2026-07-16T18:14:59Z")), FiscalYear(2082));
        assert_eq!(start.year_of(at("2026-07-16T18:15:00Z")), FiscalYear(2083));
        // 2088 starts on 18 July 2031: the 17th is still 2087/88.
        assert_eq!(start.year_of(at("2031-07-17T12:00:00Z")), FiscalYear(2087));
        assert_eq!(start.year_of(at("2031-07-17T18:15:00Z")), FiscalYear(2088));
        assert_eq!(FiscalYear(2082).label(), "2082/83");
        assert_eq!(FiscalYear(2099).label(), "2099/00");
        assert!(start.covers(at("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn the_shrawan_table_is_contiguous_and_its_years_have_plausible_lengths() {
        for (i, pair) in SHRAWAN_1.windows(2).enumerate() {
            assert_eq!(pair[1].0, pair[0].0 + 1, "entry {i}");
            assert_eq!(pair[0].1, pair[0].0 - BS_AHEAD, "entry {i}");
            let days = shrawan_1(i + 1).unwrap() - shrawan_1(i).unwrap();
            // A BS year is 365 or 366 days long.
            assert!(
                days.whole_days() == 365 || days.whole_days() == 366,
                "BS {}: {days}",
                pair[0].0
            );
            // Shrawan 1 falls between 15 and 18 July.
            assert!((15..=18).contains(&pair[0].3) && pair[0].2 == 7);
        }
    }

    #[test]
    fn outside_the_table_the_bs_rule_falls_back_to_17_july() {
        let start = FiscalYearStart::default();
        // Shrawan 1, 2070 = 16 July 2013 is the table's first day.
        assert!(start.covers(at("2013-07-15T18:15:00Z")));
        assert!(!start.covers(at("2013-07-15T18:14:59Z")));
        assert_eq!(start.year_of(at("2013-07-15T18:15:00Z")), FiscalYear(2070));
        assert_eq!(start.year_of(at("2013-07-15T12:00:00Z")), FiscalYear(2069));
        // The table ends the day before Shrawan 1, 2101 (16 July 2044).
        assert!(start.covers(at("2044-07-15T18:14:59Z")));
        assert!(!start.covers(at("2044-07-15T18:15:00Z")));
        assert_eq!(start.year_of(at("2044-07-15T12:00:00Z")), FiscalYear(2100));
        // Fallback: 17 July.
        assert_eq!(start.year_of(at("2044-07-16T12:00:00Z")), FiscalYear(2100));
        assert_eq!(start.year_of(at("2044-07-16T18:15:00Z")), FiscalYear(2101));
        assert_eq!(start.year_of(at("2050-01-01T00:00:00Z")), FiscalYear(2106));
    }

    #[test]
    fn the_year_turns_on_a_gregorian_start_day_in_nepal_time() {
        let start = FiscalYearStart::parse("07-17", "+05:45").unwrap();
        assert_eq!(start.year_of(at("2026-07-16T18:14:59Z")), FiscalYear(2025));
        // 18:15 UTC is midnight in Kathmandu (+05:45): 17 July there.
        assert_eq!(start.year_of(at("2026-07-16T18:15:00Z")), FiscalYear(2026));
        assert_eq!(start.year_of(at("2027-01-01T00:00:00Z")), FiscalYear(2026));
        assert_eq!(start.year_of(at("2027-07-16T12:00:00Z")), FiscalYear(2026));
        assert_eq!(FiscalYear(2026).label(), "2026/27");
        assert!(start.covers(at("2090-01-01T00:00:00Z")));
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
            ("bsx", "+05:45"),
            ("shrawan", "+05:45"),
            ("bs", "+5:45"),
        ] {
            assert!(
                FiscalYearStart::parse(start, offset).is_err(),
                "{start} {offset}"
            );
        }
    }
}
