//! The only place that touches the generated bindings of the module API:
//! the host calls behind [`crate::db`], [`crate::log`],
//! [`crate::context()`], [`crate::entitlements`] and [`crate::notify`], and the adapter that exports a [`Module`] as the
//! `guest` interface.
//!
//! On targets other than `wasm32` there is no host: the calls fall back to
//! documented native behaviour instead of the bindings' `unreachable!()`.
//!
//! The bindings are those of API 0.3.0, or of 0.2.0 with the `api-0-2`
//! feature; `build.rs` sets `souk_api_v0_3` or `souk_api_v0_2` for a wasm32
//! build (neither natively). The two share the types of the interfaces
//! 0.2.0 has, so most code here is written once.

use std::marker::PhantomData;

use crate::Module;
use crate::context::CallContext;
use crate::db::{Changes, DbError, DbErrorKind, Rows, Value};
use crate::http::Request;
use crate::log::Level;
use crate::module::LimitKind;

/// Bindings of `wit/since_v0.3.0/module.wit`, world `module`.
///
/// The SQL value, row set and exec result map onto the SDK's own
/// [`Value`], [`Rows`] and [`Changes`], which have the same shape, so rows
/// cross the boundary without a second copy.
#[cfg(not(souk_api_v0_2))]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/since_v0.3.0",
        world: "module",
        pub_export_macro: true,
        export_macro_name: "__export_module_world",
        with: {
            "souk:module/types@0.3.0/value": crate::db::Value,
            "souk:module/db@0.3.0/row-set": crate::db::Rows,
            "souk:module/db@0.3.0/exec-result": crate::db::Changes,
        },
    });
}

