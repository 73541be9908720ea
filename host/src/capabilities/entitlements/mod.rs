//! The `entitlements` capability (API 0.2.0 and later): a module asks what
//! the tenant's subscription allows, and counts usage against it.
//!
//! Per-call state: `Option<CallEntitlements>` ([`call`]), `None` when the
//! call runs without a subscription context (uninstall hooks, detached
//! calls; install and upgrade hooks get their tenant's, see
//! `installer/hook_usage.rs`). The interface reaches it, and the call's database handle (usage
//! is written in the call's own transaction), through an
//! [`EntitlementsView`] (the WIT implementation is in `host.rs`).
//!
//! [`call`] also holds the metered-event hold ([`call::MeterHold`]) that
//! the request path and the usage-events service use outside module code.

pub mod call;
mod host;

use wasmtime::component::{HasData, Linker};

use crate::capabilities::db::ModuleDb;
use call::CallEntitlements;

/// What the `entitlements` interface reaches of a call's state.
pub struct EntitlementsView<'a> {
    /// The call's subscription context; `None` refuses every check and
    /// count with `no_subscription` (and `release` with `unknown-key`).
    pub entitlements: &'a mut Option<CallEntitlements>,
    /// The call's database handle, whose transaction the usage is written
    /// in.
    pub db: &'a mut ModuleDb,
}

/// The [`HasData`] of the `entitlements` interface: its host functions get
/// an [`EntitlementsView`].
struct EntitlementsData;

impl HasData for EntitlementsData {
    type Data<'a> = EntitlementsView<'a>;
}

/// Links the `entitlements` interface of every API version that has it
/// (0.2.0, 0.3.0); `view` picks the entitlements and the database handle out of
/// the store data.
///
/// # Errors
/// When the linker already defines the interface.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> EntitlementsView<'_>,
) -> wasmtime::Result<()> {
    crate::wit::v0_2_0::souk::module::entitlements::add_to_linker::<T, EntitlementsData>(
        linker, view,
    )?;
    crate::wit::v0_3_0::souk::module::entitlements::add_to_linker::<T, EntitlementsData>(
        linker, view,
    )
}
