//! Email to the tenant's users, sent by the host (module API 0.3.0).
//!
//! [`email`] queues a message in the host's outbox, in the same transaction
//! as the call's writes: nothing is sent if the call fails (an answer of 500
//! or more, a trap), and the host delivers it through its SMTP relay after
//! the call commits, retrying as needed. The tenant reads what became of it
//! in its mail log.
//!
//! ```
//! use souk_sdk::notify::{self, Recipient};
//! use souk_sdk::{Request, Response};
//!
//! fn welcome(request: &Request) -> Response {
//!     let number = request.param("number").unwrap_or_default();
//!     match notify::email(
//!         Recipient::Member(number),
//!         "Welcome to the club",
//!         "Your membership is active.",
//!         Some("<p>Your membership is <b>active</b>.</p>"),
//!     ) {
//!         Ok(id) => Response::json(201, &serde_json::json!({ "message": id })),
//!         // 404 unknown recipient, 400 invalid, 402 the plan's email
//!         // meter is used up, 503 unavailable.
//!         Err(error) => error.into(),
//!     }
//! }
//! # let _ = welcome;
//! ```
//!
//! The host checks the message: the subject is one line of at most 200
//! characters (CR and LF are refused: no header injection), the text is not
//! empty, text and HTML are bounded by the operator. A module that declares
//! a limit of `kind: email` has each queued message counted against it by
//! the host; when the plan's allowance is used up, [`email`] answers
//! [`NotifyError::Denied`], which turns into the host's own 402 problem.
//!
//! # Native builds and API 0.2.0
//! Outside a wasm32 component, and in a component built for API 0.2.0
//! (feature `api-0-2`, which has no `notify`), [`email`] answers
//! [`NotifyError::Unavailable`].

use crate::entitlements::Denial;
use crate::http::{IntoResponse, Problem, Response};
use crate::runtime;

/// Who receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient<'a> {
    /// A user of the tenant, by id.
    User(&'a str),
    /// The user linked to a Membership member number.
    Member(&'a str),
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// No active user of the tenant is the recipient.
    #[error("{0}")]
    UnknownRecipient(String),
    /// The plan's email meter is used up (or email is not in the plan).
    #[error("{0}")]
    Denied(Denial),
    /// A field was refused; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The host cannot queue email now (or from this call); it may be
    /// retried.
    #[error("{0}")]
    Unavailable(String),
}

/// The problem `type` of an unknown recipient.
pub const UNKNOWN_RECIPIENT_TYPE: &str = "https://souk.dev/problems/unknown-recipient";
/// The problem `type` of a message the host refused.
pub const INVALID_MESSAGE_TYPE: &str = "https://souk.dev/problems/invalid-message";
/// The problem `type` of email being unavailable.
pub const EMAIL_UNAVAILABLE_TYPE: &str = "https://souk.dev/problems/email-unavailable";

/// 404 unknown recipient, 402/403 the plan's denial (the host's own
/// problem document), 400 invalid, 503 unavailable.
impl From<NotifyError> for Problem {
    fn from(error: NotifyError) -> Self {
        match error {
            NotifyError::Denied(denial) => Problem::from(&denial),
            NotifyError::UnknownRecipient(detail) => {
                Problem::new(404, UNKNOWN_RECIPIENT_TYPE, "Unknown recipient").with_detail(detail)
            }
            NotifyError::Invalid(detail) => {
                Problem::new(400, INVALID_MESSAGE_TYPE, "Message refused").with_detail(detail)
            }
            NotifyError::Unavailable(detail) => {
                Problem::new(503, EMAIL_UNAVAILABLE_TYPE, "Email unavailable").with_detail(detail)
            }
        }
    }
}

/// See `From<NotifyError> for Problem`.
impl From<NotifyError> for Response {
    fn from(error: NotifyError) -> Self {
        Response::problem(&Problem::from(error))
    }
}

impl IntoResponse for NotifyError {
    fn into_response(self) -> Response {
        self.into()
    }
}

/// Queues an email to `to` (sent only if the call commits); returns the
/// message's id. `html`, when given, is sent beside `text` as
/// `multipart/alternative`.
///
/// # Errors
/// [`NotifyError::UnknownRecipient`], [`NotifyError::Denied`] (the email
/// meter), [`NotifyError::Invalid`] (a field the host refuses),
/// [`NotifyError::Unavailable`].
pub fn email(
    to: Recipient<'_>,
    subject: &str,
    text: &str,
    html: Option<&str>,
) -> Result<String, NotifyError> {
    runtime::notify_email(to, subject, text, html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlements::DenialReason;

    #[test]
    fn errors_are_problems_with_their_statuses() {
        let status = |e: NotifyError| Response::from(e).status();
        assert_eq!(status(NotifyError::UnknownRecipient("u".into())), 404);
        assert_eq!(status(NotifyError::Invalid("subject".into())), 400);
        assert_eq!(status(NotifyError::Unavailable("later".into())), 503);
        let denial = Denial {
            reason: DenialReason::LimitReached,
            key: "emails_per_month".into(),
            plan: Some("free".into()),
            upgrade_plan: Some("pro".into()),
            used: Some(3),
            limit: Some(3),
        };
        let response = Response::from(NotifyError::Denied(denial));
        assert_eq!(response.status(), 402);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["reason"], "limit_reached");
        assert_eq!(body["feature"], "emails_per_month");
    }

    #[test]
    fn natively_there_is_no_host_to_send_through() {
        assert!(matches!(
            email(Recipient::User("u_1"), "Hi", "Hello", None),
            Err(NotifyError::Unavailable(_))
        ));
    }
}
