//! The context of the call being served: which tenant, which module, and who
//! asked.

use serde::Serialize;

use crate::runtime;

/// What kind of principal made the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallerKind {
    /// The operator of the host (operator token or CLI).
    Operator,
    /// A tenant API token.
    TenantToken,
    /// The host itself (lifecycle work or maintenance with no human caller).
    System,
}

impl CallerKind {
    /// The kind's name in the module API: `operator`, `tenant-token` or
    /// `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::Operator => "operator",
            CallerKind::TenantToken => "tenant-token",
            CallerKind::System => "system",
        }
    }
}

/// Who made the call. Never carries a secret such as a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// What kind of principal it is.
    pub kind: CallerKind,
    /// A stable identifier of the principal (e.g. the token id).
    pub id: String,
    /// A human-readable name of the principal (e.g. the token name).
    pub name: String,
}

/// Everything a module may know about the call it is serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallContext {
    /// The tenant whose data this call may touch.
    pub tenant_id: String,
    /// The slug of this module.
    pub module_slug: String,
    /// The version of this module that is running.
    pub module_version: String,
    /// Who made the call.
    pub caller: Caller,
}

/// The context of the call being served, asked from the host.
///
/// # Panics
///
/// Outside a `wasm32` component (in a native test), where there is no host
/// and no call.
pub fn context() -> CallContext {
    runtime::current_context()
}
