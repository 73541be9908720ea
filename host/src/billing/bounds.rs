//! Bounds on the numbers billing takes from outside: how far the manual
//! clock may move, how many periods an operator may prepay. Prices and
//! trials are bounded where the catalog is parsed
//! ([`MAX_PRICE`](super::plans::MAX_PRICE),
//! [`MAX_TRIAL_DAYS`](super::plans::MAX_TRIAL_DAYS)); usage quantities in
//! the entitlements engine ([`MAX_QUANTITY`](crate::entitlements::MAX_QUANTITY)).
//!
//! Every date billing computes (period ends, grace ends, trial ends, meter
//! periods) is at most [`MAX_PREPAID_PERIODS`] years plus a trial past the
//! clock, so with the clock below [`LATEST_CLOCK`] all of them stay far
//! inside the calendar `time` can represent (year 9999), and no date
//! arithmetic can overflow.

use time::{Duration, OffsetDateTime};

/// The latest instant the manual clock may be moved to: 2200-01-01T00:00:00Z.
pub const LATEST_CLOCK: OffsetDateTime = match OffsetDateTime::from_unix_timestamp(7_258_118_400) {
    Ok(at) => at,
    Err(_) => OffsetDateTime::UNIX_EPOCH,
};

/// The longest single move of the manual clock: 3660 days (ten years and
/// the leap days in them). Longer journeys take several moves, each
/// followed by maintenance if the operator wants every step recorded.
pub const MAX_CLOCK_STEP: Duration = Duration::days(3660);

/// The most periods an operator may prepay in one grant or extension, and
/// the most a subscription may hold prepaid: 1200 (a century of monthly
/// periods).
pub const MAX_PREPAID_PERIODS: u32 = 1200;

/// Why a clock move or a period count was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// A move of the clock longer than [`MAX_CLOCK_STEP`] or not forward.
    #[error("the clock moves forward by at most {max_days} days at a time")]
    StepTooLong {
        /// [`MAX_CLOCK_STEP`] in days.
        max_days: i64,
    },
    /// A target after [`LATEST_CLOCK`].
    #[error("the clock cannot be moved past {latest}")]
    TooLate {
        /// [`LATEST_CLOCK`], RFC 3339.
        latest: String,
    },
    /// Too many periods.
    #[error("`periods` must be 1 to {max}; a subscription holds at most {max} prepaid periods")]
    Periods {
        /// [`MAX_PREPAID_PERIODS`].
        max: u32,
    },
}

fn too_long() -> BoundsError {
    BoundsError::StepTooLong {
        max_days: MAX_CLOCK_STEP.whole_days(),
    }
}

/// Where an `advance` of `amount` units of `unit_seconds` seconds takes the
/// clock from `now`, checked: the move is 0 to [`MAX_CLOCK_STEP`] and the
/// target no later than [`LATEST_CLOCK`]. No arithmetic here can overflow,
/// whatever `amount` is.
///
/// # Errors
/// [`BoundsError::StepTooLong`] or [`BoundsError::TooLate`].
pub fn advance(
    now: OffsetDateTime,
    amount: i64,
    unit_seconds: i64,
) -> Result<OffsetDateTime, BoundsError> {
    let max_units = MAX_CLOCK_STEP.whole_seconds() / unit_seconds.max(1);
    if !(0..=max_units).contains(&amount) {
        return Err(too_long());
    }
    let step = Duration::seconds(amount.saturating_mul(unit_seconds));
    let target = now.checked_add(step).ok_or_else(too_late)?;
    check_target(now, target)?;
    Ok(target)
}

fn too_late() -> BoundsError {
    BoundsError::TooLate {
        latest: crate::clock::rfc3339(LATEST_CLOCK),
    }
}

/// Checks a move of the clock from `now` to `target`: not after
/// [`LATEST_CLOCK`], and not further than [`MAX_CLOCK_STEP`] ahead (a move
/// backwards is refused by the clock itself, with its own message).
///
/// # Errors
/// [`BoundsError::TooLate`] or [`BoundsError::StepTooLong`].
pub fn check_target(now: OffsetDateTime, target: OffsetDateTime) -> Result<(), BoundsError> {
    if target > LATEST_CLOCK {
        return Err(too_late());
    }
    if target - now > MAX_CLOCK_STEP {
        return Err(too_long());
    }
    Ok(())
}

/// Checks a number of periods an operator pays (grant, extend).
///
/// # Errors
/// [`BoundsError::Periods`] outside 1 to [`MAX_PREPAID_PERIODS`].
pub fn check_periods(periods: u32) -> Result<(), BoundsError> {
    if periods == 0 || periods > MAX_PREPAID_PERIODS {
        return Err(BoundsError::Periods {
            max: MAX_PREPAID_PERIODS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    /// 2026-12-01T12:00:00Z.
    const NOW_UNIX: i64 = 1_796_126_400;

    #[test]
    fn clock_moves_of_any_size_are_checked_without_overflow() {
        let now = at(NOW_UNIX);
        for (amount, unit) in [
            (i64::MAX, 86_400),
            (i64::MIN, 86_400),
            (-1, 86_400),
            (3661, 86_400),
            (i64::MAX, 1),
            (i64::MIN, 1),
            (MAX_CLOCK_STEP.whole_seconds() + 1, 1),
            (106_751_991_167_300, 86_400),
        ] {
            assert_eq!(
                advance(now, amount, unit),
                Err(too_long()),
                "{amount}×{unit}"
            );
        }
        assert_eq!(advance(now, 3660, 86_400), Ok(now + MAX_CLOCK_STEP));
        assert_eq!(advance(now, 0, 86_400), Ok(now));
        let late = at(7_100_352_000);
        assert!(matches!(
            advance(late, 3660, 86_400),
            Err(BoundsError::TooLate { .. })
        ));
    }

    #[test]
    fn targets_past_the_latest_year_are_refused() {
        let now = at(NOW_UNIX);
        assert_eq!(LATEST_CLOCK, at(7_258_118_400));
        for target in [at(253_402_300_799), at(7_258_118_401)] {
            assert!(matches!(
                check_target(now, target),
                Err(BoundsError::TooLate { .. })
            ));
        }
        assert!(matches!(
            check_target(now, now + Duration::days(3661)),
            Err(BoundsError::StepTooLong { .. })
        ));
        assert_eq!(check_target(now, now + Duration::days(10)), Ok(()));
    }

    #[test]
    fn periods_are_bounded() {
        for bad in [0, MAX_PREPAID_PERIODS + 1, u32::MAX] {
            assert!(check_periods(bad).is_err());
        }
        assert!(check_periods(1).is_ok());
        assert!(check_periods(MAX_PREPAID_PERIODS).is_ok());
    }
}
