//! People: a tenant's users, their invitations, passwords and sessions,
//! and the tenant's API keys ([`People`]). `auth.rs` resolves the
//! credentials these make; this service makes, lists and ends them.
//!
//! Secrets are shown once and stored as hashes: invitation tokens, session
//! tokens (`souk_ss_…`), CSRF tokens and API keys (`souk_ak_…`) as sha256
//! ([`crate::secrets`]), passwords as argon2id ([`password`]). Every change
//! and every sign-in is written to the tenant's audit log.
//!
//! # Invitations and e-mail
//! Creating a user (or [`People::invite`]) answers an [`Invitation`]: the
//! one-time token and the link a person opens to accept it. Nothing is
//! sent: the e-mail capability, when it exists, calls [`People::invite`]
//! and mails [`Invitation::link`] to the user's address — that function
//! is the hook.
//!
//! # Single sign-on
//! An identity provider's sign-in (`crate::sso`) finds users by address
//! with [`People::user_by_email`], activates or provisions them
//! ([`provisioning`]) and opens their sessions with
//! [`People::open_session`], as the password sign-in does.

pub mod input;
pub mod password;
pub mod provisioning;
pub mod throttle;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use crate::auth::{API_KEY_PREFIX, Principal, SESSION_PREFIX, SessionPolicy};
use crate::capabilities::context::{Caller, Role};
use crate::catalog::Catalog;
use crate::clock::{Clock, rfc3339};
use crate::control_plane::api_keys::{self, ApiKeyRow};
use crate::control_plane::sessions::{self, SessionRow};
use crate::control_plane::users::{self, UserRow};
use crate::control_plane::{ControlPlane, StoreError, audit};
use crate::error::SoukError;
use crate::installer::Installer;
use crate::secrets::{random_secret, token_hash};
use crate::tenancy::Tenant;

use input::{Email, line};
use password::Password;
use throttle::{LoginLimits, LoginThrottle, PublicLimiter, PublicRate};

/// How people are handled: every knob of `docs/people.md`.
#[derive(Debug, Clone)]
pub struct PeopleConfig {
    /// How long an invitation token works (default 7 days).
    pub invitation_ttl: Duration,
    /// The page an invitation link opens; the token is appended as the
    /// URL fragment `#token=…` (kept out of server logs and `Referer`).
    pub invitation_url: String,
    /// Shortest password accepted, in characters (default 10).
    pub min_password_chars: usize,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
    /// Failed sign-ins allowed per account and per client address.
    pub login: LoginLimits,
    /// Anonymous calls of `public` routes per client address.
    pub public_rate: PublicRate,
    /// Whether the session cookie is marked `Secure` (only sent over
    /// HTTPS). Off by default, for the loopback default listener.
    pub cookie_secure: bool,
}

impl Default for PeopleConfig {
    fn default() -> Self {
        PeopleConfig {
            invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            invitation_url: "http://127.0.0.1:8080/invitations/accept".to_owned(),
            min_password_chars: password::MIN_PASSWORD_CHARS,
            sessions: SessionPolicy::default(),
            login: LoginLimits::default(),
            public_rate: PublicRate::default(),
            cookie_secure: false,
        }
    }
}

/// What people handling keeps for the life of the host: its configuration
/// and the in-memory throttles.
#[derive(Debug)]
pub struct PeopleState {
    /// The configuration.
    pub config: PeopleConfig,
    /// Failed sign-ins.
    pub login_throttle: LoginThrottle,
    /// Anonymous calls of `public` routes.
    pub public_limiter: PublicLimiter,
}

impl PeopleState {
    /// The state for `config`, nothing counted yet.
    pub fn new(config: PeopleConfig) -> Self {
        PeopleState {
            login_throttle: LoginThrottle::new(config.login),
            public_limiter: PublicLimiter::new(config.public_rate),
            config,
        }
    }
}

/// A user's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// Created; the invitation was not accepted yet (cannot sign in).
    Invited,
    /// May sign in.
    Active,
    /// May not sign in; every session was ended when disabled.
    Disabled,
}

impl UserStatus {
    fn as_str(self) -> &'static str {
        match self {
            UserStatus::Invited => "invited",
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "active" => UserStatus::Active,
            "invited" => UserStatus::Invited,
            _ => UserStatus::Disabled,
        }
    }
}