/// Bindings of `wit/since_v0.2.0/module.wit` (feature `api-0-2`).
#[cfg(souk_api_v0_2)]
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
                    #[cfg(not(souk_api_v0_2))]
                    kind: match feature.kind {
                        crate::FeatureKind::Plain => guest::FeatureKind::Plain,
                        crate::FeatureKind::Sso => guest::FeatureKind::Sso,
                    },
                })
                .collect(),
            limits: gates
                .limits()
                .iter()
                .map(|limit| guest::Limit {
                    key: limit.key.to_owned(),
                    description: limit.description.to_owned(),
                    kind: limit_kind(limit.kind),
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

    #[cfg(not(souk_api_v0_2))]
    fn run_job(job: guest::Job) -> Result<guest::JobOutput, String> {
        let job = crate::Job {
            id: job.id,
            name: job.name,
            args: job.args,
            attempt: job.attempt,
        };
        M::run_job(job)
            .map(|output| guest::JobOutput {
                result: output.result,
                file_id: output.file_id,
            })
            .map_err(|error| error.to_string())
    }

    #[cfg(not(souk_api_v0_2))]
    fn on_event(event: guest::Event) -> Result<(), String> {
        let event = crate::Event {
            id: event.id,
            source_module: event.source_module,
            event_type: event.event_type,
            payload: event.payload,
            emitted_at: event.emitted_at,
        };
        M::on_event(event).map_err(|error| error.to_string())
    }
}

#[cfg(not(souk_api_v0_2))]
fn limit_kind(kind: LimitKind) -> guest::LimitKind {
    match kind {
        LimitKind::Count => guest::LimitKind::Count,
        LimitKind::Meter => guest::LimitKind::Meter,
        LimitKind::Storage => guest::LimitKind::Storage,
        LimitKind::Email => guest::LimitKind::Email,
    }
}

/// API 0.2.0 knows only counts and meters; the host refuses the other
/// kinds in the manifest of a module built for it, so they are declared
/// here as the nearest older kind and the mismatch is reported at load.
#[cfg(souk_api_v0_2)]
fn limit_kind(kind: LimitKind) -> guest::LimitKind {
    match kind {
        LimitKind::Count | LimitKind::Storage => guest::LimitKind::Count,
        LimitKind::Meter | LimitKind::Email => guest::LimitKind::Meter,
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

#[cfg(souk_api_v0_3)]
pub(crate) fn current_context() -> CallContext {
    use crate::context::{Caller, CallerKind, Role};
    use bindings::souk::module::types::{Caller as Wit, Role as WitRole};
    let context = bindings::souk::module::context::current();
    let of = |kind: CallerKind, id: &str, name: &str| Caller {
        kind,
        id: id.to_owned(),
        name: name.to_owned(),
        role: None,
        member_number: None,
    };
    let caller = match context.caller {
        Wit::Operator => of(CallerKind::Operator, "operator", "operator"),
        Wit::TenantToken(p) => of(CallerKind::TenantToken, &p.id, &p.name),
        Wit::ApiKey(p) => of(CallerKind::ApiKey, &p.id, &p.name),
        Wit::User(user) => Caller {
            kind: CallerKind::User,
            id: user.id,
            name: user.display_name,
            role: Some(match user.role {
                WitRole::Admin => Role::Admin,
                WitRole::Member => Role::Member,
            }),
            member_number: user.member_number,
        },
        Wit::Anonymous => of(CallerKind::Anonymous, "anonymous", "anonymous"),
        Wit::System => of(CallerKind::System, "system", "souk"),
    };
    CallContext {
        tenant_id: context.tenant_id,
        module_slug: context.module_slug,
        module_version: context.module_version,
        caller,
    }
}

#[cfg(souk_api_v0_2)]
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
            role: None,
            member_number: None,
        },
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn current_context() -> CallContext {
    panic!("souk_sdk::context() has no call to describe outside a wasm32 component")
}

/// What a counting call answered: the usage, and whether its idempotency
/// key was a replay (`None`: the host's API does not say, 0.2.0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) usage: crate::entitlements::Usage,
    pub(crate) replay: Option<bool>,
}

/// The SDK's [`crate::entitlements::Denial`] from a host denial of any
/// interface and API version (their `denial` records have one shape). A
/// reason code the SDK does not know is read as a refusal that payment
/// would not lift.
#[cfg(target_arch = "wasm32")]
macro_rules! denial_from_wit {
    ($denial:expr) => {{
        let denial = $denial;
        crate::entitlements::Denial {
            reason: crate::entitlements::DenialReason::from_code(&denial.reason)
                .unwrap_or(crate::entitlements::DenialReason::FeatureNotInPlan),
            key: denial.key,
            plan: denial.plan,
            upgrade_plan: denial.upgrade_plan,
            used: denial.used,
            limit: denial.limit,
        }
    }};
}

#[cfg(target_arch = "wasm32")]
mod entitlement_calls {
    use super::Tally;
    use super::bindings::souk::module::entitlements as wit;
    use crate::entitlements::{Denial, EntitlementError, Usage};

    fn denial(denial: wit::Denial) -> Denial {
        denial_from_wit!(denial)
    }

    fn usage(usage: wit::Usage) -> Usage {
        Usage {
            used: usage.used,
            limit: usage.limit,
        }
    }

    fn usage_error(error: wit::UsageError) -> EntitlementError {
        match error {
            wit::UsageError::Denied(d) => EntitlementError::Denied(denial(d)),
            wit::UsageError::UnknownKey(message) => EntitlementError::UnknownKey(message),
        }
    }

    #[cfg(souk_api_v0_3)]
    fn counted(result: Result<wit::Counted, wit::UsageError>) -> Result<Tally, EntitlementError> {
        result
            .map(|c| Tally {
                usage: usage(c.usage),
                replay: Some(c.replay),
            })
            .map_err(usage_error)
    }

    /// A 0.2.0 host does not say whether a key was a replay.
    #[cfg(souk_api_v0_2)]
    fn counted(result: Result<wit::Usage, wit::UsageError>) -> Result<Tally, EntitlementError> {
        result
            .map(|u| Tally {
                usage: usage(u),
                replay: None,
            })
            .map_err(usage_error)
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
    ) -> Result<Tally, EntitlementError> {
        counted(wit::consume(key, quantity, idempotency_key))
    }

    pub(crate) fn release(
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Tally, EntitlementError> {
        counted(wit::release(key, quantity, idempotency_key))
    }

    pub(crate) fn record_usage(
        meter: &str,
        amount: u64,
        idempotency_key: &str,
    ) -> Result<Tally, EntitlementError> {
        counted(wit::record_usage(meter, amount, idempotency_key))
    }

    #[cfg(souk_api_v0_3)]
    pub(crate) fn seed_usage(key: &str, used: u64) -> Result<Usage, EntitlementError> {
        wit::seed_usage(key, used).map(usage).map_err(usage_error)
    }

    /// API 0.2.0 has no way to seed a count.
    #[cfg(souk_api_v0_2)]
    pub(crate) fn seed_usage(key: &str, _used: u64) -> Result<Usage, EntitlementError> {
        Err(EntitlementError::UnknownKey(format!(
            "`{key}`: seeding a count needs module API 0.3.0 (this module is built for 0.2.0)"
        )))
    }
}

/// Outside a component: the answers the host gives a call that runs
/// without a subscription (see [`crate::entitlements`]).
#[cfg(not(target_arch = "wasm32"))]
mod entitlement_calls {
    use super::Tally;
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
    ) -> Result<Tally, EntitlementError> {
        Err(EntitlementError::Denied(Denial::no_subscription(key)))
    }

    pub(crate) fn release(
        key: &str,
        _quantity: u64,
        _idempotency_key: Option<&str>,
    ) -> Result<Tally, EntitlementError> {
        Err(EntitlementError::UnknownKey(format!(
            "`{key}`: there is no subscription outside a wasm32 component"
        )))
    }

    pub(crate) fn record_usage(
        meter: &str,
        _amount: u64,
        _idempotency_key: &str,
    ) -> Result<Tally, EntitlementError> {
        Err(EntitlementError::Denied(Denial::no_subscription(meter)))
    }

    pub(crate) fn seed_usage(key: &str, _used: u64) -> Result<Usage, EntitlementError> {
        Err(EntitlementError::UnknownKey(format!(
            "`{key}`: there is no subscription outside a wasm32 component"
        )))
    }
}

pub(crate) use entitlement_calls::{
    check_feature, check_limit, consume, record_usage, release, seed_usage, usage_of as usage,
};

/// The `jobs` interface (API 0.3.0) behind [`crate::jobs`].
#[cfg(souk_api_v0_3)]
pub(crate) mod jobs {
    use super::bindings::souk::module::jobs as wit;
    use crate::jobs::JobError;

    pub(crate) fn enqueue(name: &str, args: &str) -> Result<String, JobError> {
        wit::enqueue(name, args).map_err(|e| match e {
            wit::JobError::Invalid(message) => JobError::Invalid(message),
            wit::JobError::Unavailable(message) => JobError::Unavailable(message),
        })
    }

    pub(crate) fn progress(done: u64, total: u64, message: &str) {
        wit::progress(done, total, message);
    }
}

/// No host with jobs: a native build, or a component for API 0.2.0.
#[cfg(not(souk_api_v0_3))]
pub(crate) mod jobs {
    use crate::jobs::JobError;

    pub(crate) fn enqueue(_name: &str, _args: &str) -> Result<String, JobError> {
        Err(JobError::Unavailable(
            "jobs need a component built for module API 0.3.0".into(),
        ))
    }

    pub(crate) fn progress(_done: u64, _total: u64, _message: &str) {}
}

/// The `files` interface (API 0.3.0 only).
#[cfg(souk_api_v0_3)]
mod file_calls {
    use super::bindings::souk::module::files as wit;
    use crate::files::{FileError, FileInfo, FilePage};

    fn error(error: wit::FileError) -> FileError {
        match error {
            wit::FileError::NotFound => FileError::NotFound,
            wit::FileError::TypeNotAllowed(m) => FileError::TypeNotAllowed(m),
            wit::FileError::TooLarge(limit) => FileError::TooLarge(limit),
            wit::FileError::Denied(d) => FileError::Denied(denial_from_wit!(d)),
            wit::FileError::Invalid(m) => FileError::Invalid(m),
            wit::FileError::Unavailable(m) => FileError::Unavailable(m),
        }
    }

    fn info(file: wit::FileInfo) -> FileInfo {
        FileInfo {
            id: file.id,
            name: file.name,
            content_type: file.content_type,
            size: file.size,
            sha256: file.sha256,
            created_at: file.created_at,
        }
    }

    pub(crate) fn files_put(
        name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<FileInfo, FileError> {
        wit::put(name, content_type, bytes).map(info).map_err(error)
    }

    pub(crate) fn files_get(id: &str) -> Result<FileInfo, FileError> {
        wit::get(id).map(info).map_err(error)
    }

    pub(crate) fn files_read(id: &str) -> Result<Vec<u8>, FileError> {
        wit::read(id).map_err(error)
    }

    pub(crate) fn files_delete(id: &str) -> Result<(), FileError> {
        wit::delete(id).map_err(error)
    }

    pub(crate) fn files_list(cursor: Option<&str>, limit: u32) -> Result<FilePage, FileError> {
        wit::list(cursor, limit)
            .map(|page| FilePage {
                files: page.files.into_iter().map(info).collect(),
                next_cursor: page.next_cursor,
            })
            .map_err(error)
    }

    pub(crate) fn files_signed_url(id: &str, ttl_seconds: u32) -> Result<String, FileError> {
        wit::signed_url(id, ttl_seconds).map_err(error)
    }
}

/// Natively, or for API 0.2.0 (which has no `files`): no host stores files.
#[cfg(not(souk_api_v0_3))]
mod file_calls {
    use crate::files::{FileError, FileInfo, FilePage};

    fn no_host() -> FileError {
        FileError::Unavailable(
            "there is no Souk host with files here (outside a wasm32 component for module API 0.3.0)"
                .to_owned(),
        )
    }

    pub(crate) fn files_put(
        _name: &str,
        _content_type: &str,
        _bytes: &[u8],
    ) -> Result<FileInfo, FileError> {
        Err(no_host())
    }

    pub(crate) fn files_get(_id: &str) -> Result<FileInfo, FileError> {
        Err(no_host())
    }

    pub(crate) fn files_read(_id: &str) -> Result<Vec<u8>, FileError> {
        Err(no_host())
    }

    pub(crate) fn files_delete(_id: &str) -> Result<(), FileError> {
        Err(no_host())
    }

    pub(crate) fn files_list(_cursor: Option<&str>, _limit: u32) -> Result<FilePage, FileError> {
        Err(no_host())
    }

    pub(crate) fn files_signed_url(_id: &str, _ttl_seconds: u32) -> Result<String, FileError> {
        Err(no_host())
    }
}

pub(crate) use file_calls::{
    files_delete, files_get, files_list, files_put, files_read, files_signed_url,
};

/// `notify.email` of API 0.3.0.
#[cfg(souk_api_v0_3)]
pub(crate) fn notify_email(
    to: crate::notify::Recipient<'_>,
    subject: &str,
    text: &str,
    html: Option<&str>,
) -> Result<String, crate::notify::NotifyError> {
    use crate::notify::{NotifyError, Recipient};
    use bindings::souk::module::notify as wit;

    let message = wit::Message {
        to: match to {
            Recipient::User(id) => wit::Recipient::User(id.to_owned()),
            Recipient::Member(number) => wit::Recipient::Member(number.to_owned()),
        },
        subject: subject.to_owned(),
        text: text.to_owned(),
        html: html.map(str::to_owned),
    };
    wit::email(&message).map_err(|error| match error {
        wit::NotifyError::UnknownRecipient(m) => NotifyError::UnknownRecipient(m),
        wit::NotifyError::Invalid(m) => NotifyError::Invalid(m),
        wit::NotifyError::Unavailable(m) => NotifyError::Unavailable(m),
        wit::NotifyError::Denied(d) => NotifyError::Denied(denial_from_wit!(d)),
    })
}

/// API 0.2.0 has no `notify`; nor is there a host outside a component.
#[cfg(not(souk_api_v0_3))]
pub(crate) fn notify_email(
    _to: crate::notify::Recipient<'_>,
    _subject: &str,
    _text: &str,
    _html: Option<&str>,
) -> Result<String, crate::notify::NotifyError> {
    Err(crate::notify::NotifyError::Unavailable(
        "email needs a component built for module API 0.3.0".to_owned(),
    ))
}
