//! The `events` capability (API 0.3.0): a module emits an event into the
//! tenant's outbox, in the call's own transaction, so a call that rolls
//! back emits nothing. The event delivery service (`crate::events`) sends
//! what committed to webhooks and to subscribing modules.
//!
//! Per-call state: [`EventsState`] (what the module may emit, the payload
//! bound, how many it emitted). The interface reaches it, the call's
//! database handle (the outbox row is written in the call's transaction)
//! and the call's [`WorkMarks`] (so whoever commits the call hints the
//! event worker) through an [`EventsView`].
//!
//! What is refused, as `invalid` with a message that says why: a type that
//! is not `[a-z][a-z0-9_.]*` of at most 64 bytes, a type the manifest does
//! not declare under `events.emits`, a payload that is not one JSON
//! document or is larger than the configured bound (default 64 KiB), and
//! more than [`MAX_EVENTS_PER_CALL`] events in one call.

use souk_module_registry::check_event_type;
use time::OffsetDateTime;
use wasmtime::component::{HasData, Linker};

use crate::capabilities::context::CallContext;
use crate::capabilities::db::ModuleDb;
use crate::event_store;
use crate::work::{WorkKind, WorkMarks};

/// Most events one call may emit.
pub const MAX_EVENTS_PER_CALL: u32 = 100;

/// The default bound of one event's payload: 64 KiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// One call's events: what it may emit and what it emitted.
#[derive(Debug, Clone, Default)]
pub struct EventsState {
    /// The event types the module declares (`events.emits`); empty for a
    /// call that may emit nothing (detached calls, older APIs).
    emits: Vec<String>,
    /// Largest payload, in bytes.
    max_payload_bytes: usize,
    /// The host clock's time when the call started: the events' time.
    now: Option<OffsetDateTime>,
    /// Events emitted so far in this call.
    emitted: u32,
}

impl EventsState {
    /// The state of a call of a module that declares `emits`, started at
    /// `now`, with payloads of at most `max_payload_bytes`.
    pub fn new(emits: &[String], max_payload_bytes: usize, now: OffsetDateTime) -> Self {
        EventsState {
            emits: emits.to_vec(),
            max_payload_bytes,
            now: Some(now),
            emitted: 0,
        }
    }

    /// How many events the call emitted.
    pub fn emitted(&self) -> u32 {
        self.emitted
    }
}

/// Why an event was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The type or payload was refused; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The host could not record it (the call may try again).
    #[error("the event could not be recorded now")]
    Unavailable,
}

/// What the `events` interface reaches of a call's state.
pub struct EventsView<'a> {
    /// The call's events.
    pub state: &'a mut EventsState,
    /// The call's database handle: the outbox row goes into its
    /// transaction.
    pub db: &'a mut ModuleDb,
    /// The deferred work the call queued.
    pub work: &'a mut WorkMarks,
    /// Which module emits.
    pub context: &'a CallContext,
}

impl EventsView<'_> {
    /// Checks and records one event; answers its id.
    ///
    /// # Errors
    /// See [`EmitError`].
    pub async fn emit(&mut self, event_type: &str, payload: &str) -> Result<String, EmitError> {
        check_event_type(event_type).map_err(EmitError::Invalid)?;
        if !self.state.emits.iter().any(|t| t == event_type) {
            return Err(EmitError::Invalid(format!(
                "`{event_type}` is not an event type this module declares under `events.emits` in module.yaml"
            )));
        }
        if payload.len() > self.state.max_payload_bytes {
            return Err(EmitError::Invalid(format!(
                "the payload is {} bytes; an event's payload may be at most {} bytes",
                payload.len(),
                self.state.max_payload_bytes
            )));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(payload) {
            return Err(EmitError::Invalid(format!(
                "the payload is not one JSON document: {e}"
            )));
        }
        if self.state.emitted >= MAX_EVENTS_PER_CALL {
            return Err(EmitError::Invalid(format!(
                "a call may emit at most {MAX_EVENTS_PER_CALL} events"
            )));
        }
        let Some(now) = self.state.now else {
            return Err(EmitError::Invalid(
                "this call cannot emit events".to_owned(),
            ));
        };
        let module = self.context.module_slug.as_str();
        let conn = match self.db.host_connection().await {
            Some(Ok(conn)) => conn,
            Some(Err(e)) => {
                tracing::warn!(module, error = %e, "events: no transaction for the outbox");
                return Err(EmitError::Unavailable);
            }
            None => {
                return Err(EmitError::Invalid(
                    "this call has no database, so it cannot emit events".to_owned(),
                ));
            }
        };
        let seq =
            event_store::insert_event(conn, module, event_type, payload, event_store::millis(now))
                .await
                .map_err(|e| {
                    tracing::warn!(module, error = %e, "events: the outbox write failed");
                    EmitError::Unavailable
                })?;
        self.state.emitted += 1;
        self.work.mark(WorkKind::Events);
        Ok(event_store::event_id(seq))
    }
}

/// The [`HasData`] of the `events` interface.
struct EventsData;

impl HasData for EventsData {
    type Data<'a> = EventsView<'a>;
}

mod host {
    use super::{EmitError, EventsView};
    use crate::wit::v0_3_0::souk::module::events as wit;

    impl wit::Host for EventsView<'_> {
        async fn emit(
            &mut self,
            event_type: String,
            payload: String,
        ) -> wasmtime::Result<Result<String, wit::EventError>> {
            Ok(match EventsView::emit(self, &event_type, &payload).await {
                Ok(id) => Ok(id),
                Err(EmitError::Invalid(message)) => Err(wit::EventError::Invalid(message)),
                Err(e @ EmitError::Unavailable) => Err(wit::EventError::Unavailable(e.to_string())),
            })
        }
    }
}

/// Links the `events` interface (API 0.3.0); `view` picks the call's
/// events state, database handle, work marks and context out of the store
/// data.
///
/// # Errors
/// When the linker already defines the interface.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> EventsView<'_>,
) -> wasmtime::Result<()> {
    crate::wit::v0_3_0::souk::module::events::add_to_linker::<T, EventsData>(linker, view)
}
