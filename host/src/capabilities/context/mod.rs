//! The `context` capability: who is calling, for which tenant and which
//! module version. Modules receive the caller's identity, never a token.
//!
//! Per-call state: the [`CallContext`]; the `context` interface reads it
//! through a [`ContextView`], and the `log` and `db` capabilities borrow it
//! to tag what they write.

use souk_module_registry::Manifest;
use wasmtime::component::{HasData, Linker};

/// What kind of principal made a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    /// The operator (operator token or CLI).
    Operator,
    /// A tenant API token (an administrator's credential).
    TenantToken,
    /// A signed-in user of the tenant (API 0.3.0).
    User,
    /// A tenant's API key for one module (API 0.3.0).
    ApiKey,
    /// Nobody signed in, on a `public` route (API 0.3.0).
    Anonymous,
    /// The host itself.
    System,
}

impl CallerKind {
    /// The kind as the API and the audit log write it (`operator`,
    /// `tenant_token`, `user`, `api_key`, `anonymous`, `system`; the same
    /// text as its JSON form).
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::Operator => "operator",
            CallerKind::TenantToken => "tenant_token",
            CallerKind::User => "user",
            CallerKind::ApiKey => "api_key",
            CallerKind::Anonymous => "anonymous",
            CallerKind::System => "system",
        }
    }
}

/// A tenant user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages the tenant: may call `admin` routes and the tenant's API.
    Admin,
    /// A member: may call `member` and `public` routes.
    Member,
}

impl Role {
    /// The role as the API writes it (`admin`, `member`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

/// An authenticated principal, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Caller {
    /// What kind of principal.
    pub kind: CallerKind,
    /// Stable id (token, user or key id; `operator`, `anonymous`, `system`).
    pub id: String,
    /// Display name: the token's or key's name, the user's display name,
    /// or `operator` / `anonymous` / `souk`.
    pub name: String,
    /// A user's role; `None` for every other kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The Membership member number a user is linked to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_number: Option<String>,
}

impl Caller {
    fn of(kind: CallerKind, id: &str, name: &str) -> Self {
        Caller {
            kind,
            id: id.to_owned(),
            name: name.to_owned(),
            role: None,
            member_number: None,
        }
    }

    /// The operator acting through the CLI or the operator token.
    pub fn operator() -> Self {
        Self::of(CallerKind::Operator, "operator", "operator")
    }

    /// The host acting on its own.
    pub fn system() -> Self {
        Self::of(CallerKind::System, "system", "souk")
    }

    /// Nobody signed in (a `public` route).
    pub fn anonymous() -> Self {
        Self::of(CallerKind::Anonymous, "anonymous", "anonymous")
    }

    /// A tenant API token.
    pub fn tenant_token(id: &str, name: &str) -> Self {
        Self::of(CallerKind::TenantToken, id, name)
    }

    /// A tenant's API key.
    pub fn api_key(id: &str, name: &str) -> Self {
        Self::of(CallerKind::ApiKey, id, name)
    }

    /// A signed-in user of the tenant.
    pub fn user(id: &str, display_name: &str, role: Role, member_number: Option<String>) -> Self {
        Caller {
            role: Some(role),
            member_number,
            ..Self::of(CallerKind::User, id, display_name)
        }
    }
}

/// The context of one call into a module.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Tenant id (empty for calls that touch no tenant).
    pub tenant_id: String,
    /// The called module's slug, as its manifest names it.
    pub module_slug: String,
    /// The called module's version (its manifest's), as text.
    pub module_version: String,
    /// Who is calling: the authenticated principal of a request or a
    /// lifecycle action, [`Caller::system`] for the host's own calls.
    pub caller: Caller,
}

impl CallContext {
    /// The context of a host-internal call that touches no tenant (e.g.
    /// reading a package's gates when it is loaded).
    pub fn system(manifest: &Manifest) -> Self {
        CallContext {
            tenant_id: String::new(),
            module_slug: manifest.slug.to_string(),
            module_version: manifest.version.to_string(),
            caller: Caller::system(),
        }
    }
}

