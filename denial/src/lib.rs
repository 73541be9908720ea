//! What a refusal by a tenant's plan is, defined once for the host and the
//! module SDK so that the two cannot drift apart: the reason codes both sides
//! write (API 0.2.0 fixes six), the fields a denial carries, the sentence that
//! describes it, the members of its problem document, and the rule choosing
//! `402 Payment Required` or `403 Forbidden`.
//!
//! The host's route gate and entitlement checks answer a [`Denial`]; so does
//! a module's own check through the SDK. Either way the tenant sees the same
//! problem document: `type` [`PROBLEM_TYPE`], `title` [`PROBLEM_TITLE`],
//! `status` [`Denial::status`], `detail` the denial's [`Display`](fmt::Display)
//! sentence, and the extension members [`Denial::members`].
//!
//! The crate has no dependencies (it is built natively for the host and for
//! `wasm32-wasip2` for guests); each side turns [`Member`]s into its own JSON.

use std::fmt;

/// Expands to the last segment of the problem `type` of a denial, so that the
/// segment and the full URI are one literal.
macro_rules! problem_kind {
    () => {
        "entitlement-denied"
    };
}

/// The last path segment of [`PROBLEM_TYPE`], for problem builders that add
/// the `https://souk.dev/problems/` base themselves (the host's API).
pub const PROBLEM_KIND: &str = problem_kind!();

/// The problem `type` URI of every refusal by a tenant's plan.
pub const PROBLEM_TYPE: &str = concat!("https://souk.dev/problems/", problem_kind!());

/// The problem `title` of every refusal by a tenant's plan.
pub const PROBLEM_TITLE: &str = "Not included in your plan";

/// Why the plan refused a check. Module API 0.2.0 fixes these six codes
/// ([`DenialReason::code`]); a new reason is a new API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialReason {
    /// The tenant has no subscription to the module (or the call runs
    /// without one, as lifecycle hooks do).
    NoSubscription,
    /// The plan does not include the feature, limit or meter.
    FeatureNotInPlan,
    /// The request would take usage past the limit or the period's
    /// allowance.
    LimitReached,
    /// The trial ended without payment.
    TrialEnded,
    /// A renewal failed and the grace period is over.
    PastDue,
    /// The subscription ended.
    Expired,
}

impl DenialReason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::NoSubscription,
        Self::FeatureNotInPlan,
        Self::LimitReached,
        Self::TrialEnded,
        Self::PastDue,
        Self::Expired,
    ];

    /// Reads a stable code (`limit_reached`); `None` for a code API 0.2.0
    /// does not define.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.code() == code)
    }

    /// The stable snake_case code, e.g. `limit_reached`: what the host hands
    /// a module over WIT and what the `reason` member of a problem says.
    pub fn code(self) -> &'static str {
        match self {
            Self::NoSubscription => "no_subscription",
            Self::FeatureNotInPlan => "feature_not_in_plan",
            Self::LimitReached => "limit_reached",
            Self::TrialEnded => "trial_ended",
            Self::PastDue => "past_due",
            Self::Expired => "expired",
        }
    }

    /// Whether paying (subscribing, renewing, settling a failed payment)
    /// would lift the refusal: the subscription itself is missing or not in
    /// good standing, whatever key was asked about.
    pub fn is_payment_required(self) -> bool {
        matches!(
            self,
            Self::NoSubscription | Self::TrialEnded | Self::PastDue | Self::Expired
        )
    }
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A check the tenant's plan refused: why, for which key, and what would
/// allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Why the check was refused.
    pub reason: DenialReason,
    /// The feature, limit or meter key asked about (the module's slug for
    /// the host's check of access to the whole module).
    pub key: String,
    /// The tenant's current plan, if any.
    pub plan: Option<String>,
    /// The plan that would allow the request, if one does. The host sets it:
    /// for a reason that [requires payment](DenialReason::is_payment_required)
    /// the current plan when it grants the key (pay to restore it), otherwise
    /// the cheapest plan the catalog names as the upgrade for the key.
    pub upgrade_plan: Option<String>,
    /// For limits and meters: usage at the time of the check, in the key's
    /// own units.
    pub used: Option<u64>,
    /// For limits and meters: the limit or the period's allowance, in the
    /// key's own units.
    pub limit: Option<u64>,
}

impl Denial {
    /// A denial of `key` with only a reason (no plan, no usage).
    pub fn new(reason: DenialReason, key: impl Into<String>) -> Self {
        Self {
            reason,
            key: key.into(),
            plan: None,
            upgrade_plan: None,
            used: None,
            limit: None,
        }
    }

    /// The denial of `key` to a tenant without a subscription (or to a call
    /// made outside one): no plan, nothing to upgrade from.
    pub fn no_subscription(key: impl Into<String>) -> Self {
        Self::new(DenialReason::NoSubscription, key)
    }

