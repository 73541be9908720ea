//! What the tenant's subscription allows: features, count limits and metered
//! allowances, answered by the host from memory (no database round trip).
//!
//! A module declares what it can gate in [`crate::Module::gates`]; the
//! operator's plans decide what each tenant gets. The host already refuses
//! requests to routes whose manifest entry names a `feature`, `limit` or
//! `meter`; this module is for the checks a route makes itself:
//!
//! ```
//! use souk_sdk::{Request, Response, entitlements};
//!
//! fn create_card(request: &Request) -> Response {
//!     // Takes one unit of `max_cards`, or refuses with the plan's answer.
//!     let usage = match entitlements::consume("max_cards", 1) {
//!         Ok(usage) => usage,
//!         Err(error) => return error.into(),
//!     };
//!     Response::json(201, &usage)
//! }
//! # let _ = create_card;
//! ```
//!
//! A refusal is a [`Denial`]; turned into a [`Response`] (with `into()` or
//! [`crate::IntoResponse`]) it is the very problem document the host sends
//! when it refuses a route itself, so a tenant sees one format either way:
//! the reasons, the fields, the sentence and the 402-or-403 rule are defined
//! once for both, in [`souk_denial`].
//!
//! # Count limits and meters
//! - A **count limit** (`max_cards`) is a standing quantity: [`consume`] takes
//!   units when something is created, [`release`] gives them back when it is
//!   deleted. Usage never goes past the limit, even under concurrent calls.
//! - A **meter** (`qr_scans_per_month`) counts events per period:
//!   [`record_usage`] adds to this period's sum and is refused once the
//!   period's allowance would be exceeded.
//!
//! Retried requests should pass an idempotency key ([`consume_once`],
//! [`release_once`], [`record_usage`]): the same key twice counts once.
//!
//! # Native builds
//! Outside a wasm32 component there is no subscription to ask: the checks,
//! [`consume`] and [`record_usage`] refuse with
//! [`DenialReason::NoSubscription`], [`has_feature`] is `false`, [`usage`] is
//! `None` and [`release`] answers [`EntitlementError::UnknownKey`] — the same
//! answers the host gives a call that runs without a subscription (lifecycle
//! hooks).

use serde::Serialize;
use serde_json::Value;
use souk_denial::Member;
/// The refusal and its reasons, defined once for host and SDK
/// ([`souk_denial`]), so the SDK's denials answer exactly what the host's
/// route gate answers.
pub use souk_denial::{Denial, DenialReason};

use crate::http::{IntoResponse, Problem, Response};
use crate::runtime;

/// The problem `type` of a refusal by the tenant's plan, shared with the
/// host's own route gate.
pub const DENIAL_PROBLEM_TYPE: &str = souk_denial::PROBLEM_TYPE;

/// The problem `title` of a refusal by the tenant's plan.
pub const DENIAL_PROBLEM_TITLE: &str = souk_denial::PROBLEM_TITLE;

/// The refusal as an RFC 9457 problem document: status
/// [`Denial::status`], detail the denial's sentence, and the denial's fields
/// as extension members ([`Denial::members`]: `feature`, `reason`, `plan`,
/// `upgrade_plan`, `used`, `limit`).
impl From<&Denial> for Problem {
    fn from(denial: &Denial) -> Self {
        denial.members().into_iter().fold(
            Problem::new(denial.status(), DENIAL_PROBLEM_TYPE, DENIAL_PROBLEM_TITLE)
                .with_detail(denial.detail()),
            |problem, (name, member)| problem.with_extension(name, json_of(member)),
        )
    }
}

fn json_of(member: Member<'_>) -> Value {
    match member {
        Member::Text(text) => text.into(),
        Member::OptionalText(text) => text.into(),
        Member::OptionalCount(count) => count.into(),
    }
}

/// See `From<&Denial> for Problem`.
impl From<Denial> for Problem {
    fn from(denial: Denial) -> Self {
        Problem::from(&denial)
    }
}

/// The refusal as the host's route gate answers it: see
/// `From<&Denial> for Problem` and [`Denial::status`].
impl From<Denial> for Response {
    fn from(denial: Denial) -> Self {
        Response::problem(&Problem::from(&denial))
    }
}