fn role_of(text: &str) -> Role {
    match text {
        "admin" => Role::Admin,
        _ => Role::Member,
    }
}

/// A user as the API and the CLI show it (never a password or its hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// `usr_` and 16 hex digits.
    pub id: String,
    /// The address.
    pub email: String,
    /// The name shown.
    pub display_name: String,
    /// `admin` or `member`.
    pub role: Role,
    /// `invited`, `active` or `disabled`.
    pub status: UserStatus,
    /// The linked Membership member number.
    pub member_number: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&UserRow> for User {
    fn from(row: &UserRow) -> Self {
        User {
            id: row.id.clone(),
            email: row.email.clone(),
            display_name: row.display_name.clone(),
            role: role_of(&row.role),
            status: UserStatus::parse(&row.status),
            member_number: row.member_number.clone(),
            created_at: row.created_at.clone(),
            updated_at: row.updated_at.clone(),
        }
    }
}

/// A user to create.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// The address (unique in the tenant, compared without case).
    pub email: String,
    /// The name shown; default: the address's part before `@`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Default `member`.
    #[serde(default)]
    pub role: Option<Role>,
    /// A Membership member number to link.
    #[serde(default)]
    pub member_number: Option<String>,
}

/// A status a user can be set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusChange {
    /// Enable a disabled user (active again if they had accepted their
    /// invitation, invited otherwise).
    Active,
    /// Disable: no sign-in, every session ended.
    Disabled,
}

/// Changes to a user; absent fields stay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChanges {
    /// A new display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// A new role.
    #[serde(default)]
    pub role: Option<Role>,
    /// A new member number; `null` unlinks.
    #[serde(default, deserialize_with = "present")]
    pub member_number: Option<Option<String>>,
    /// Disable or enable.
    #[serde(default)]
    pub status: Option<StatusChange>,
}

/// `Some(value)` for a present field (`Some(None)` for `null`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A one-time invitation, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    /// The user it invites.
    pub user_id: String,
    /// The token (stored only as a hash).
    pub token: String,
    /// The page to open: [`PeopleConfig::invitation_url`] with
    /// `#token=<token>`. The e-mail capability sends this.
    pub link: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
}

/// A page of users.
#[derive(Debug, Clone, Serialize)]
pub struct UserPage {
    /// The users, oldest first.
    pub users: Vec<User>,
    /// The cursor of the next page (`after=`), if there may be one.
    pub next: Option<String>,
}

/// A session as listed (no secret).
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// `ses_` and 16 hex digits.
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// The last request seen (RFC 3339; advanced at most once a minute).
    pub last_seen_at: String,
    /// The absolute expiry (RFC 3339); it also ends after
    /// [`SessionPolicy::idle`] without use.
    pub expires_at: String,
    /// RFC 3339, when signed out or revoked.
    pub revoked_at: Option<String>,
    /// The client address at sign-in.
    pub client: Option<String>,
}

fn unix_rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs).map_or_else(|_| secs.to_string(), rfc3339)
}

impl From<SessionRow> for SessionInfo {
    fn from(row: SessionRow) -> Self {
        SessionInfo {
            last_seen_at: unix_rfc3339(row.last_seen),
            expires_at: unix_rfc3339(row.expires_at),
            id: row.id,
            user_id: row.user_id,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
            client: row.client,
        }
    }
}

/// A new session, its secrets shown once.
#[derive(Debug, Clone, Serialize)]
pub struct SignIn {
    /// The session.
    pub session: SessionInfo,
    /// Who signed in.
    pub user: User,
    /// The session token: the `souk_session` cookie's value, or a bearer
    /// token.
    pub token: String,
    /// The CSRF token a cookie-signed request that changes state sends in
    /// `X-CSRF-Token`.
    pub csrf_token: String,
}

/// An API key as listed (never the key).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    /// The key's row (id, module, name, read_only, created_at, revoked_at).
    #[serde(flatten)]
    pub row: ApiKeyRow,
    /// The last call made with it (RFC 3339; advanced at most once a
    /// minute).
    pub last_used_at: Option<String>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        ApiKey {
            last_used_at: row.last_used.map(unix_rfc3339),
            row,
        }
    }
}