    /// Whether paying would lift the refusal: an upgrade plan is named, or
    /// the subscription is missing, ended or unpaid.
    pub fn is_payable(&self) -> bool {
        self.upgrade_plan.is_some() || self.reason.is_payment_required()
    }

    /// The HTTP status of the refusal: `402 Payment Required` when it
    /// [is payable](Denial::is_payable), `403 Forbidden` otherwise.
    pub fn status(&self) -> u16 {
        if self.is_payable() { 402 } else { 403 }
    }

    /// A sentence naming the key, the reason code, the usage and the plan
    /// that would allow it, e.g.
    /// ``"`max_cards` denied: limit_reached (3 of 3 used); plan `pro` allows it"``:
    /// the problem document's `detail`. The same as the `Display` output.
    pub fn detail(&self) -> String {
        self.to_string()
    }

    /// The extension members of the refusal's problem document (RFC 9457
    /// section 3.2), by name, in the order both sides write them: `feature`
    /// (the key), `reason` (its code), `plan`, `upgrade_plan`, `used` and
    /// `limit`. An absent value is a JSON `null`, never a missing member.
    pub fn members(&self) -> [(&'static str, Member<'_>); 6] {
        [
            ("feature", Member::Text(&self.key)),
            ("reason", Member::Text(self.reason.code())),
            ("plan", Member::OptionalText(self.plan.as_deref())),
            (
                "upgrade_plan",
                Member::OptionalText(self.upgrade_plan.as_deref()),
            ),
            ("used", Member::OptionalCount(self.used)),
            ("limit", Member::OptionalCount(self.limit)),
        ]
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` denied: {}", self.key, self.reason.code())?;
        if let (Some(used), Some(limit)) = (self.used, self.limit) {
            write!(f, " ({used} of {limit} used)")?;
        }
        if let Some(plan) = &self.upgrade_plan {
            write!(f, "; plan `{plan}` allows it")?;
        }
        Ok(())
    }
}

impl std::error::Error for Denial {}

/// The value of one extension member of a denial's problem document, for the
/// caller to write as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member<'a> {
    /// A JSON string.
    Text(&'a str),
    /// A JSON string, or `null` for `None`.
    OptionalText(Option<&'a str>),
    /// A JSON number, or `null` for `None`.
    OptionalCount(Option<u64>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_problem_type_is_the_kind_under_the_problems_base() {
        assert_eq!(PROBLEM_TYPE, "https://souk.dev/problems/entitlement-denied");
        assert!(PROBLEM_TYPE.ends_with(PROBLEM_KIND));
    }

    #[test]
    fn every_code_reads_back_as_its_reason() {
        let codes: Vec<&str> = DenialReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(
            codes,
            [
                "no_subscription",
                "feature_not_in_plan",
                "limit_reached",
                "trial_ended",
                "past_due",
                "expired"
            ]
        );
        for reason in DenialReason::ALL {
            assert_eq!(DenialReason::from_code(reason.code()), Some(reason));
        }
        assert_eq!(DenialReason::from_code("something_new"), None);
    }

    #[test]
    fn a_named_upgrade_or_a_lapsed_subscription_is_402_and_anything_else_403() {
        for reason in DenialReason::ALL {
            let bare = Denial::new(reason, "k");
            let expected = if reason.is_payment_required() {
                402
            } else {
                403
            };
            assert_eq!(bare.status(), expected, "{reason}");
            let upgradable = Denial {
                upgrade_plan: Some("pro".into()),
                ..bare
            };
            assert_eq!(upgradable.status(), 402, "{reason}");
        }
    }

    #[test]
    fn the_sentence_names_usage_and_upgrade_only_when_known() {
        let denial = Denial {
            plan: Some("free".into()),
            upgrade_plan: Some("pro".into()),
            used: Some(3),
            limit: Some(3),
            ..Denial::new(DenialReason::LimitReached, "max_cards")
        };
        assert_eq!(
            denial.to_string(),
            "`max_cards` denied: limit_reached (3 of 3 used); plan `pro` allows it"
        );
        assert_eq!(denial.detail(), denial.to_string());
        assert_eq!(
            Denial::no_subscription("m").to_string(),
            "`m` denied: no_subscription"
        );
    }

    #[test]
    fn members_name_every_field_and_keep_absent_ones() {
        let denial = Denial {
            plan: Some("free".into()),
            ..Denial::new(DenialReason::FeatureNotInPlan, "white_label")
        };
        assert_eq!(
            denial.members(),
            [
                ("feature", Member::Text("white_label")),
                ("reason", Member::Text("feature_not_in_plan")),
                ("plan", Member::OptionalText(Some("free"))),
                ("upgrade_plan", Member::OptionalText(None)),
                ("used", Member::OptionalCount(None)),
                ("limit", Member::OptionalCount(None)),
            ]
        );
    }
}
