//! The only place that touches the generated bindings of the module API:
//! the host calls behind [`crate::db`], [`crate::log`],
//! [`crate::context()`] and [`crate::entitlements`], and the adapter that exports a [`Module`] as the
//! `guest` interface.
//!
//! On targets other than `wasm32` there is no host: the calls fall back to
//! documented native behaviour instead of the bindings' `unreachable!()`.

use std::marker::PhantomData;

use crate::Module;
use crate::context::CallContext;
use crate::db::{Changes, DbError, DbErrorKind, Rows, Value};
use crate::http::Request;
use crate::log::Level;
use crate::module::LimitKind;

/// Bindings of `wit/since_v0.2.0/module.wit`, world `module`.
///
/// The SQL value, row set and exec result map onto the SDK's own
/// [`Value`], [`Rows`] and [`Changes`], which have the same shape, so rows
/// cross the boundary without a second copy.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/since_v0.2.0",
        world: "module",
        pub_export_macro: true,
        export_macro_name: "__export_module_world",
        with: {
            "souk:module/types@0.2.0/value": crate::db::Value,
            "souk:module/db@0.2.0/row-set": crate::db::Rows,
            "souk:module/db@0.2.0/exec-result": crate::db::Changes,
        },
    });
}

use bindings::exports::souk::module::guest;

/// Exports the [`Module`] `M` as the `guest` interface; named by
/// [`crate::export_module!`] only.
pub struct GuestAdapter<M>(PhantomData<M>);

impl<M: Module> guest::Guest for GuestAdapter<M> {
    fn migrations() -> Vec<guest::Migration> {
        M::migrations()
            .into_iter()
            .map(|migration| guest::Migration {
                id: migration.id.to_owned(),
                up: migration.up.to_owned(),
                down: migration.down.to_owned(),
            })
            .collect()
    }

    fn install() -> Result<(), String> {
        M::install().map_err(|error| error.to_string())
    }

    fn uninstall() -> Result<(), String> {
        M::uninstall().map_err(|error| error.to_string())
    }

    fn upgrade(from_version: String) -> Result<(), String> {
        M::upgrade(&from_version).map_err(|error| error.to_string())
    }

    fn gates() -> guest::GateSet {
        let gates = M::gates();
        guest::GateSet {
            features: gates
                .features()
                .iter()
                .map(|feature| guest::Feature {
                    key: feature.key.to_owned(),
                    description: feature.description.to_owned(),
                })
                .collect(),
            limits: gates
                .limits()
                .iter()
                .map(|limit| guest::Limit {
                    key: limit.key.to_owned(),
                    description: limit.description.to_owned(),
                    kind: match limit.kind {
                        LimitKind::Count => guest::LimitKind::Count,
                        LimitKind::Meter => guest::LimitKind::Meter,
                    },
                })
                .collect(),
        }
    }