/// An API key to create.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// The installed module it reaches.
    pub module: String,
    /// Its name (1 to 100 characters).
    pub name: String,
    /// GET and HEAD only (default false).
    #[serde(default)]
    pub read_only: bool,
}

/// Largest page of users.
pub const MAX_PAGE: u32 = 200;
/// Default page of users.
pub const DEFAULT_PAGE: u32 = 50;

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// The sign-in refusal: the same for an unknown address, a wrong password,
/// a user not active and an unknown tenant.
fn sign_in_refused() -> SoukError {
    SoukError::Unauthorized("the e-mail address or the password is not right".into())
}

fn invitation_refused() -> SoukError {
    SoukError::NotFound(
        "this invitation is unknown, was used already or has expired; ask for a new one".into(),
    )
}

fn no_user(tenant: &Tenant, id: &str) -> SoukError {
    SoukError::NotFound(format!("tenant {} has no user {id:?}", tenant.slug))
}

/// The people service: borrows what it needs from the host (build one per
/// operation with `Souk::people`).
pub struct People<'a> {
    /// Where people are stored.
    pub control: &'a ControlPlane,
    /// The host's clock.
    pub clock: &'a dyn Clock,
    /// Configuration and throttles.
    pub state: &'a PeopleState,
    /// Finds installed modules (for API keys).
    pub installer: Installer<'a>,
    /// Reads the installed version's manifest (for API keys).
    pub catalog: &'a Catalog,
}

/// An audit entry of a people event.
struct Event<'a> {
    action: &'a str,
    actor: Caller,
    detail: String,
}

async fn record(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    at: &str,
    event: Event<'_>,
) -> Result<(), SoukError> {
    audit::record_host_event(
        conn,
        &audit::NewAuditEvent {
            at,
            tenant_id,
            module: "",
            action: event.action,
            from: None,
            to: None,
            actor_kind: Some(event.actor.kind.as_str()),
            actor_id: &event.actor.id,
            actor_name: &event.actor.name,
            detail: Some(&event.detail),
        },
    )
    .await?;
    Ok(())
}

