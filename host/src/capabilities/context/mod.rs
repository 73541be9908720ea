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
    /// A tenant API token.
    TenantToken,
    /// The host itself.
    System,
}

impl CallerKind {
    /// The kind as the API and the audit log write it (`operator`,
    /// `tenant_token`, `system`; the same text as its JSON form).
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::Operator => "operator",
            CallerKind::TenantToken => "tenant_token",
            CallerKind::System => "system",
        }
    }
}

/// An authenticated principal, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Caller {
    /// What kind of principal.
    pub kind: CallerKind,
    /// Stable id (token id, `operator`, `system`).
    pub id: String,
    /// Display name: the token's name, or `operator` / `souk`.
    pub name: String,
}

impl Caller {
    /// The operator acting through the CLI or the operator token.
    pub fn operator() -> Self {
        Caller {
            kind: CallerKind::Operator,
            id: "operator".into(),
            name: "operator".into(),
        }
    }

    /// The host acting on its own.
    pub fn system() -> Self {
        Caller {
            kind: CallerKind::System,
            id: "system".into(),
            name: "souk".into(),
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
    Ok(())
}

/// Implements the `context` interface of one API version (the same logic
/// over each version's generated types).
macro_rules! context_host {
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
                                CallerKind::TenantToken => types::CallerKind::TenantToken,
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

context_host!(v0_1_0);
context_host!(v0_2_0);

#[cfg(test)]
mod tests {
    use super::CallerKind;

    #[test]
    fn a_kinds_text_is_its_json_form() {
        for kind in [
            CallerKind::Operator,
            CallerKind::TenantToken,
            CallerKind::System,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }
}
