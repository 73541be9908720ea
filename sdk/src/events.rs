//! Events (API 0.3.0): record that something happened, for the tenant's
//! webhooks and for the modules that depend on this one and subscribe.
//!
//! An event is written into the host's outbox in the same transaction as
//! the call's own writes: a request that answers 5xx (or traps, or times
//! out) emits nothing. Declare every type under `events.emits` in
//! `module.yaml`; the host refuses others.
//!
//! ```no_run
//! # use serde::Serialize;
//! #[derive(Serialize)]
//! struct MemberLeft<'a> { number: &'a str }
//!
//! let id = souk_sdk::events::emit("member_left", &MemberLeft { number: "M-7" })?;
//! # Ok::<(), souk_sdk::events::EmitError>(())
//! ```
//!
//! A subscriber receives them in [`crate::Module::on_event`]; see
//! `docs/webhooks.md` for delivery, signatures and retries.
//!
//! Outside a component (native tests), and in a component built for API
//! 0.2.0 (feature `api-0-2`), every emit answers
//! [`EmitError::Unavailable`].

use serde::Serialize;

use crate::http::{IntoResponse, Problem, Response};

/// Why an event was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The host refused the type or the payload (the message says why: an
    /// undeclared type, a payload too large, too many events in one call).
    #[error("event refused: {0}")]
    Invalid(String),
    /// The host could not record it now; the call may try again.
    #[error("event not recorded: {0}")]
    Unavailable(String),
    /// The payload could not be encoded as JSON.
    #[error("the event payload is not encodable as JSON: {0}")]
    Encode(String),
}

/// The problem `type` of an event the module could not record.
pub const EVENT_NOT_RECORDED_TYPE: &str = "https://souk.dev/problems/event-not-recorded";

/// A refused or unencodable event is the module's own mistake (an
/// undeclared type, a payload too large): 500; a host that cannot record
/// it now: 503, which the client may retry. Either way the call rolls
/// back, so nothing it wrote stays without its event.
impl From<EmitError> for Problem {
    fn from(error: EmitError) -> Self {
        let status = match error {
            EmitError::Unavailable(_) => 503,
            EmitError::Invalid(_) | EmitError::Encode(_) => 500,
        };
        Problem::new(status, EVENT_NOT_RECORDED_TYPE, "Event not recorded")
            .with_detail(error.to_string())
    }
}

/// See `From<EmitError> for Problem`.
impl From<EmitError> for Response {
    fn from(error: EmitError) -> Self {
        Response::problem(&Problem::from(error))
    }
}

impl IntoResponse for EmitError {
    fn into_response(self) -> Response {
        self.into()
    }
}

/// Emits an event of `event_type` whose payload is `payload` as JSON;
/// answers the event's id (`evt_...`, ordered within the tenant).
///
/// # Errors
/// See [`EmitError`].
pub fn emit(event_type: &str, payload: &impl Serialize) -> Result<String, EmitError> {
    let json = serde_json::to_string(payload).map_err(|e| EmitError::Encode(e.to_string()))?;
    emit_json(event_type, &json)
}

/// Emits an event whose payload is the JSON text `payload`, as it is.
///
/// # Errors
/// See [`EmitError`]; text that is not one JSON document is
/// [`EmitError::Invalid`].
pub fn emit_json(event_type: &str, payload: &str) -> Result<String, EmitError> {
    host::emit(event_type, payload)
}

#[cfg(souk_api_v0_3)]
mod host {
    use super::EmitError;
    use crate::runtime::bindings::souk::module::events as wit;

    pub(super) fn emit(event_type: &str, payload: &str) -> Result<String, EmitError> {
        wit::emit(event_type, payload).map_err(|e| match e {
            wit::EventError::Invalid(m) => EmitError::Invalid(m),
            wit::EventError::Unavailable(m) => EmitError::Unavailable(m),
        })
    }
}

#[cfg(not(souk_api_v0_3))]
mod host {
    use super::EmitError;

    pub(super) fn emit(_event_type: &str, _payload: &str) -> Result<String, EmitError> {
        Err(EmitError::Unavailable(
            "events need a component built for module API 0.3.0".to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_component_nothing_is_emitted() {
        assert!(matches!(
            emit("member_left", &serde_json::json!({"number": "M-7"})),
            Err(EmitError::Unavailable(_))
        ));
    }

    #[test]
    fn a_payload_that_is_not_json_encodable_is_refused_before_the_host() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3);
        assert!(matches!(emit("x", &map), Err(EmitError::Encode(_))));
    }

    #[test]
    fn errors_are_problems_the_module_or_the_host_owns() {
        let answer = |e: EmitError| Response::from(e);
        assert_eq!(answer(EmitError::Invalid("type".into())).status(), 500);
        assert_eq!(answer(EmitError::Encode("map".into())).status(), 500);
        let later = answer(EmitError::Unavailable("busy".into()));
        assert_eq!(later.status(), 503);
        let body: serde_json::Value = serde_json::from_slice(later.body()).unwrap();
        assert_eq!(body["type"], EVENT_NOT_RECORDED_TYPE);
        assert_eq!(body["detail"], "event not recorded: busy");
        let hook = crate::HookError::from(EmitError::Invalid("undeclared".into()));
        assert_eq!(hook.message(), "event refused: undeclared");
    }
}
