//! Users who arrive through the tenant's identity provider (single
//! sign-on, `crate::sso`): a verified address with no user becomes an
//! active member without a password, and an invited user whose address
//! the provider verified becomes active (the invitation's purpose, proving
//! the address, is served). Both recorded in the tenant's audit log.

use crate::capabilities::context::{Caller, Role};
use crate::clock::rfc3339;
use crate::control_plane::StoreError;
use crate::control_plane::users::{self, UserRow};
use crate::error::SoukError;
use crate::tenancy::Tenant;

use super::input::{Email, line};
use super::{Event, People, User, UserStatus, new_id, record, role_of};

impl People<'_> {
    /// Creates an active member with address `email` (verified by the
    /// tenant's provider `issuer`) and no password: they sign in only
    /// through the provider (or after a password reset invitation).
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for an address or name the user rules
    /// refuse, [`SoukError::Conflict`] when the tenant has a user with the
    /// address already.
    pub async fn provision_member(
        &self,
        tenant: &Tenant,
        email: &str,
        display_name: Option<&str>,
        issuer: &str,
    ) -> Result<User, SoukError> {
        let email = Email::parse(email)?;
        let fallback = email.text.split('@').next().unwrap_or_default().to_owned();
        let display_name = display_name
            .and_then(|name| line("display_name", name, 100).ok())
            .unwrap_or(fallback);
        let at = rfc3339(self.clock.now());
        let row = UserRow {
            id: new_id("usr"),
            tenant_id: tenant.id.clone(),
            email: email.text,
            email_key: email.key,
            display_name,
            role: Role::Member.as_str().to_owned(),
            status: UserStatus::Active.as_str().to_owned(),
            member_number: None,
            password_hash: None,
            created_at: at.clone(),
            updated_at: at.clone(),
        };
        let mut tx = self.control.pool().begin().await?;
        users::insert(&mut tx, &row).await.map_err(|e| match e {
            StoreError::Duplicate => SoukError::Conflict(format!(
                "tenant {} already has a user with the address {}",
                tenant.slug, row.email
            )),
            other => SoukError::Internal(other.into()),
        })?;
        let actor = Caller::user(&row.id, &row.display_name, Role::Member, None);
        let detail = format!(
            "{} ({}) as member, provisioned by single sign-on from {issuer}",
            row.id, row.email
        );
        record(
            &mut tx,
            &tenant.id,
            &at,
            Event {
                action: "user_create",
                actor,
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(User::from(&row))
    }

    /// Makes invited user `user_id` active because the tenant's provider
    /// `issuer` verified their address; a user in another status is
    /// answered as stored.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for an unknown user.
    pub async fn activate_verified(
        &self,
        tenant: &Tenant,
        user_id: &str,
        issuer: &str,
    ) -> Result<User, SoukError> {
        let mut tx = self.control.pool().begin().await?;
        let mut user = users::by_id(&mut tx, &tenant.id, user_id)
            .await?
            .ok_or_else(|| super::no_user(tenant, user_id))?;
        if UserStatus::parse(&user.status) != UserStatus::Invited {
            return Ok(User::from(&user));
        }
        let at = rfc3339(self.clock.now());
        user.status = UserStatus::Active.as_str().to_owned();
        user.updated_at = at.clone();
        users::save(&mut tx, &user).await?;
        let actor = Caller::user(&user.id, &user.display_name, role_of(&user.role), None);
        let detail = format!(
            "{}: status active, address verified by single sign-on from {issuer}",
            user.id
        );
        record(
            &mut tx,
            &tenant.id,
            &at,
            Event {
                action: "user_update",
                actor,
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(User::from(&user))
    }
}
