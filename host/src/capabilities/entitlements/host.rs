//! The `entitlements` interface of API 0.2.0 and 0.3.0, implemented over an
//! [`EntitlementsView`]. The answers come from the call's
//! [`CallEntitlements`] (process memory); count limits and meters are
//! recorded through the call's database handle. One implementation serves
//! both versions; they differ only in where `denial` lives and in 0.3.0's
//! `counted` record, which says whether an idempotency key was a replay.
//!
//! A call without a subscription context (the view's entitlements are
//! `None`, as for the uninstall hook) is refused everything: the checks,
//! `consume` and `record-usage` answer a `no_subscription` denial, `usage`
//! answers none and `release` an unknown key. Keys the host counts itself
//! (`kind: storage`, `kind: email`) are refused to the module's own
//! counting as unknown keys that say why. API 0.3.0's `seed-usage` sets a
//! count limit outright, only in the install and upgrade hooks
//! ([`CallEntitlements::seed`]).

use super::EntitlementsView;
use super::call::{CallEntitlements, CallUsageError, Counted};
use crate::capabilities::db::ModuleDb;
use crate::entitlements::Denial;

impl EntitlementsView<'_> {
    /// Runs `count` with the call's entitlements and database handle;
    /// `Ok(None)` when the call has no subscription context.
    async fn count(
        &mut self,
        key: &str,
        count: impl AsyncFnOnce(&mut CallEntitlements, &mut ModuleDb) -> Result<Counted, CallUsageError>,
    ) -> Result<Option<Counted>, CallUsageError> {
        match self.entitlements.as_mut() {
            Some(entitlements) => {
                entitlements.refuse_host_counted(key)?;
                count(entitlements, self.db).await.map(Some)
            }
            None => Ok(None),
        }
    }
}

/// The plan's refusal as a module of each API version receives it: one
/// conversion for every interface that refuses for the plan (`entitlements`,
/// and in 0.3.0 `files` and `notify`).
macro_rules! denial_into_wit {
    ($($wit:path),*) => {$(
        impl From<Denial> for $wit {
            fn from(denial: Denial) -> Self {
                Self {
                    reason: denial.reason.code().to_owned(),
                    key: denial.key,
                    plan: denial.plan,
                    upgrade_plan: denial.upgrade_plan,
                    used: denial.used,
                    limit: denial.limit,
                }
            }
        }
    )*};
}

denial_into_wit!(
    crate::wit::v0_2_0::souk::module::entitlements::Denial,
    crate::wit::v0_3_0::souk::module::types::Denial
);

/// A host failure while counting traps the call (its transaction is rolled
/// back, nothing is half counted).
fn trap(error: anyhow::Error) -> wasmtime::Error {
    wasmtime::Error::msg(format!("entitlements: usage not recorded: {error:#}"))
}

