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
    /// A tenant API token (an administrator's credential).
    TenantToken,
    /// A signed-in user of the tenant ([`Caller::role`] and
    /// [`Caller::member_number`] say more). API 0.3.0.
    User,
    /// A tenant's API key for this module. API 0.3.0.
    ApiKey,
    /// Nobody signed in: a `public` route. API 0.3.0.
    Anonymous,
    /// The host itself (a job, an event, lifecycle work or maintenance with
    /// no human caller).
    System,
}

impl CallerKind {
    /// The kind's name in the module API: `operator`, `tenant-token`,
    /// `user`, `api-key`, `anonymous` or `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::Operator => "operator",
            CallerKind::TenantToken => "tenant-token",
            CallerKind::User => "user",
            CallerKind::ApiKey => "api-key",
            CallerKind::Anonymous => "anonymous",
            CallerKind::System => "system",
        }
    }
}

/// A tenant user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Manages the tenant: may call `admin` routes.
    Admin,
    /// A member: may call `member` and `public` routes.
    Member,
}

/// Who made the call. Never carries a secret such as a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// What kind of principal it is.
    pub kind: CallerKind,
    /// A stable identifier of the principal (the user's, key's or token's
    /// id; `operator`, `anonymous` or `system` for those kinds).
    pub id: String,
    /// A human-readable name (the user's display name, the key's or token's
    /// name).
    pub name: String,
    /// A signed-in user's role; `None` for every other kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The Membership member number a signed-in user is linked to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_number: Option<String>,
}

impl Caller {
    /// Whether the caller may act as the tenant's administrator: the
    /// operator, a tenant token, or a signed-in user with role admin.
    pub fn is_admin(&self) -> bool {
        match self.kind {
            CallerKind::Operator | CallerKind::TenantToken => true,
            CallerKind::User => self.role == Some(Role::Admin),
            CallerKind::ApiKey | CallerKind::Anonymous | CallerKind::System => false,
        }
    }
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