impl People<'_> {
    fn config(&self) -> &PeopleConfig {
        &self.state.config
    }

    async fn find(&self, tenant: &Tenant, id: &str) -> Result<UserRow, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        users::by_id(&mut conn, &tenant.id, id)
            .await?
            .ok_or_else(|| no_user(tenant, id))
    }

    /// Creates a user (status `invited`) and their first invitation.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a bad field, [`SoukError::Conflict`]
    /// when the tenant has a user with the address.
    pub async fn create_user(
        &self,
        actor: &Principal,
        tenant: &Tenant,
        new: &NewUser,
    ) -> Result<(User, Invitation), SoukError> {
        let email = Email::parse(&new.email)?;
        let fallback = email.text.split('@').next().unwrap_or_default().to_owned();
        let display_name = line(
            "display_name",
            new.display_name.as_deref().unwrap_or(&fallback),
            100,
        )?;
        let member_number = new
            .member_number
            .as_deref()
            .map(|n| line("member_number", n, 64))
            .transpose()?;
        let now = self.clock.now();
        let at = rfc3339(now);
        let row = UserRow {
            id: new_id("usr"),
            tenant_id: tenant.id.clone(),
            email: email.text,
            email_key: email.key,
            display_name,
            role: new.role.unwrap_or(Role::Member).as_str().to_owned(),
            status: UserStatus::Invited.as_str().to_owned(),
            member_number,
            password_hash: None,
            created_at: at.clone(),
            updated_at: at.clone(),
        };
        let (token, expires) = self.invitation_token(now);
        let mut tx = self.control.pool().begin().await?;
        users::insert(&mut tx, &row).await.map_err(|e| match e {
            StoreError::Duplicate => SoukError::Conflict(format!(
                "tenant {} already has a user with the address {}",
                tenant.slug, row.email
            )),
            other => SoukError::Internal(other.into()),
        })?;
        users::invite(
            &mut tx,
            &row.id,
            &token_hash(&token),
            &at,
            expires.unix_timestamp(),
        )
        .await?;
        let detail = format!("{} ({}) as {}", row.id, row.email, row.role);
        record(
            &mut tx,
            &tenant.id,
            &at,
            Event {
                action: "user_create",
                actor: actor.caller(),
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        let invitation = self.invitation(&row.id, token, expires);
        Ok((User::from(&row), invitation))
    }

    fn invitation_token(&self, now: OffsetDateTime) -> (String, OffsetDateTime) {
        (random_secret(), now + self.config().invitation_ttl)
    }

    fn invitation(&self, user_id: &str, token: String, expires: OffsetDateTime) -> Invitation {
        Invitation {
            user_id: user_id.to_owned(),
            link: format!("{}#token={token}", self.config().invitation_url),
            token,
            expires_at: rfc3339(expires),
        }
    }

    /// Issues a new invitation for user `id` (replacing an unused one): for
    /// an invited user, or as a password reset for an active one. The
    /// e-mail capability calls this and sends [`Invitation::link`].
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for an unknown user, [`SoukError::Conflict`]
    /// for a disabled one.
    pub async fn invite(&self, tenant: &Tenant, id: &str) -> Result<Invitation, SoukError> {
        let user = self.find(tenant, id).await?;
        if UserStatus::parse(&user.status) == UserStatus::Disabled {
            return Err(SoukError::Conflict(format!(
                "user {id} is disabled; enable them before inviting them again"
            )));
        }
        let now = self.clock.now();
        let (token, expires) = self.invitation_token(now);
        let mut conn = self.control.pool().acquire().await?;
        users::invite(
            &mut conn,
            &user.id,
            &token_hash(&token),
            &rfc3339(now),
            expires.unix_timestamp(),
        )
        .await?;
        Ok(self.invitation(&user.id, token, expires))
    }

    /// Accepts an invitation: sets the password and makes the user active.
    /// Works once, until it expires.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a password the policy refuses (the
    /// invitation stays usable); [`SoukError::NotFound`], one message for
    /// an unknown, used or expired invitation and a disabled user.
    pub async fn accept_invitation(
        &self,
        token: &str,
        password: String,
    ) -> Result<User, SoukError> {
        let password = Password::new(password, self.config().min_password_chars)?;
        let hash = token_hash(token.trim());
        let mut conn = self.control.pool().acquire().await?;
        let invitation = users::invitation(&mut conn, &hash)
            .await?
            .ok_or_else(invitation_refused)?;
        drop(conn);
        let now = self.clock.now();
        if invitation.used_at.is_some() || now.unix_timestamp() >= invitation.expires_at {
            return Err(invitation_refused());
        }
        let password_hash = password::hash(password).await?;
        let at = rfc3339(now);
        let mut tx = self.control.pool().begin().await?;
        let mut user = users::by_id(&mut tx, &invitation.tenant_id, &invitation.user_id)
            .await?
            .ok_or_else(invitation_refused)?;
        if UserStatus::parse(&user.status) == UserStatus::Disabled
            || !users::use_invitation(&mut tx, &hash, &at).await?
        {
            return Err(invitation_refused());
        }
        user.password_hash = Some(password_hash);
        user.status = UserStatus::Active.as_str().to_owned();
        user.updated_at = at.clone();
        users::save(&mut tx, &user).await?;
        let actor = Caller::user(&user.id, &user.display_name, role_of(&user.role), None);
        record(
            &mut tx,
            &user.tenant_id,
            &at,
            Event {
                action: "invitation_accept",
                actor,
                detail: user.id.clone(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(User::from(&user))
    }

    /// A page of the tenant's users, oldest first, after user `after`.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a page size of 0 or over [`MAX_PAGE`].
    pub async fn list_users(
        &self,
        tenant: &Tenant,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<UserPage, SoukError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(SoukError::Invalid(format!(
                "`limit` must be 1 to {MAX_PAGE}"
            )));
        }
        let mut conn = self.control.pool().acquire().await?;
        let rows = users::page(&mut conn, &tenant.id, after, limit).await?;
        let next = if rows.len() == limit as usize {
            rows.last().map(|r| r.id.clone())
        } else {
            None
        };
        Ok(UserPage {
            users: rows.iter().map(User::from).collect(),
            next,
        })
    }

    /// User `id` of the tenant.
    ///
    /// # Errors
    /// [`SoukError::NotFound`].
    pub async fn show_user(&self, tenant: &Tenant, id: &str) -> Result<User, SoukError> {
        Ok(User::from(&self.find(tenant, id).await?))
    }

    /// The tenant's user with address `email` (compared without case).
    ///
    /// # Errors
    /// Database errors.
    pub async fn user_by_email(
        &self,
        tenant: &Tenant,
        email: &str,
    ) -> Result<Option<User>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        let row = users::by_email(&mut conn, &tenant.id, &Email::key_of(email)).await?;
        Ok(row.as_ref().map(User::from))
    }

    /// Changes user `id`. Disabling ends every session of the user; a role
    /// change counts from the user's next request.
    ///
    /// # Errors
    /// [`SoukError::NotFound`], [`SoukError::Invalid`] for a bad field.
    pub async fn update_user(
        &self,
        actor: &Principal,
        tenant: &Tenant,
        id: &str,
        changes: &UserChanges,
    ) -> Result<User, SoukError> {
        if changes.display_name.is_none()
            && changes.role.is_none()
            && changes.member_number.is_none()
            && changes.status.is_none()
        {
            return Err(SoukError::Invalid(
                "nothing to change: give `display_name`, `role`, `member_number` or `status`"
                    .into(),
            ));
        }
        let mut tx = self.control.pool().begin().await?;
        let mut user = users::by_id(&mut tx, &tenant.id, id)
            .await?
            .ok_or_else(|| no_user(tenant, id))?;
        let mut said = Vec::new();
        if let Some(name) = &changes.display_name {
            user.display_name = line("display_name", name, 100)?;
            said.push("display name".to_owned());
        }
        if let Some(role) = changes.role {
            user.role = role.as_str().to_owned();
            said.push(format!("role {}", role.as_str()));
        }
        if let Some(number) = &changes.member_number {
            user.member_number = number
                .as_deref()
                .map(|n| line("member_number", n, 64))
                .transpose()?;
            said.push("member number".to_owned());
        }
        let at = rfc3339(self.clock.now());
        if let Some(status) = changes.status {
            let new = match status {
                StatusChange::Disabled => UserStatus::Disabled,
                StatusChange::Active if user.password_hash.is_some() => UserStatus::Active,
                StatusChange::Active => UserStatus::Invited,
            };
            if new == UserStatus::Disabled {
                sessions::revoke_all(&mut tx, &user.id, &at).await?;
            }
            user.status = new.as_str().to_owned();
            said.push(format!("status {}", new.as_str()));
        }
        user.updated_at = at.clone();
        users::save(&mut tx, &user).await?;
        let detail = format!("{}: {}", user.id, said.join(", "));
        record(
            &mut tx,
            &tenant.id,
            &at,
            Event {
                action: "user_update",
                actor: actor.caller(),
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(User::from(&user))
    }

    /// Deletes user `id` with their invitations and sessions.
    ///
    /// # Errors
    /// [`SoukError::NotFound`].
    pub async fn delete_user(
        &self,
        actor: &Principal,
        tenant: &Tenant,
        id: &str,
    ) -> Result<User, SoukError> {
        let mut tx = self.control.pool().begin().await?;
        let user = users::by_id(&mut tx, &tenant.id, id)
            .await?
            .ok_or_else(|| no_user(tenant, id))?;
        users::delete(&mut tx, &tenant.id, id).await?;
        let at = rfc3339(self.clock.now());
        let detail = format!("{} ({})", user.id, user.email);
        record(
            &mut tx,
            &tenant.id,
            &at,
            Event {
                action: "user_delete",
                actor: actor.caller(),
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(User::from(&user))
    }

    /// Signs in with an address and a password, from `address`. Throttled
    /// per account and per client address (checked before the password);
    /// an unknown address costs the same time as a wrong password and gets
    /// the same answer. Recorded in the tenant's audit log (the failures
    /// of known users too).
    ///
    /// # Errors
    /// [`SoukError::Unauthorized`] (one message for every refusal),
    /// [`SoukError::TooManyRequests`] when throttled.
    pub async fn sign_in(
        &self,
        tenant_slug: &str,
        email: &str,
        password: String,
        address: Option<IpAddr>,
    ) -> Result<SignIn, SoukError> {
        let tenant = self.control.tenant_by_slug(tenant_slug).await?;
        let email_key = Email::key_of(email);
        let account = format!(
            "{}/{email_key}",
            tenant.as_ref().map_or(tenant_slug, |t| t.id.as_str())
        );
        let now = self.clock.now();
        let throttle = &self.state.login_throttle;
        if let Err(wait) = throttle.check(&account, address, now) {
            // Worth the operator's attention: someone is guessing. The
            // account and address only, never what was typed.
            tracing::warn!(
                tenant = tenant_slug,
                email = %email_key,
                address = ?address,
                retry_after_secs = wait.as_secs(),
                "sign-ins throttled"
            );
            return Err(SoukError::TooManyRequests {
                detail: format!(
                    "too many failed sign-ins; try again in {}s",
                    wait.as_secs().max(1)
                ),
                retry_after: wait,
            });
        }
        let user = match &tenant {
            Some(tenant) => {
                let mut conn = self.control.pool().acquire().await?;
                users::by_email(&mut conn, &tenant.id, &email_key).await?
            }
            None => None,
        };
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let matches = password::verify(Password::attempt(password), stored).await?;
        let (Some(tenant), Some(user)) = (tenant, user) else {
            throttle.failed(&account, address, now);
            return Err(sign_in_refused());
        };
        let at = rfc3339(now);
        let active = UserStatus::parse(&user.status) == UserStatus::Active;
        if !(matches && active) {
            throttle.failed(&account, address, now);
            let mut conn = self.control.pool().acquire().await?;
            let actor = Caller::anonymous();
            let why = if matches {
                "user not active"
            } else {
                "wrong password"
            };
            let detail = format!("{}: {why}{}", user.id, from(address));
            record(
                &mut conn,
                &tenant.id,
                &at,
                Event {
                    action: "login_failed",
                    actor,
                    detail,
                },
            )
            .await?;
            return Err(sign_in_refused());
        }
        throttle.succeeded(&account);
        self.open_session(&tenant, &user.id, address).await
    }

    /// Opens a session for active user `user_id` (after a password or a
    /// single sign-on), recorded as a `login`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for an unknown user; [`SoukError::Forbidden`]
    /// for one not active.
    pub async fn open_session(
        &self,
        tenant: &Tenant,
        user_id: &str,
        address: Option<IpAddr>,
    ) -> Result<SignIn, SoukError> {
        let user = self.find(tenant, user_id).await?;
        if UserStatus::parse(&user.status) != UserStatus::Active {
            return Err(SoukError::Forbidden(format!(
                "user {user_id} is not active"
            )));
        }
        let now = self.clock.now();
        let at = rfc3339(now);
        let token = format!("{SESSION_PREFIX}{}", random_secret());
        let csrf_token = random_secret();
        let absolute = self.config().sessions.absolute;
        let row = SessionRow {
            id: new_id("ses"),
            user_id: user.id.clone(),
            created_at: at.clone(),
            last_seen: now.unix_timestamp(),
            expires_at: (now + absolute).unix_timestamp(),
            revoked_at: None,
            client: address.map(|a| a.to_string()),
        };
        let mut tx = self.control.pool().begin().await?;
        sessions::insert(&mut tx, &row, &token_hash(&token), &token_hash(&csrf_token)).await?;
        let actor = Caller::user(&user.id, &user.display_name, role_of(&user.role), None);
        let detail = format!("{}: session {}{}", user.id, row.id, from(address));
        record(
            &mut tx,
            &tenant.id,
            &at,
            Event {
                action: "login",
                actor,
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(SignIn {
            session: SessionInfo::from(row),
            user: User::from(&user),
            token,
            csrf_token,
        })
    }

    /// The sessions of user `user_id`, newest first.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for an unknown user.
    pub async fn list_sessions(
        &self,
        tenant: &Tenant,
        user_id: &str,
    ) -> Result<Vec<SessionInfo>, SoukError> {
        let user = self.find(tenant, user_id).await?;
        let mut conn = self.control.pool().acquire().await?;
        let rows = sessions::for_user(&mut conn, &user.id).await?;
        Ok(rows.into_iter().map(SessionInfo::from).collect())
    }

    /// Revokes session `session_id` of user `user_id`; it stops working at
    /// once.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for an unknown user or session.
    pub async fn revoke_session(
        &self,
        actor: &Principal,
        tenant: &Tenant,
        user_id: &str,
        session_id: &str,
    ) -> Result<SessionInfo, SoukError> {
        let user = self.find(tenant, user_id).await?;
        let at = rfc3339(self.clock.now());
        let mut tx = self.control.pool().begin().await?;
        let row = sessions::revoke(&mut tx, &user.id, session_id, &at)
            .await?
            .ok_or_else(|| {
                SoukError::NotFound(format!("user {user_id} has no session {session_id:?}"))
            })?;
        let action = match actor {
            Principal::User(me) if me.session_id == session_id => "logout",
            _ => "session_revoke",
        };
        let detail = format!("{}: session {session_id}", user.id);
        record(
            &mut tx,
            &tenant.id,
            &at,
            Event {
                action,
                actor: actor.caller(),
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(SessionInfo::from(row))
    }

    /// Ends the session `principal` signed in with (signing out).
    ///
    /// # Errors
    /// [`SoukError::Invalid`] when the principal is not a signed-in user.
    pub async fn sign_out(
        &self,
        principal: &Principal,
        tenant: &Tenant,
    ) -> Result<SessionInfo, SoukError> {
        let Principal::User(me) = principal else {
            return Err(SoukError::Invalid(
                "only a signed-in user has a current session to end".into(),
            ));
        };
        self.revoke_session(principal, tenant, &me.user_id, &me.session_id)
            .await
    }

    /// Creates an API key for an installed module whose manifest declares
    /// `api_keys`. The key is returned once and never stored.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the module is not installed,
    /// [`SoukError::Invalid`] for a bad name or a module that takes no
    /// API keys.
    pub async fn create_api_key(
        &self,
        actor: &Principal,
        tenant: &Tenant,
        new: &NewApiKey,
    ) -> Result<(ApiKey, String), SoukError> {
        let name = line("name", &new.name, 100)?;
        let installation = self.installer.require(tenant, &new.module).await?;
        let resolved = self
            .catalog
            .resolve(&installation.module, Some(&installation.version))
            .await?;
        if resolved.manifest.api_keys.is_none() {
            return Err(SoukError::Invalid(format!(
                "module {} {} takes no API keys: its manifest declares no `api_keys`",
                installation.module, installation.version
            )));
        }
        let secret = format!("{API_KEY_PREFIX}{}", random_secret());
        let at = rfc3339(self.clock.now());
        let row = ApiKeyRow {
            id: new_id("key"),
            tenant_id: tenant.id.clone(),
            module: installation.module.clone(),
            name,
            read_only: new.read_only,
            created_at: at.clone(),
            last_used: None,
            revoked_at: None,
        };
        let mut tx = self.control.pool().begin().await?;
        api_keys::insert(&mut tx, &row, &token_hash(&secret)).await?;
        let detail = format!(
            "{} ({}) for {}{}",
            row.id,
            row.name,
            row.module,
            if row.read_only { ", read-only" } else { "" }
        );
        record(
            &mut tx,
            &tenant.id,
            &at,
            Event {
                action: "api_key_create",
                actor: actor.caller(),
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        Ok((ApiKey::from(row), secret))
    }

    /// The tenant's API keys, oldest first (revoked ones included).
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_api_keys(&self, tenant: &Tenant) -> Result<Vec<ApiKey>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        let rows = api_keys::list(&mut conn, &tenant.id).await?;
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }

    /// Revokes API key `id`; it stops working at once.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the tenant has no such key.
    pub async fn revoke_api_key(
        &self,
        actor: &Principal,
        tenant: &Tenant,
        id: &str,
    ) -> Result<ApiKey, SoukError> {
        let at = rfc3339(self.clock.now());
        let mut tx = self.control.pool().begin().await?;
        let row = api_keys::revoke(&mut tx, &tenant.id, id, &at)
            .await?
            .ok_or_else(|| {
                SoukError::NotFound(format!("tenant {} has no API key {id:?}", tenant.slug))
            })?;
        let detail = format!("{} ({}) for {}", row.id, row.name, row.module);
        record(
            &mut tx,
            &tenant.id,
            &at,
            Event {
                action: "api_key_revoke",
                actor: actor.caller(),
                detail,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(ApiKey::from(row))
    }
}

fn from(address: Option<IpAddr>) -> String {
    address.map_or_else(String::new, |a| format!(" from {a}"))
}
