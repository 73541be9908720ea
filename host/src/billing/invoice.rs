//! An invoice's content: what was bought ([`Purchase`]), its lines, the tax
//! line, and the totals, which are always the sum of the lines. Pure: the
//! numbering and storage are in `crate::payments::store`.

use serde::{Deserialize, Serialize};

use super::money::{self, AmountOverflow, TaxRates};
use crate::billing::plans::Currency;

/// What kind of line an invoice carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// A plan for a period (or its prorated rest).
    Plan,
    /// The credit for the unused part of the plan an upgrade replaces
    /// (negative).
    ProrationCredit,
    /// A bundle's discount on the sum of its plans (negative).
    BundleDiscount,
    /// The tax on the taxable subtotal (e.g. 13 % VAT on NPR invoices).
    Tax,
}

impl LineKind {
    /// The stable name stored and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Plan => "plan",
            LineKind::ProrationCredit => "proration_credit",
            LineKind::BundleDiscount => "bundle_discount",
            LineKind::Tax => "tax",
        }
    }

    /// The inverse of [`LineKind::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "plan" => LineKind::Plan,
            "proration_credit" => LineKind::ProrationCredit,
            "bundle_discount" => LineKind::BundleDiscount,
            "tax" => LineKind::Tax,
            _ => return None,
        })
    }
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// What the line is.
    pub kind: LineKind,
    /// What a person reads, e.g. `Digital Card — Pro, 2026-01-01 to 2026-02-01`.
    pub description: String,
    /// The module the line is about (none for tax and bundle discounts).
    pub module: Option<String>,
    /// The plan the line is about.
    pub plan: Option<String>,
    /// Signed minor units: credits and discounts are negative.
    pub amount: i64,
}

/// Which way paying an invoice moves each subscription it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseKind {
    /// A paid plan's period: a new subscription, a trial converting, a
    /// resubscription after expiry, or a bundle's plans.
    Subscribe,
    /// The next period of the plan already held (or the overdue one).
    Renew,
    /// An upgrade taking effect now, with proration.
    Upgrade,
}

/// One module at one plan, as bought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseItem {
    /// The module's slug.
    pub module: String,
    /// The plan's slug.
    pub plan: String,
}

/// What paying an invoice grants, stored with the invoice and applied
/// through the subscription state machine once payment is confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    /// How each item moves its subscription.
    pub kind: PurchaseKind,
    /// The bundle bought, if the purchase is one.
    pub bundle: Option<String>,
    /// Every module and plan bought (one unless a bundle).
    pub items: Vec<PurchaseItem>,
}

/// An invoice's money: the sum of its non-tax lines, the tax line, and
/// their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sum of every line but tax.
    pub subtotal: i64,
    /// The tax line (0 when the currency is not taxed).
    pub tax: i64,
    /// `subtotal + tax`: what is paid.
    pub total: i64,
}

/// Why lines cannot make an invoice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// A sum passed the bound on amounts.
    #[error(transparent)]
    Overflow(#[from] AmountOverflow),
    /// The lines add up to nothing (or less): nothing is to be paid.
    #[error("the purchase costs nothing now; no payment is needed")]
    NothingDue,
    /// An invoice needs at least one line.
    #[error("an invoice needs at least one line")]
    NoLines,
    /// Tax lines are added by [`with_tax`] only.
    #[error("tax lines are computed, not given")]
    TaxGiven,
}

/// `lines` followed by the tax line of `currency` (when `rates` has one),
/// and the totals. The tax is computed once, on the subtotal, rounded half
/// up ([`money::basis_points_half_up`]), so the invoice's VAT is exactly
/// 13 % of its taxable amount, not a sum of per-line roundings.
///
/// # Errors
/// [`InvoiceError`]: no lines, a tax line given, a total that is not
/// positive, or a sum out of bounds.
pub fn with_tax(
    mut lines: Vec<Line>,
    currency: Currency,
    rates: &TaxRates,
) -> Result<(Vec<Line>, Totals), InvoiceError> {
    if lines.is_empty() {
        return Err(InvoiceError::NoLines);
    }
    if lines.iter().any(|l| l.kind == LineKind::Tax) {
        return Err(InvoiceError::TaxGiven);
    }
    let subtotal = money::sum(lines.iter().map(|l| l.amount))?;
    if subtotal <= 0 {
        return Err(InvoiceError::NothingDue);
    }
    let tax = match rates.rate(currency) {
        Some(rate) => {
            let tax = money::basis_points_half_up(subtotal, rate.bps)?;
            lines.push(Line {
                kind: LineKind::Tax,
                description: format!("{} {}%", rate.label, percent(rate.bps)),
                module: None,
                plan: None,
                amount: tax,
            });
            tax
        }
        None => 0,
    };
    let total = money::sum(lines.iter().map(|l| l.amount))?;
    Ok((
        lines,
        Totals {
            subtotal,
            tax,
            total,
        },
    ))
}

