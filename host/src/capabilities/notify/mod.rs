//! The `notify` capability (API 0.3.0): a module queues an email to a user
//! of its tenant; the host delivers it after the call commits.
//!
//! Per-call state: a [`NotifyState`] — the tenant's [`RecipientDirectory`],
//! the operator's [`MessageLimits`] and the module's `kind: email` meter —
//! set for calls that run with the tenant's entitlements (requests,
//! background calls) and absent for lifecycle hooks and package reads, whose
//! `email` answers `unavailable`. The interface reaches it through a
//! [`NotifyView`], which also borrows the call's database handle (the
//! message is written into the call's own transaction), its entitlements
//! (the meter is counted there, under the message id as idempotency key)
//! and its work marks (the transaction's commit wakes the delivery).
//!
//! `email` parses the message at the boundary ([`message`]), resolves the
//! recipient **at queue time** through the directory — so an unknown user is
//! refused to the module while it can still answer its caller, and the
//! outbox row holds everything the delivery needs without reading the
//! control plane — counts one unit of the email meter, then writes the row
//! into `_souk_mail` ([`outbox`]). A call that rolls back leaves neither
//! the row nor the unit.

pub mod directory;
mod host;
pub mod message;
pub mod outbox;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use crate::capabilities::context::CallContext;
use crate::capabilities::db::ModuleDb;
use crate::capabilities::entitlements::call::CallEntitlements;
use crate::clock::Clock;
use crate::work::WorkMarks;
pub use directory::{DirectoryEntry, DirectoryError, RecipientDirectory, RecipientRef};
pub use message::{Addressee, Content, MessageError, MessageLimits};

/// What `notify.email` needs for one call, when the call may send mail.
#[derive(Clone)]
pub struct NotifySetup {
    /// The tenant's users.
    pub directory: Arc<dyn RecipientDirectory>,
    /// How large a message may be.
    pub limits: MessageLimits,
    /// The module's `kind: email` limit, if it declares one: one unit per
    /// queued message. Without one, the module's mail is not metered.
    pub meter: Option<String>,
    /// The host's clock: a message is queued at its time.
    pub clock: Arc<dyn Clock>,
}

impl NotifySetup {
    /// The setup for a module whose manifest declares `limits`: its
    /// `kind: email` limit (the first, a manifest has at most one) is the
    /// meter.
    pub fn for_module<'a>(
        directory: Arc<dyn RecipientDirectory>,
        limits: MessageLimits,
        clock: Arc<dyn Clock>,
        manifest_limits: impl IntoIterator<Item = &'a souk_module_registry::LimitDecl>,
    ) -> Self {
        let meter = manifest_limits
            .into_iter()
            .find(|l| l.kind == souk_module_registry::LimitKind::Email)
            .map(|l| l.key.clone());
        NotifySetup {
            directory,
            limits,
            meter,
            clock,
        }
    }
}

/// The `notify` capability's per-call state: `None` (the default) refuses
/// every message as `unavailable`.
#[derive(Default)]
pub struct NotifyState(pub Option<NotifySetup>);

/// What the `notify` interface reaches of a call's state.
pub struct NotifyView<'a> {
    /// The call's notify setup.
    pub state: &'a NotifyState,
    /// Which tenant and module the call serves.
    pub context: &'a CallContext,
    /// The call's database handle: the message is queued in its
    /// transaction.
    pub db: &'a mut ModuleDb,
    /// The call's entitlements: the email meter is counted there.
    pub entitlements: &'a mut Option<CallEntitlements>,
    /// The call's deferred work: a queued message marks `Email`.
    pub work: &'a mut WorkMarks,
}

/// The [`HasData`] of the `notify` interface.
struct NotifyData;

impl HasData for NotifyData {
    type Data<'a> = NotifyView<'a>;
}

/// Links the `notify` interface of API 0.3.0; `view` picks what it reaches
/// out of the store data.
///
/// # Errors
/// When the linker already defines the interface.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NotifyView<'_>,
) -> wasmtime::Result<()> {
    crate::wit::v0_3_0::souk::module::notify::add_to_linker::<T, NotifyData>(linker, view)
}