impl IntoResponse for Denial {
    fn into_response(self) -> Response {
        self.into()
    }
}

/// The usage of a count limit or a meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Usage {
    /// Units in use (count limit) or used this period (meter).
    pub used: u64,
    /// The limit or the period's allowance; `None` means unlimited.
    pub limit: Option<u64>,
}

impl Usage {
    /// Units still available; `None` means unlimited.
    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|limit| limit.saturating_sub(self.used))
    }
}

/// Why [`consume`], [`release`] or [`record_usage`] did not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntitlementError {
    /// The tenant's plan refused.
    #[error("{0}")]
    Denied(Denial),
    /// The key is not a count limit or meter the module declared: a bug in
    /// the module, not a caller error.
    #[error("unknown entitlement key: {0}")]
    UnknownKey(String),
}

/// A denial is the plan's answer (`From<&Denial> for Problem`); an unknown
/// key is the module's failure (500).
impl From<EntitlementError> for Problem {
    fn from(error: EntitlementError) -> Self {
        match error {
            EntitlementError::Denied(denial) => Problem::from(&denial),
            EntitlementError::UnknownKey(_) => Problem::internal(error.to_string()),
        }
    }
}

/// See `From<EntitlementError> for Problem`.
impl From<EntitlementError> for Response {
    fn from(error: EntitlementError) -> Self {
        Response::problem(&Problem::from(error))
    }
}

impl IntoResponse for EntitlementError {
    fn into_response(self) -> Response {
        self.into()
    }
}

/// Whether the plan includes the feature `key`.
///
/// # Errors
/// The [`Denial`] when it does not (or the subscription gives no access).
pub fn check_feature(key: &str) -> Result<(), Denial> {
    runtime::check_feature(key)
}

/// `true` when the plan includes the feature `key`.
pub fn has_feature(key: &str) -> bool {
    check_feature(key).is_ok()
}

/// Whether `quantity` more units of the count limit or meter `key` fit,
/// without taking them.
///
/// # Errors
/// The [`Denial`] when they do not.
pub fn check_limit(key: &str, quantity: u64) -> Result<(), Denial> {
    runtime::check_limit(key, quantity)
}

/// The current usage and limit of the count limit or meter `key`; `None`
/// when the plan has no such key.
pub fn usage(key: &str) -> Option<Usage> {
    runtime::usage(key)
}

/// Takes `quantity` units of the count limit `key`, all or none.
///
/// # Errors
/// [`EntitlementError::Denied`] when they do not fit the plan;
/// [`EntitlementError::UnknownKey`] when `key` is not a declared count limit.
pub fn consume(key: &str, quantity: u64) -> Result<Usage, EntitlementError> {
    runtime::consume(key, quantity, None).map(|t| t.usage)
}

/// Like [`consume`], but a second call with the same `idempotency_key`
/// counts nothing and answers the current usage (for retried requests).
///
/// # Errors
/// As [`consume`].
pub fn consume_once(
    key: &str,
    quantity: u64,
    idempotency_key: &str,
) -> Result<Usage, EntitlementError> {
    runtime::consume(key, quantity, Some(idempotency_key)).map(|t| t.usage)
}

/// Gives `quantity` units of the count limit `key` back (usage never goes
/// below zero). Allowed whatever state the subscription is in.
///
/// # Errors
/// [`EntitlementError::UnknownKey`] when `key` is not a declared count limit.
pub fn release(key: &str, quantity: u64) -> Result<Usage, EntitlementError> {
    runtime::release(key, quantity, None).map(|t| t.usage)
}

/// Like [`release`], but a second call with the same `idempotency_key`
/// gives nothing back.
///
/// # Errors
/// As [`release`].
pub fn release_once(
    key: &str,
    quantity: u64,
    idempotency_key: &str,
) -> Result<Usage, EntitlementError> {
    runtime::release(key, quantity, Some(idempotency_key)).map(|t| t.usage)
}