/// Basis points as a percentage without trailing zeros (1250 -> `12.5`).
fn percent(bps: u32) -> String {
    let text = money::format_minor(i64::from(bps), 2);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The discount line of a bundle of `discount_bps` on `plan_lines`
/// (rounded up, in the tenant's favour), or none for a zero discount.
///
/// # Errors
/// [`InvoiceError::Overflow`] when the sum is out of bounds.
pub fn bundle_discount(
    bundle_name: &str,
    discount_bps: u16,
    plan_lines: &[Line],
) -> Result<Option<Line>, InvoiceError> {
    let sum = money::sum(plan_lines.iter().map(|l| l.amount))?;
    let discount = money::basis_points_up(sum, u32::from(discount_bps))?;
    if discount == 0 {
        return Ok(None);
    }
    Ok(Some(Line {
        kind: LineKind::BundleDiscount,
        description: format!(
            "{bundle_name} bundle discount {}%",
            percent(u32::from(discount_bps))
        ),
        module: None,
        plan: None,
        amount: -discount,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npr() -> Currency {
        Currency::parse("NPR").unwrap()
    }

    fn plan(amount: i64) -> Line {
        Line {
            kind: LineKind::Plan,
            description: "Digital Card — Pro".into(),
            module: Some("digital-card".into()),
            plan: Some("pro".into()),
            amount,
        }
    }

    #[test]
    fn npr_invoices_get_a_13_percent_vat_line_and_totals_are_the_sum_of_lines() {
        let (lines, totals) = with_tax(vec![plan(49_900)], npr(), &TaxRates::default()).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].kind, LineKind::Tax);
        assert_eq!(lines[1].description, "VAT 13%");
        assert_eq!(lines[1].amount, 6_487); // 13 % of 499.00 = 64.87
        assert_eq!(
            totals,
            Totals {
                subtotal: 49_900,
                tax: 6_487,
                total: 56_387
            }
        );
        assert_eq!(lines.iter().map(|l| l.amount).sum::<i64>(), totals.total);
    }

    #[test]
    fn an_untaxed_currency_has_no_tax_line() {
        let usd = Currency::parse("USD").unwrap();
        let (lines, totals) = with_tax(vec![plan(1_999)], usd, &TaxRates::default()).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            totals,
            Totals {
                subtotal: 1_999,
                tax: 0,
                total: 1_999
            }
        );
    }

    #[test]
    fn vat_is_computed_on_the_subtotal_after_credits_and_discounts() {
        // Upgrade with credit: 182.79 charge, 100.01 credit -> 82.78 taxable.
        let credit = Line {
            kind: LineKind::ProrationCredit,
            amount: -10_001,
            ..plan(0)
        };
        let (lines, totals) =
            with_tax(vec![plan(18_279), credit], npr(), &TaxRates::default()).unwrap();
        // 13 % of 82.78 = 10.7614 -> 10.76
        assert_eq!(
            totals,
            Totals {
                subtotal: 8_278,
                tax: 1_076,
                total: 9_354
            }
        );
        assert_eq!(lines.iter().map(|l| l.amount).sum::<i64>(), totals.total);
    }

    #[test]
    fn invoices_that_cost_nothing_or_carry_their_own_tax_are_refused() {
        let rates = TaxRates::default();
        assert_eq!(with_tax(vec![], npr(), &rates), Err(InvoiceError::NoLines));
        let credit = Line {
            amount: -100,
            ..plan(0)
        };
        assert_eq!(
            with_tax(vec![plan(100), credit], npr(), &rates),
            Err(InvoiceError::NothingDue)
        );
        let tax = Line {
            kind: LineKind::Tax,
            ..plan(1)
        };
        assert_eq!(
            with_tax(vec![plan(100), tax], npr(), &rates),
            Err(InvoiceError::TaxGiven)
        );
        assert!(matches!(
            with_tax(vec![plan(money::MAX_AMOUNT), plan(1)], npr(), &rates),
            Err(InvoiceError::Overflow(_))
        ));
    }

    #[test]
    fn a_bundle_discount_is_rounded_up_and_taxed_after() {
        // Digital Card pro 499.00 + Forum premium 399.00, 15 % off:
        // 898.00 * 0.15 = 134.70.
        let plans = vec![plan(49_900), plan(39_900)];
        let discount = bundle_discount("Starter", 1500, &plans).unwrap().unwrap();
        assert_eq!(discount.amount, -13_470);
        assert_eq!(discount.description, "Starter bundle discount 15%");
        // 333.33 at 12.5 %: 41.66625 -> 41.67 (up).
        let odd = bundle_discount("Odd", 1250, &[plan(33_333)])
            .unwrap()
            .unwrap();
        assert_eq!(odd.amount, -4_167);
        assert_eq!(odd.description, "Odd bundle discount 12.5%");
        assert_eq!(bundle_discount("None", 0, &plans).unwrap(), None);
        let mut lines = plans;
        lines.push(discount);
        let (_, totals) = with_tax(lines, npr(), &TaxRates::default()).unwrap();
        // 763.30 + 13 % (99.229 -> 99.23) = 862.53
        assert_eq!(
            totals,
            Totals {
                subtotal: 76_330,
                tax: 9_923,
                total: 86_253
            }
        );
    }

    #[test]
    fn line_kinds_round_trip_their_names() {
        for kind in [
            LineKind::Plan,
            LineKind::ProrationCredit,
            LineKind::BundleDiscount,
            LineKind::Tax,
        ] {
            assert_eq!(LineKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(LineKind::parse("gift"), None);
    }
}