/// What the `context` interface reaches of a call's state: its context,
/// read only.
pub struct ContextView<'a> {
    /// The call's context, fixed when the call's state was built.
    pub context: &'a CallContext,
}

/// The [`HasData`] of the `context` interface: its host functions get a
/// [`ContextView`].
struct ContextData;

impl HasData for ContextData {
    type Data<'a> = ContextView<'a>;
}

/// Links the `context` interface of every API version; `view` picks the
/// call's context out of the store data.
///
/// # Errors
/// When the linker already defines the interface.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> ContextView<'_>,
) -> wasmtime::Result<()> {
    crate::wit::v0_1_0::souk::module::context::add_to_linker::<T, ContextData>(linker, view)?;
    crate::wit::v0_2_0::souk::module::context::add_to_linker::<T, ContextData>(linker, view)?;
    crate::wit::v0_3_0::souk::module::context::add_to_linker::<T, ContextData>(linker, view)?;
    Ok(())
}

/// Implements the `context` interface of an API version before 0.3.0,
/// whose caller is a kind, an id and a name. Kinds those versions do not
/// know are shown as the nearest older one: a signed-in user or an API key
/// acts for the tenant as a tenant token does. (An anonymous caller never
/// reaches such a module: every route of a module built before 0.3.0 is an
/// `admin` route.)
macro_rules! context_host_before_v0_3 {
    ($version:ident) => {
        mod $version {
            use super::{CallerKind, ContextView};
            use crate::wit::$version::souk::module::{context as wit, types};

            impl wit::Host for ContextView<'_> {
                async fn current(&mut self) -> wasmtime::Result<types::CallContext> {
                    let c = self.context;
                    Ok(types::CallContext {
                        tenant_id: c.tenant_id.clone(),
                        module_slug: c.module_slug.clone(),
                        module_version: c.module_version.clone(),
                        caller: types::Caller {
                            kind: match c.caller.kind {
                                CallerKind::Operator => types::CallerKind::Operator,
                                CallerKind::TenantToken
                                | CallerKind::User
                                | CallerKind::ApiKey
                                | CallerKind::Anonymous => types::CallerKind::TenantToken,
                                CallerKind::System => types::CallerKind::System,
                            },
                            id: c.caller.id.clone(),
                            name: c.caller.name.clone(),
                        },
                    })
                }
            }
        }
    };
}

context_host_before_v0_3!(v0_1_0);
context_host_before_v0_3!(v0_2_0);

mod v0_3_0 {
    use super::{Caller, CallerKind, ContextView, Role};
    use crate::wit::v0_3_0::souk::module::{context as wit, types};

    fn caller_to_wit(c: &Caller) -> types::Caller {
        let principal = || types::Principal {
            id: c.id.clone(),
            name: c.name.clone(),
        };
        match c.kind {
            CallerKind::Operator => types::Caller::Operator,
            CallerKind::TenantToken => types::Caller::TenantToken(principal()),
            CallerKind::ApiKey => types::Caller::ApiKey(principal()),
            CallerKind::User => types::Caller::User(types::User {
                id: c.id.clone(),
                display_name: c.name.clone(),
                role: match c.role {
                    Some(Role::Admin) => types::Role::Admin,
                    Some(Role::Member) | None => types::Role::Member,
                },
                member_number: c.member_number.clone(),
            }),
            CallerKind::Anonymous => types::Caller::Anonymous,
            CallerKind::System => types::Caller::System,
        }
    }

    impl wit::Host for ContextView<'_> {
        async fn current(&mut self) -> wasmtime::Result<types::CallContext> {
            let c = self.context;
            Ok(types::CallContext {
                tenant_id: c.tenant_id.clone(),
                module_slug: c.module_slug.clone(),
                module_version: c.module_version.clone(),
                caller: caller_to_wit(&c.caller),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CallerKind;

    #[test]
    fn a_kinds_text_is_its_json_form() {
        for kind in [
            CallerKind::Operator,
            CallerKind::TenantToken,
            CallerKind::User,
            CallerKind::ApiKey,
            CallerKind::Anonymous,
            CallerKind::System,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }
}