/// Records `amount` units of the meter `meter` for this period; an event
/// with an `idempotency_key` already counted this period counts nothing.
///
/// # Errors
/// [`EntitlementError::Denied`] (reason [`DenialReason::LimitReached`])
/// when the period's allowance would be exceeded;
/// [`EntitlementError::UnknownKey`] when `meter` is not a declared meter.
pub fn record_usage(
    meter: &str,
    amount: u64,
    idempotency_key: &str,
) -> Result<Usage, EntitlementError> {
    runtime::record_usage(meter, amount, idempotency_key).map(|t| t.usage)
}

/// Sets the count limit `key` to `used` units: the number of things the
/// module already holds, in an `install` or `upgrade` hook that starts
/// counting rows made before it counted them (API 0.3.0). The count is
/// recorded as it is, even above the plan's limit: nothing the tenant has
/// is lost, and [`consume`] is refused until usage falls below the limit
/// again. Rolled back with the hook if the hook fails.
///
/// ```no_run
/// use souk_sdk::{HookError, db, entitlements, params};
///
/// fn upgrade(_from: &str) -> Result<(), HookError> {
///     let (members,): (i64,) = db::query_one("SELECT COUNT(*) FROM members", params![])?;
///     entitlements::seed_usage("max_members", u64::try_from(members).unwrap_or(0))
///         .map_err(|e| HookError::new(e.to_string()))?;
///     Ok(())
/// }
/// # let _ = upgrade;
/// ```
///
/// # Errors
/// [`EntitlementError::UnknownKey`] outside the `install` and `upgrade`
/// hooks, for a key that is not a `kind: count` limit the module
/// declares, or in a module built for API 0.2.0.
pub fn seed_usage(key: &str, used: u64) -> Result<Usage, EntitlementError> {
    runtime::seed_usage(key, used)
}

/// What an idempotent count did: the usage after it, and whether its
/// idempotency key had been counted already (a replay: nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Counted {
    /// Usage after the call.
    pub usage: Usage,
    /// True when the key had been counted already.
    pub replay: bool,
}

fn with_replay(tally: runtime::Tally, key: &str) -> Result<Counted, EntitlementError> {
    match tally.replay {
        Some(replay) => Ok(Counted {
            usage: tally.usage,
            replay,
        }),
        None => Err(EntitlementError::UnknownKey(format!(
            "`{key}`: whether a count was a replay needs module API 0.3.0 (this module is built for 0.2.0)"
        ))),
    }
}

/// Like [`consume_once`], and says whether the key was a replay (API
/// 0.3.0): a retried request learns that its first attempt counted.
///
/// # Errors
/// As [`consume`]; [`EntitlementError::UnknownKey`] in a module built for
/// API 0.2.0, whose host does not say.
pub fn consume_once_counted(
    key: &str,
    quantity: u64,
    idempotency_key: &str,
) -> Result<Counted, EntitlementError> {
    with_replay(runtime::consume(key, quantity, Some(idempotency_key))?, key)
}

/// Like [`release_once`], and says whether the key was a replay (API
/// 0.3.0).
///
/// # Errors
/// As [`consume_once_counted`].
pub fn release_once_counted(
    key: &str,
    quantity: u64,
    idempotency_key: &str,
) -> Result<Counted, EntitlementError> {
    with_replay(runtime::release(key, quantity, Some(idempotency_key))?, key)
}

