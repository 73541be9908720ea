//! Money inside Souk: signed integer minor units (paisa, cents) of one
//! currency, the tax rates per currency, and the three rounding rules an
//! invoice uses. No floating point anywhere: every division is integer
//! division with its rounding stated (see docs/payments.md, "Rounding").
//!
//! - **Tax** is computed once per invoice on its taxable subtotal and
//!   rounded half up to the minor unit (`rate_bps` basis points: 1300 is
//!   13 %), the way a VAT line on a paper invoice is rounded.
//! - **Bundle discounts** are rounded *up* (in the tenant's favour), like
//!   the proration credit of an upgrade.
//! - **Proration** of an upgrade is the subscription's own
//!   ([`crate::billing::subscription::Subscription::quote`]): the credit
//!   rounded up, the prorated charge rounded down.

use std::collections::BTreeMap;

use crate::billing::plans::Currency;

/// The largest amount of minor units an invoice line or total may hold:
/// 10^15 per line (the catalog's price bound) times a few hundred lines
/// stays far below `i64::MAX`, and every sum below is checked anyway.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// An arithmetic result outside [`MAX_AMOUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an amount passed {MAX_AMOUNT} minor units")]
pub struct AmountOverflow;

/// `amount * bps / 10000`, rounded half up (away from zero for a
/// negative amount, so a credit's tax mirrors a charge's).
///
/// # Errors
/// [`AmountOverflow`] past [`MAX_AMOUNT`].
pub fn basis_points_half_up(amount: i64, bps: u32) -> Result<i64, AmountOverflow> {
    let product = i128::from(amount) * i128::from(bps);
    let magnitude = (product.abs() + 5_000) / 10_000;
    let signed = if product < 0 { -magnitude } else { magnitude };
    bounded(signed)
}

/// `amount * bps / 10000`, rounded up towards +infinity for a positive
/// amount (a discount in the tenant's favour). Negative amounts are refused
/// (a discount of a credit makes no sense) as [`AmountOverflow`].
///
/// # Errors
/// [`AmountOverflow`] for a negative amount or past [`MAX_AMOUNT`].
pub fn basis_points_up(amount: i64, bps: u32) -> Result<i64, AmountOverflow> {
    if amount < 0 {
        return Err(AmountOverflow);
    }
    let product = i128::from(amount) * i128::from(bps);
    bounded((product + 9_999) / 10_000)
}

fn bounded(value: i128) -> Result<i64, AmountOverflow> {
    i64::try_from(value)
        .ok()
        .filter(|v| v.abs() <= MAX_AMOUNT)
        .ok_or(AmountOverflow)
}

/// Checked sum of amounts, bounded by [`MAX_AMOUNT`].
///
/// # Errors
/// [`AmountOverflow`] when the sum (or any partial sum) passes the bound.
pub fn sum(amounts: impl IntoIterator<Item = i64>) -> Result<i64, AmountOverflow> {
    let mut total: i64 = 0;
    for amount in amounts {
        total = total
            .checked_add(amount)
            .filter(|t| t.abs() <= MAX_AMOUNT)
            .ok_or(AmountOverflow)?;
    }
    Ok(total)
}

/// The tax charged on invoices in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxRate {
    /// The rate in basis points (1300 = 13 %), at most 10000.
    pub bps: u32,
    /// The invoice line's name, e.g. `VAT`.
    pub label: String,
}

/// Tax rates per currency, from configuration (`--tax-rates`). A currency
/// without a rate is invoiced without a tax line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxRates(BTreeMap<Currency, TaxRate>);

/// The default: Nepal's 13 % VAT on NPR invoices.
pub const DEFAULT_TAX_RATES: &str = "NPR=1300:VAT";

impl TaxRates {
    /// Parses `CUR=BPS[:LABEL],...`, e.g. `NPR=1300:VAT,EUR=2000:VAT`. The
    /// label defaults to `Tax`; an empty text means no taxes at all.
    ///
    /// # Errors
    /// A message naming the entry that is not a currency, a rate of at most
    /// 10000 basis points, or a label of 1 to 40 printable characters; and a
    /// currency listed twice.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rates = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (currency, rest) = entry
                .split_once('=')
                .ok_or_else(|| format!("tax rate {entry:?} is not CUR=BASIS_POINTS[:LABEL]"))?;
            let currency = Currency::parse(currency.trim())?;
            let (bps, label) = match rest.split_once(':') {
                Some((bps, label)) => (bps, label.trim()),
                None => (rest, "Tax"),
            };
            let bps: u32 = bps
                .trim()
                .parse()
                .ok()
                .filter(|b| *b <= 10_000)
                .ok_or_else(|| {
                    format!("tax rate of {currency}: {bps:?} is not 0 to 10000 basis points")
                })?;
            if label.is_empty() || label.chars().count() > 40 || label.chars().any(char::is_control)
            {
                return Err(format!(
                    "tax rate of {currency}: the label must be 1 to 40 printable characters"
                ));
            }
            let rate = TaxRate {
                bps,
                label: label.to_owned(),
            };
            if rates.insert(currency, rate).is_some() {
                return Err(format!("tax rate of {currency} is given twice"));
            }
        }
        Ok(TaxRates(rates))
    }

    /// The rate charged in `currency`, if any.
    pub fn rate(&self, currency: Currency) -> Option<&TaxRate> {
        self.0.get(&currency)
    }
}