    fn handle(request: guest::Request) -> guest::Response {
        let request = Request::new(
            request.method,
            request.path,
            request.query,
            request.headers,
            request.body,
        );
        let (status, headers, body) = M::handle(request).into_parts();
        guest::Response {
            status,
            headers,
            body,
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn db_error(error: bindings::souk::module::db::DbError) -> DbError {
    use bindings::souk::module::db::ErrorKind;
    DbError {
        kind: match error.kind {
            ErrorKind::Syntax => DbErrorKind::Syntax,
            ErrorKind::Forbidden => DbErrorKind::Forbidden,
            ErrorKind::DdlOutsideMigration => DbErrorKind::DdlOutsideMigration,
            ErrorKind::Constraint => DbErrorKind::Constraint,
            ErrorKind::Other => DbErrorKind::Other,
        },
        message: error.message,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn no_host() -> DbError {
    DbError {
        kind: DbErrorKind::Other,
        message: "there is no Souk host outside a wasm32 component".to_owned(),
    }
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn db_query(sql: &str, params: &[Value]) -> Result<Rows, DbError> {
    bindings::souk::module::db::query(sql, params).map_err(db_error)
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn db_query(_sql: &str, _params: &[Value]) -> Result<Rows, DbError> {
    Err(no_host())
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn db_execute(sql: &str, params: &[Value]) -> Result<Changes, DbError> {
    bindings::souk::module::db::execute(sql, params).map_err(db_error)
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn db_execute(_sql: &str, _params: &[Value]) -> Result<Changes, DbError> {
    Err(no_host())
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn log(level: Level, message: &str) {
    use bindings::souk::module::log as wit;
    let level = match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
    };
    wit::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn log(level: Level, message: &str) {
    eprintln!("[{}] {message}", level.as_str());
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn current_context() -> CallContext {
    use crate::context::{Caller, CallerKind};
    use bindings::souk::module::types::CallerKind as WitCallerKind;
    let context = bindings::souk::module::context::current();
    CallContext {
        tenant_id: context.tenant_id,
        module_slug: context.module_slug,
        module_version: context.module_version,
        caller: Caller {
            kind: match context.caller.kind {
                WitCallerKind::Operator => CallerKind::Operator,
                WitCallerKind::TenantToken => CallerKind::TenantToken,
                WitCallerKind::System => CallerKind::System,
            },
            id: context.caller.id,
            name: context.caller.name,
        },
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn current_context() -> CallContext {
    panic!("souk_sdk::context() has no call to describe outside a wasm32 component")
}

#[cfg(target_arch = "wasm32")]
mod entitlement_calls {
    use super::bindings::souk::module::entitlements as wit;
    use crate::entitlements::{Denial, DenialReason, EntitlementError, Usage};

    fn denial(denial: wit::Denial) -> Denial {
        Denial {
            // A 0.2.0 host sends only the six codes; anything else is read
            // as a refusal that payment would not lift.
            reason: DenialReason::from_code(&denial.reason)
                .unwrap_or(DenialReason::FeatureNotInPlan),
            key: denial.key,
            plan: denial.plan,
            upgrade_plan: denial.upgrade_plan,
            used: denial.used,
            limit: denial.limit,
        }
    }

    fn usage(usage: wit::Usage) -> Usage {
        Usage {
            used: usage.used,
            limit: usage.limit,
        }
    }

    fn counted(result: Result<wit::Usage, wit::UsageError>) -> Result<Usage, EntitlementError> {
        result.map(usage).map_err(|error| match error {
            wit::UsageError::Denied(d) => EntitlementError::Denied(denial(d)),
            wit::UsageError::UnknownKey(message) => EntitlementError::UnknownKey(message),
        })
    }

    pub(crate) fn check_feature(key: &str) -> Result<(), Denial> {
        wit::check_feature(key).map_err(denial)
    }

    pub(crate) fn check_limit(key: &str, quantity: u64) -> Result<(), Denial> {
        wit::check_limit(key, quantity).map_err(denial)
    }

    pub(crate) fn usage_of(key: &str) -> Option<Usage> {
        wit::current_usage(key).map(usage)
    }

    pub(crate) fn consume(
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Usage, EntitlementError> {
        counted(wit::consume(key, quantity, idempotency_key))
    }

    pub(crate) fn release(
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Usage, EntitlementError> {
        counted(wit::release(key, quantity, idempotency_key))
    }

    pub(crate) fn record_usage(
        meter: &str,
        amount: u64,
        idempotency_key: &str,
    ) -> Result<Usage, EntitlementError> {
        counted(wit::record_usage(meter, amount, idempotency_key))
    }
}

/// Outside a component: the answers the host gives a call that runs
/// without a subscription (see [`crate::entitlements`]).
#[cfg(not(target_arch = "wasm32"))]
mod entitlement_calls {
    use crate::entitlements::{Denial, EntitlementError, Usage};

    pub(crate) fn check_feature(key: &str) -> Result<(), Denial> {
        Err(Denial::no_subscription(key))
    }

    pub(crate) fn check_limit(key: &str, _quantity: u64) -> Result<(), Denial> {
        Err(Denial::no_subscription(key))
    }

    pub(crate) fn usage_of(_key: &str) -> Option<Usage> {
        None
    }

    pub(crate) fn consume(
        key: &str,
        _quantity: u64,
        _idempotency_key: Option<&str>,
    ) -> Result<Usage, EntitlementError> {
        Err(EntitlementError::Denied(Denial::no_subscription(key)))
    }

    pub(crate) fn release(
        key: &str,
        _quantity: u64,
        _idempotency_key: Option<&str>,
    ) -> Result<Usage, EntitlementError> {
        Err(EntitlementError::UnknownKey(format!(
            "`{key}`: there is no subscription outside a wasm32 component"
        )))
    }

    pub(crate) fn record_usage(
        meter: &str,
        _amount: u64,
        _idempotency_key: &str,
    ) -> Result<Usage, EntitlementError> {
        Err(EntitlementError::Denied(Denial::no_subscription(meter)))
    }
}

pub(crate) use entitlement_calls::{
    check_feature, check_limit, consume, record_usage, release, usage_of as usage,
};