/// Like [`record_usage`], and says whether the key was a replay (API
/// 0.3.0): an event already recorded this period counts nothing again.
///
/// # Errors
/// As [`consume_once_counted`].
pub fn record_usage_counted(
    meter: &str,
    amount: u64,
    idempotency_key: &str,
) -> Result<Counted, EntitlementError> {
    with_replay(
        runtime::record_usage(meter, amount, idempotency_key)?,
        meter,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response) -> serde_json::Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[test]
    fn a_limit_denial_with_an_upgrade_is_a_402_problem() {
        let denial = Denial {
            reason: DenialReason::LimitReached,
            key: "max_cards".into(),
            plan: Some("free".into()),
            upgrade_plan: Some("pro".into()),
            used: Some(3),
            limit: Some(3),
        };
        let response = Response::from(denial);
        assert_eq!(response.status(), 402);
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(
            body(&response),
            serde_json::json!({
                "type": "https://souk.dev/problems/entitlement-denied",
                "title": "Not included in your plan",
                "status": 402,
                "detail": "`max_cards` denied: limit_reached (3 of 3 used); plan `pro` allows it",
                "feature": "max_cards",
                "reason": "limit_reached",
                "plan": "free",
                "upgrade_plan": "pro",
                "used": 3,
                "limit": 3,
            })
        );
    }

    #[test]
    fn a_feature_denial_without_an_upgrade_is_a_403_with_nulls() {
        let denial = Denial {
            plan: Some("free".into()),
            ..Denial::new(DenialReason::FeatureNotInPlan, "white_label")
        };
        let response = denial.into_response();
        assert_eq!(response.status(), 403);
        let body = body(&response);
        assert_eq!(body["status"], 403);
        assert_eq!(body["reason"], "feature_not_in_plan");
        assert_eq!(body["feature"], "white_label");
        assert_eq!(body["plan"], "free");
        assert!(body["upgrade_plan"].is_null());
        assert!(body["used"].is_null());
        assert!(body["limit"].is_null());
        assert_eq!(body["detail"], "`white_label` denied: feature_not_in_plan");
    }

    #[test]
    fn access_state_denials_are_402_even_without_an_upgrade() {
        for reason in [
            DenialReason::NoSubscription,
            DenialReason::TrialEnded,
            DenialReason::PastDue,
            DenialReason::Expired,
        ] {
            assert_eq!(Denial::new(reason, "k").status(), 402, "{reason}");
        }
        assert_eq!(Denial::new(DenialReason::LimitReached, "k").status(), 403);
        assert_eq!(
            Denial::new(DenialReason::FeatureNotInPlan, "k").status(),
            403
        );
    }

    #[test]
    fn reason_codes_round_trip() {
        for code in [
            "no_subscription",
            "feature_not_in_plan",
            "limit_reached",
            "trial_ended",
            "past_due",
            "expired",
        ] {
            assert_eq!(
                DenialReason::from_code(code).map(DenialReason::code),
                Some(code)
            );
        }
        assert_eq!(DenialReason::from_code("something_new"), None);
    }

    #[test]
    fn an_unknown_key_is_the_module_s_failure() {
        let response = Response::from(EntitlementError::UnknownKey("no limit `x`".into()));
        assert_eq!(response.status(), 500);
        let denied = EntitlementError::Denied(Denial::new(DenialReason::Expired, "k"));
        assert_eq!(Problem::from(denied).status(), 402);
    }

    #[test]
    fn usage_reports_what_remains() {
        let usage = Usage {
            used: 2,
            limit: Some(5),
        };
        assert_eq!(usage.remaining(), Some(3));
        assert_eq!(
            Usage {
                used: 7,
                limit: None
            }
            .remaining(),
            None
        );
        assert_eq!(
            serde_json::to_value(usage).unwrap(),
            serde_json::json!({"used": 2, "limit": 5})
        );
    }

    #[test]
    fn natively_there_is_no_subscription() {
        let denial = check_feature("card_creation").unwrap_err();
        assert_eq!(denial.reason, DenialReason::NoSubscription);
        assert_eq!(denial.key, "card_creation");
        assert!(!has_feature("card_creation"));
        assert_eq!(
            check_limit("max_cards", 1).unwrap_err().reason,
            DenialReason::NoSubscription
        );
        assert_eq!(usage("max_cards"), None);
        assert!(matches!(
            consume("max_cards", 1),
            Err(EntitlementError::Denied(d)) if d.reason == DenialReason::NoSubscription
        ));
        assert!(matches!(
            consume_once("max_cards", 1, "k"),
            Err(EntitlementError::Denied(_))
        ));
        assert!(matches!(
            record_usage("qr_scans_per_month", 1, "scan-1"),
            Err(EntitlementError::Denied(d)) if d.key == "qr_scans_per_month"
        ));
        assert!(matches!(
            release("max_cards", 1),
            Err(EntitlementError::UnknownKey(_))
        ));
        assert!(matches!(
            release_once("max_cards", 1, "k"),
            Err(EntitlementError::UnknownKey(_))
        ));
        assert!(matches!(
            seed_usage("max_cards", 3),
            Err(EntitlementError::UnknownKey(_))
        ));
    }
}