impl Default for TaxRates {
    fn default() -> Self {
        TaxRates::parse(DEFAULT_TAX_RATES).unwrap_or(TaxRates(BTreeMap::new()))
    }
}

/// `amount` minor units as decimal text with exactly `digits` fraction
/// digits (`-1234`, 2 → `-12.34`): what invoices print.
pub fn format_minor(amount: i64, digits: u32) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let magnitude = amount.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{magnitude}");
    }
    let unit = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$}",
        magnitude / unit,
        magnitude % unit,
        width = digits as usize
    )
}

/// How many fraction digits `currency` has (ISO 4217 exponent) for the
/// currencies Souk is sold in; every other currency is taken to have 2.
pub fn minor_digits(currency: Currency) -> u32 {
    match currency.as_str() {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "UGX" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tax_rounds_half_up_and_mirrors_for_credits() {
        // 13 % of 182.79 = 23.7627 -> 23.76
        assert_eq!(basis_points_half_up(18_279, 1300), Ok(2376));
        // 13 % of 0.50 = 0.065 -> 0.07 (half up)
        assert_eq!(basis_points_half_up(50, 1300), Ok(7));
        // 13 % of 0.11 = 0.0143 -> 0.01
        assert_eq!(basis_points_half_up(11, 1300), Ok(1));
        assert_eq!(basis_points_half_up(-50, 1300), Ok(-7));
        assert_eq!(basis_points_half_up(0, 1300), Ok(0));
        assert_eq!(basis_points_half_up(MAX_AMOUNT, 10_000), Ok(MAX_AMOUNT));
        assert_eq!(basis_points_half_up(i64::MAX, 10_000), Err(AmountOverflow));
    }

    #[test]
    fn discounts_round_up_in_the_tenants_favour() {
        // 15 % of 499.00 + 1499.00 = 299.70 exactly
        assert_eq!(basis_points_up(199_800, 1500), Ok(29_970));
        // 15 % of 333.33 = 49.9995 -> 50.00
        assert_eq!(basis_points_up(33_333, 1500), Ok(5_000));
        assert_eq!(basis_points_up(1, 1), Ok(1));
        assert_eq!(basis_points_up(0, 1500), Ok(0));
        assert_eq!(basis_points_up(-1, 1500), Err(AmountOverflow));
    }

    #[test]
    fn sums_are_checked() {
        assert_eq!(sum([1, 2, -3]), Ok(0));
        assert_eq!(sum([MAX_AMOUNT, 1]), Err(AmountOverflow));
        assert_eq!(sum([i64::MAX, i64::MAX]), Err(AmountOverflow));
    }

    #[test]
    fn tax_rates_parse_and_refuse_nonsense() {
        let rates = TaxRates::parse("NPR=1300:VAT, EUR=2000").unwrap();
        let npr = Currency::parse("NPR").unwrap();
        assert_eq!(rates.rate(npr).unwrap().bps, 1300);
        assert_eq!(rates.rate(npr).unwrap().label, "VAT");
        assert_eq!(
            rates.rate(Currency::parse("EUR").unwrap()).unwrap().label,
            "Tax"
        );
        assert!(rates.rate(Currency::parse("USD").unwrap()).is_none());
        assert_eq!(TaxRates::default().rate(npr).unwrap().bps, 1300);
        assert!(TaxRates::parse("").unwrap().rate(npr).is_none());
        for bad in [
            "NPR",
            "npr=1300",
            "NPR=10001",
            "NPR=-1",
            "NPR=13%",
            "NPR=1,NPR=2",
            "NPR=1:",
        ] {
            assert!(TaxRates::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn minor_units_print_with_the_currencys_digits() {
        assert_eq!(format_minor(33_333, 2), "333.33");
        assert_eq!(format_minor(-5, 2), "-0.05");
        assert_eq!(format_minor(100_000, 2), "1000.00");
        assert_eq!(format_minor(7, 0), "7");
        assert_eq!(format_minor(1_234, 3), "1.234");
        assert_eq!(minor_digits(Currency::parse("NPR").unwrap()), 2);
        assert_eq!(minor_digits(Currency::parse("JPY").unwrap()), 0);
    }
}
