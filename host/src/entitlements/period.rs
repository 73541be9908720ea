//! Metering periods and how they roll over.

use std::ops::Range;

use time::{Duration, OffsetDateTime};

/// How often a metered allowance resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetInterval {
    /// Every 24 hours from the period start.
    Day,
    /// Every 7 days from the period start.
    Week,
    /// Every calendar month, on the anchor day of the month (clamped to the
    /// month's last day, so a period anchored on the 31st ends on 28/29 Feb
    /// and returns to the 31st in March).
    Month,
    /// Every calendar year, on the anchor day (29 Feb becomes 28 Feb in
    /// common years).
    Year,
}

/// A half-open metering period `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    /// First instant inside the period.
    pub start: OffsetDateTime,
    /// First instant after the period.
    pub end: OffsetDateTime,
}

/// A metering period from a span of [`crate::calendar`] (a month counted
/// from an anchor, a calendar month).
impl From<Range<OffsetDateTime>> for Period {
    fn from(span: Range<OffsetDateTime>) -> Self {
        Period {
            start: span.start,
            end: span.end,
        }
    }
}

impl Period {
    /// Whether `at` lies inside the period.
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        self.start <= at && at < self.end
    }
}

/// Where a meter's periods come from: the anchor (start of the first known
/// period) keeps the day of month stable across short months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeriodClock {
    pub(crate) anchor: OffsetDateTime,
    pub(crate) interval: ResetInterval,
}

impl PeriodClock {
    /// The period after `current`. Never returns an empty period: if the
    /// interval arithmetic would not move forward (an `end` before `start`
    /// supplied by a caller), it falls back to one day.
    pub(crate) fn next(&self, current: Period) -> Period {
        let start = current.end;
        let end = match self.interval {
            ResetInterval::Day => start.checked_add(Duration::days(1)),
            ResetInterval::Week => start.checked_add(Duration::weeks(1)),
            ResetInterval::Month => Some(shift_months(self.anchor, start, 1)),
            ResetInterval::Year => Some(shift_months(self.anchor, start, 12)),
        };
        let end = match end {
            Some(end) if end > start => end,
            _ => start.checked_add(Duration::days(1)).unwrap_or(start),
        };
        Period { start, end }
    }

    /// Rolls `current` forward until it contains `at` (or starts after it).
    /// Returns `None` if `at` is before `current.start`.
    pub(crate) fn roll_to(&self, current: Period, at: OffsetDateTime) -> Option<Period> {
        if at < current.start {
            return None;
        }
        let mut period = current;
        while at >= period.end {
            let next = self.next(period);
            // At the end of the representable calendar a period cannot
            // move on; stop there instead of looping.
            if next.end <= period.end {
                break;
            }
            period = next;
        }
        Some(period)
    }
}

/// `from` moved forward by `months`, keeping the anchor's day of month
/// (clamped) and `from`'s time of day; past the end of the representable
/// calendar, one day later (or `from`) so rolling stops rather than panics.
fn shift_months(anchor: OffsetDateTime, from: OffsetDateTime, months: u32) -> OffsetDateTime {
    crate::calendar::shift_months(from, months, anchor.day())
        .unwrap_or_else(|| from.checked_add(Duration::days(1)).unwrap_or(from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Date, Month};

    fn datetime(year: i32, month: u8, day: u8) -> OffsetDateTime {
        let month = Month::try_from(month).unwrap();
        Date::from_calendar_date(year, month, day)
            .unwrap()
            .midnight()
            .assume_utc()
    }

    #[test]
    fn monthly_periods_keep_the_anchor_day_across_short_months() {
        let clock = PeriodClock {
            anchor: datetime(2026, 1, 31),
            interval: ResetInterval::Month,
        };
        let jan = Period {
            start: datetime(2026, 1, 31),
            end: datetime(2026, 2, 28),
        };
        let feb = clock.next(jan);
        assert_eq!(feb.end, datetime(2026, 3, 31));
        let rolled = clock.roll_to(jan, datetime(2026, 4, 5) + Duration::hours(12));
        assert_eq!(
            rolled.map(|p| (p.start, p.end)),
            Some((datetime(2026, 3, 31), datetime(2026, 4, 30)))
        );
    }
}