/// Implements the `entitlements` interface of one API version. `$denial`
/// is the path of that version's `denial` record, `$wrap` turns a
/// [`Counted`] into what its counting functions return, and `$extra` are
/// the functions only that version has.
macro_rules! entitlements_host {
    ($version:ident, $denial:path, $ok:ty, $wrap:expr $(, { $($extra:tt)* })?) => {
        mod $version {
            use super::{Counted, CallUsageError, Denial, EntitlementsView, trap};
            use crate::entitlements::{Decision, Usage};
            use crate::wit::$version::souk::module::entitlements as wit;
            use $denial as WitDenial;

            fn denial_to_wit(denial: Denial) -> WitDenial {
                WitDenial::from(denial)
            }

            fn usage_to_wit(usage: Usage) -> wit::Usage {
                wit::Usage {
                    used: usage.used,
                    limit: usage.limit,
                }
            }

            #[expect(
                clippy::result_large_err,
                reason = "the generated WIT result, handed to the guest as it is"
            )]
            fn decision_to_wit(decision: Decision) -> Result<(), WitDenial> {
                match decision {
                    Decision::Allowed => Ok(()),
                    Decision::Denied(denial) => Err(denial_to_wit(denial)),
                }
            }

            /// The result type of the counting functions.
            type Answer = wasmtime::Result<Result<$ok, wit::UsageError>>;

            /// Maps a counting outcome to the guest's result;
            /// `without_subscription` answers a call that has none.
            fn answer(
                result: Result<Option<Counted>, CallUsageError>,
                without_subscription: impl FnOnce() -> wit::UsageError,
            ) -> Answer {
                let wrap: fn(wit::Usage, bool) -> $ok = $wrap;
                match result {
                    Ok(Some(c)) => Ok(Ok(wrap(usage_to_wit(c.usage), c.replay))),
                    Ok(None) => Ok(Err(without_subscription())),
                    Err(CallUsageError::Denied(denial)) => {
                        Ok(Err(wit::UsageError::Denied(denial_to_wit(denial))))
                    }
                    // The API's only error carrying a message says what was
                    // wrong, for an unknown key, a quantity out of range and
                    // a bad idempotency key alike.
                    Err(
                        CallUsageError::UnknownKey(message)
                        | CallUsageError::OutOfRange(message)
                        | CallUsageError::InvalidKey(message),
                    ) => Ok(Err(wit::UsageError::UnknownKey(message))),
                    Err(CallUsageError::Host(error)) => Err(trap(error)),
                }
            }

            /// The refusal of `consume` and `record-usage` in a call
            /// without a subscription context.
            fn refused(key: &str) -> wit::UsageError {
                wit::UsageError::Denied(denial_to_wit(Denial::no_subscription(key)))
            }

            impl wit::Host for EntitlementsView<'_> {
                async fn check_feature(
                    &mut self,
                    key: String,
                ) -> wasmtime::Result<Result<(), WitDenial>> {
                    Ok(match self.entitlements.as_ref() {
                        Some(e) => decision_to_wit(e.check_feature(&key)),
                        None => Err(denial_to_wit(Denial::no_subscription(&key))),
                    })
                }

                async fn check_limit(
                    &mut self,
                    key: String,
                    quantity: u64,
                ) -> wasmtime::Result<Result<(), WitDenial>> {
                    Ok(match self.entitlements.as_ref() {
                        Some(e) => decision_to_wit(e.check_limit(&key, quantity)),
                        None => Err(denial_to_wit(Denial::no_subscription(&key))),
                    })
                }

                async fn current_usage(
                    &mut self,
                    key: String,
                ) -> wasmtime::Result<Option<wit::Usage>> {
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
                ) -> Answer {
                    let idem = idempotency_key.as_deref();
                    let result = self
                        .count(&key, async |e, db| e.consume(db, &key, quantity, idem).await)
                        .await;
                    answer(result, || refused(&key))
                }

                async fn release(
                    &mut self,
                    key: String,
                    quantity: u64,
                    idempotency_key: Option<String>,
                ) -> Answer {
                    let idem = idempotency_key.as_deref();
                    let result = self
                        .count(&key, async |e, db| e.release(db, &key, quantity, idem).await)
                        .await;
                    answer(result, || {
                        wit::UsageError::UnknownKey(format!(
                            "`{key}`: this call runs without a subscription, so there is no usage to release"
                        ))
                    })
                }

                async fn record_usage(
                    &mut self,
                    meter: String,
                    amount: u64,
                    idempotency_key: String,
                ) -> Answer {
                    let result = self
                        .count(&meter, async |e, db| {
                            e.record_usage(db, &meter, amount, &idempotency_key).await
                        })
                        .await;
                    answer(result, || refused(&meter))
                }

                $($($extra)*)?
            }
        }
    };
}

// API 0.2.0 answers the usage alone; whether it was a replay is not said.
entitlements_host!(
    v0_2_0,
    crate::wit::v0_2_0::souk::module::entitlements::Denial,
    wit::Usage,
    |usage, _replay| usage
);
// API 0.3.0 adds `seed-usage`, for the install and upgrade hooks.
entitlements_host!(
    v0_3_0,
    crate::wit::v0_3_0::souk::module::types::Denial,
    wit::Counted,
    |usage, replay| wit::Counted { usage, replay },
    {
        async fn seed_usage(
            &mut self,
            key: String,
            used: u64,
        ) -> wasmtime::Result<Result<wit::Usage, wit::UsageError>> {
            let Some(entitlements) = self.entitlements.as_mut() else {
                return Ok(Err(wit::UsageError::UnknownKey(format!(
                    "`{key}`: this call runs without a subscription, so there is no count to seed"
                ))));
            };
            let seeded = async {
                entitlements.refuse_host_counted(&key)?;
                entitlements.seed(self.db, &key, used).await
            }
            .await;
            match seeded {
                Ok(usage) => Ok(Ok(usage_to_wit(usage))),
                Err(CallUsageError::Denied(denial)) => {
                    Ok(Err(wit::UsageError::Denied(denial_to_wit(denial))))
                }
                Err(
                    CallUsageError::UnknownKey(message)
                    | CallUsageError::OutOfRange(message)
                    | CallUsageError::InvalidKey(message),
                ) => Ok(Err(wit::UsageError::UnknownKey(message))),
                Err(CallUsageError::Host(error)) => Err(trap(error)),
            }
        }
    }
);
