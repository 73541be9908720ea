//! The `entitlements` interface of API 0.2.0, implemented over an
//! [`EntitlementsView`]. The answers come from the call's
//! [`CallEntitlements`] (process memory); count limits and meters are
//! recorded through the call's database handle.
//!
//! A call without a subscription context (the view's entitlements are
//! `None`, as for lifecycle hooks) is refused everything: the checks,
//! `consume` and `record-usage` answer a `no_subscription` denial, `usage`
//! answers none and `release` an unknown key.

use super::EntitlementsView;
use super::call::{CallEntitlements, CallUsageError};
use crate::capabilities::db::ModuleDb;
use crate::entitlements::{Decision, Denial, Usage};
use crate::wit::v0_2_0::souk::module::entitlements as wit;

fn denial_to_wit(denial: Denial) -> wit::Denial {
    wit::Denial {
        reason: denial.reason.code().to_owned(),
        key: denial.key,
        plan: denial.plan,
        upgrade_plan: denial.upgrade_plan,
        used: denial.used,
        limit: denial.limit,
    }
}

fn usage_to_wit(usage: Usage) -> wit::Usage {
    wit::Usage {
        used: usage.used,
        limit: usage.limit,
    }
}

fn no_subscription(key: &str) -> wit::Denial {
    denial_to_wit(Denial::no_subscription(key))
}

#[expect(
    clippy::result_large_err,
    reason = "the generated WIT result, handed to the guest as it is"
)]
fn decision_to_wit(decision: Decision) -> Result<(), wit::Denial> {
    match decision {
        Decision::Allowed => Ok(()),
        Decision::Denied(denial) => Err(denial_to_wit(denial)),
    }
}

/// Maps a counting outcome to the guest's result; a host failure traps the
/// call (its transaction is rolled back, nothing is half counted).
fn counted(result: Result<Usage, CallUsageError>) -> Counted {
    match result {
        Ok(usage) => Ok(Ok(usage_to_wit(usage))),
        Err(CallUsageError::Denied(denial)) => {
            Ok(Err(wit::UsageError::Denied(denial_to_wit(denial))))
        }
        Err(CallUsageError::UnknownKey(message)) => Ok(Err(wit::UsageError::UnknownKey(message))),
        // API 0.2.0 has no variant for a quantity out of range or a bad
        // idempotency key; its only error carrying a message says what was
        // wrong.
        Err(CallUsageError::OutOfRange(message) | CallUsageError::InvalidKey(message)) => {
            Ok(Err(wit::UsageError::UnknownKey(message)))
        }
        Err(CallUsageError::Host(error)) => Err(wasmtime::Error::msg(format!(
            "entitlements: usage not recorded: {error:#}"
        ))),
    }
}

/// The refusal of `consume` and `record-usage` in a call without a
/// subscription context.
fn refused(key: &str) -> wit::UsageError {
    wit::UsageError::Denied(no_subscription(key))
}

/// The result type of the counting functions.
type Counted = wasmtime::Result<Result<wit::Usage, wit::UsageError>>;

impl EntitlementsView<'_> {
    /// Runs `count` with the call's entitlements and database handle, or
    /// answers `without_subscription` when the call has no subscription
    /// context.
    async fn count(
        &mut self,
        without_subscription: impl FnOnce() -> wit::UsageError,
        count: impl AsyncFnOnce(&mut CallEntitlements, &mut ModuleDb) -> Result<Usage, CallUsageError>,
    ) -> Counted {
        match self.entitlements.as_mut() {
            Some(entitlements) => counted(count(entitlements, self.db).await),
            None => Ok(Err(without_subscription())),
        }
    }
}

impl wit::Host for EntitlementsView<'_> {
    async fn check_feature(&mut self, key: String) -> wasmtime::Result<Result<(), wit::Denial>> {
        Ok(match self.entitlements.as_ref() {
            Some(e) => decision_to_wit(e.check_feature(&key)),
            None => Err(no_subscription(&key)),
        })
    }

    async fn check_limit(
        &mut self,
        key: String,
        quantity: u64,
    ) -> wasmtime::Result<Result<(), wit::Denial>> {
        Ok(match self.entitlements.as_ref() {
            Some(e) => decision_to_wit(e.check_limit(&key, quantity)),
            None => Err(no_subscription(&key)),
        })
    }

    async fn current_usage(&mut self, key: String) -> wasmtime::Result<Option<wit::Usage>> {
        Ok(self
            .entitlements
            .as_ref()
            .and_then(|e| e.usage(&key))
            .map(usage_to_wit))
    }

    async fn consume(
        &mut self,
        key: String,
        quantity: u64,
        idempotency_key: Option<String>,
    ) -> Counted {
        let idempotency_key = idempotency_key.as_deref();
        self.count(
            || refused(&key),
            async |e, db| e.consume(db, &key, quantity, idempotency_key).await,
        )
        .await
    }

    async fn release(
        &mut self,
        key: String,
        quantity: u64,
        idempotency_key: Option<String>,
    ) -> Counted {
        let idempotency_key = idempotency_key.as_deref();
        self.count(
            || {
                wit::UsageError::UnknownKey(format!(
                    "`{key}`: this call runs without a subscription, so there is no usage to release"
                ))
            },
            async |e, db| e.release(db, &key, quantity, idempotency_key).await,
        )
        .await
    }

    async fn record_usage(
        &mut self,
        meter: String,
        amount: u64,
        idempotency_key: String,
    ) -> Counted {
        self.count(
            || refused(&meter),
            async |e, db| e.record_usage(db, &meter, amount, &idempotency_key).await,
        )
        .await
    }
}
