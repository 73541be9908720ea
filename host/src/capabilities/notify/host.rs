//! The `notify` interface of API 0.3.0, implemented over a [`NotifyView`].

use super::NotifyView;
use super::directory::RecipientRef;
use super::message::{Addressee, Content, check_identifier};
use super::outbox::{self, NewMail, Origin};
use crate::capabilities::entitlements::call::CallUsageError;
use crate::entitlements::Denial;
use crate::work::WorkKind;

/// Why a message was not queued.
#[derive(Debug, thiserror::Error)]
pub(super) enum QueueError {
    /// No active user is known for the recipient.
    #[error("{0}")]
    UnknownRecipient(String),
    /// The plan's email meter is used up (or the plan has none).
    #[error("{0}")]
    Denied(Box<Denial>),
    /// A field was refused.
    #[error("{0}")]
    Invalid(String),
    /// The host cannot queue mail in this call, or not now.
    #[error("{0}")]
    Unavailable(String),
    /// The tenant database failed: the call is trapped and rolled back.
    #[error("{0:#}")]
    Host(anyhow::Error),
}

impl NotifyView<'_> {
    /// Checks, resolves, meters and queues one message; its id.
    pub(super) async fn queue(
        &mut self,
        to: RecipientRef<'_>,
        subject: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<String, QueueError> {
        let Some(setup) = self.state.0.as_ref() else {
            return Err(QueueError::Unavailable(
                "email cannot be sent from this call (lifecycle hooks have no outbox)".to_owned(),
            ));
        };
        let (field, value) = match to {
            RecipientRef::User(id) => ("recipient user id", id),
            RecipientRef::Member(number) => ("recipient member number", number),
        };
        check_identifier(field, value).map_err(|e| QueueError::Invalid(e.to_string()))?;
        let content = Content::parse(subject, text, html, setup.limits)
            .map_err(|e| QueueError::Invalid(e.to_string()))?;
        let tenant = self.context.tenant_id.as_str();
        let entry = setup
            .directory
            .resolve(tenant, to)
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))?
            .ok_or_else(|| {
                QueueError::UnknownRecipient(format!(
                    "no active user of this tenant is {}",
                    to.describe()
                ))
            })?;
        let addressee = Addressee::parse(&entry.address, &entry.name).map_err(|e| {
            QueueError::Invalid(format!("{} cannot receive mail: {e}", to.describe()))
        })?;
        let id = outbox::new_id();
        if let Some(meter) = &setup.meter {
            let Some(entitlements) = self.entitlements.as_mut() else {
                return Err(QueueError::Denied(Box::new(Denial::no_subscription(meter))));
            };
            match entitlements.record_usage(self.db, meter, 1, &id).await {
                Ok(_) => {}
                Err(CallUsageError::Denied(denial)) => {
                    return Err(QueueError::Denied(Box::new(denial)));
                }
                Err(CallUsageError::Host(error)) => return Err(QueueError::Host(error)),
                Err(
                    e @ (CallUsageError::UnknownKey(_)
                    | CallUsageError::InvalidKey(_)
                    | CallUsageError::OutOfRange(_)),
                ) => {
                    return Err(QueueError::Unavailable(format!(
                        "the email meter `{meter}` cannot count this message: {e}"
                    )));
                }
            }
        }
        let conn = self
            .db
            .host_connection()
            .await
            .ok_or_else(|| QueueError::Unavailable("this call has no outbox".to_owned()))?
            .map_err(|e| QueueError::Host(e.into()))?;
        let origin = Origin::Module(self.context.module_slug.clone());
        outbox::queue(
            conn,
            NewMail {
                id: &id,
                origin: &origin,
                to_user: &entry.user_id,
                to: &addressee,
                content: &content,
                at: setup.clock.now(),
            },
        )
        .await
        .map_err(|e| QueueError::Host(e.into()))?;
        self.work.mark(WorkKind::Email);
        Ok(id)
    }
}

mod v0_3_0 {
    use super::{NotifyView, QueueError, RecipientRef};
    use crate::wit::v0_3_0::souk::module::notify as wit;
    use crate::wit::v0_3_0::souk::module::types::Denial as WitDenial;

    impl wit::Host for NotifyView<'_> {
        async fn email(
            &mut self,
            message: wit::Message,
        ) -> wasmtime::Result<Result<String, wit::NotifyError>> {
            let to = match &message.to {
                wit::Recipient::User(id) => RecipientRef::User(id),
                wit::Recipient::Member(number) => RecipientRef::Member(number),
            };
            let queued = self
                .queue(to, &message.subject, &message.text, message.html.as_deref())
                .await;
            Ok(match queued {
                Ok(id) => Ok(id),
                Err(QueueError::UnknownRecipient(m)) => Err(wit::NotifyError::UnknownRecipient(m)),
                Err(QueueError::Invalid(m)) => Err(wit::NotifyError::Invalid(m)),
                Err(QueueError::Unavailable(m)) => Err(wit::NotifyError::Unavailable(m)),
                Err(QueueError::Denied(denial)) => {
                    Err(wit::NotifyError::Denied(WitDenial::from(*denial)))
                }
                Err(QueueError::Host(error)) => {
                    return Err(wasmtime::Error::msg(format!(
                        "notify: message not queued: {error:#}"
                    )));
                }
            })
        }
    }
}
