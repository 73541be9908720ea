//! Calendar-month arithmetic, once for the whole host: billing periods,
//! metering periods and the allowance month of an unpriced module all move
//! through months here.
//!
//! The one rule: moving by months keeps the time of day and the UTC offset,
//! and clamps the day of month to the last day of a shorter month (31 Jan +
//! 1 month is 28 Feb, or 29 Feb in a leap year). Counting every period from
//! a fixed anchor, rather than from the previous period, keeps a day that
//! was clamped from drifting (anchor 31 Jan gives 28 Feb, then 31 Mar).

use std::ops::Range;

use time::{Date, Month, OffsetDateTime, Time};

/// `at` moved forward by `months` calendar months, onto day `day` of the
/// month it lands in (clamped to that month's length). `None` when the
/// result is past the last representable date (year 9999), which no real
/// subscription or meter reaches; callers choose how to saturate.
pub fn shift_months(at: OffsetDateTime, months: u32, day: u8) -> Option<OffsetDateTime> {
    let index = i64::from(at.year()) * 12 + i64::from(u8::from(at.month())) - 1 + i64::from(months);
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = day.min(month.length(year));
    Date::from_calendar_date(year, month, day)
        .ok()
        .map(|date| at.replace_date(date))
}

/// `at` plus `months` calendar months, keeping its day of month (clamped).
/// Saturates at the last representable date.
pub fn add_months(at: OffsetDateTime, months: u32) -> OffsetDateTime {
    shift_months(at, months, at.day()).unwrap_or_else(|| at.replace_date(Date::MAX))
}

/// The month-long period counted from `anchor` that contains `now`: from
/// `anchor` + *n* months to `anchor` + *n*+1 months. Before the anchor it
/// is `now..anchor`.
pub fn monthly_period(anchor: OffsetDateTime, now: OffsetDateTime) -> Range<OffsetDateTime> {
    if now < anchor {
        return now..anchor;
    }
    let mut months = 0u32;
    loop {
        let start = add_months(anchor, months);
        let end = add_months(anchor, months.saturating_add(1));
        // `end <= start`: the calendar ran out (both saturated at its last
        // date); stop there with an empty period instead of looping.
        if now < end || end <= start {
            return start..end;
        }
        months += 1;
    }
}

/// The calendar month containing `at`: from midnight on its first day to
/// midnight on the first day of the next month, in `at`'s offset.
pub fn calendar_month(at: OffsetDateTime) -> Range<OffsetDateTime> {
    let start = at.replace_day(1).unwrap_or(at).replace_time(Time::MIDNIGHT);
    start..add_months(start, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn month_ends_clamp_to_shorter_months() {
        let jan31 = at("2027-01-31T10:30:00Z");
        assert_eq!(add_months(jan31, 1), at("2027-02-28T10:30:00Z"));
        assert_eq!(add_months(jan31, 2), at("2027-03-31T10:30:00Z"));
        assert_eq!(add_months(jan31, 3), at("2027-04-30T10:30:00Z"));
        assert_eq!(
            add_months(at("2027-03-31T00:00:00Z"), 1),
            at("2027-04-30T00:00:00Z")
        );
        assert_eq!(add_months(jan31, 0), jan31);
    }

    #[test]
    fn february_29_exists_only_in_leap_years() {
        assert_eq!(
            add_months(at("2028-01-31T00:00:00Z"), 1),
            at("2028-02-29T00:00:00Z")
        );
        let leap_day = at("2028-02-29T00:00:00Z");
        assert_eq!(add_months(leap_day, 12), at("2029-02-28T00:00:00Z"));
        assert_eq!(add_months(leap_day, 48), at("2032-02-29T00:00:00Z"));
        // 2100 is not a leap year (divisible by 100, not by 400); 2000 was.
        assert_eq!(
            add_months(at("2100-01-29T00:00:00Z"), 1),
            at("2100-02-28T00:00:00Z")
        );
        assert_eq!(
            add_months(at("2000-01-29T00:00:00Z"), 1),
            at("2000-02-29T00:00:00Z")
        );
    }

    #[test]
    fn years_wrap_and_time_and_offset_are_kept() {
        assert_eq!(
            add_months(at("2027-12-15T00:00:00Z"), 1),
            at("2028-01-15T00:00:00Z")
        );
        assert_eq!(
            add_months(at("2027-11-30T08:00:00Z"), 3),
            at("2028-02-29T08:00:00Z")
        );
        assert_eq!(
            add_months(at("2027-06-10T00:00:00Z"), 25),
            at("2029-07-10T00:00:00Z")
        );
        let nepal = at("2027-12-31T23:45:00+05:45");
        let next = add_months(nepal, 2);
        assert_eq!(next, at("2028-02-29T23:45:00+05:45"));
        assert_eq!(next.offset(), nepal.offset());
    }

    #[test]
    fn shifting_onto_another_day_clamps_that_day() {
        let feb28 = at("2027-02-28T00:00:00Z");
        assert_eq!(shift_months(feb28, 1, 31), Some(at("2027-03-31T00:00:00Z")));
        assert_eq!(shift_months(feb28, 2, 31), Some(at("2027-04-30T00:00:00Z")));
        assert_eq!(
            shift_months(feb28, 12, 29),
            Some(at("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            shift_months(feb28, 24, 29),
            Some(at("2029-02-28T00:00:00Z"))
        );
    }

    #[test]
    fn the_end_of_the_calendar_saturates() {
        let last = at("9999-12-01T00:00:00Z");
        assert_eq!(shift_months(last, 1, 1), None);
        assert_eq!(add_months(last, 1), last.replace_date(Date::MAX));
        assert_eq!(add_months(last, u32::MAX), last.replace_date(Date::MAX));
        let end_of_time = last.replace_date(Date::MAX);
        assert_eq!(
            monthly_period(last, at("9999-12-31T12:00:00Z")),
            end_of_time..end_of_time
        );
    }

    #[test]
    fn monthly_periods_count_from_the_anchor() {
        let anchor = at("2026-01-31T09:00:00Z");
        assert_eq!(
            monthly_period(anchor, at("2026-03-01T00:00:00Z")),
            at("2026-02-28T09:00:00Z")..at("2026-03-31T09:00:00Z")
        );
        assert_eq!(
            monthly_period(anchor, anchor),
            anchor..at("2026-02-28T09:00:00Z")
        );
        assert_eq!(
            monthly_period(anchor, at("2027-01-31T08:59:59Z")),
            at("2026-12-31T09:00:00Z")..at("2027-01-31T09:00:00Z")
        );
        let before = at("2026-01-01T00:00:00Z");
        assert_eq!(monthly_period(anchor, before), before..anchor);
    }

    #[test]
    fn a_calendar_month_runs_from_the_first_to_the_first() {
        assert_eq!(
            calendar_month(at("2026-05-17T12:00:00Z")),
            at("2026-05-01T00:00:00Z")..at("2026-06-01T00:00:00Z")
        );
        assert_eq!(
            calendar_month(at("2026-12-31T23:59:59Z")),
            at("2026-12-01T00:00:00Z")..at("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            calendar_month(at("2028-02-29T06:00:00+05:45")),
            at("2028-02-01T00:00:00+05:45")..at("2028-03-01T00:00:00+05:45")
        );
    }
}
