//! Who may do what: the one place a credential is resolved into a
//! [`Principal`].
//!
//! Nothing is open by default. The operator token (created on the first
//! `souk serve`, written with 0600 permissions) reaches everything. Tenant
//! tokens (created by the operator, stored only as sha256 hashes,
//! revocable) reach only their own tenant. A user's session (`souk_ss_…`,
//! as a bearer token or the `souk_session` cookie) reaches their tenant as
//! their role allows; an API key (`souk_ak_…`) reaches one module's routes
//! and never `/v1`. A principal never carries the secret itself, so what
//! reaches a module is an identity, not a secret.
//!
//! [`Standing`] says what a principal is to one module of one tenant, and
//! [`authorize_route`] decides a route's `access` level from it (the
//! dispatcher's authorize step).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use souk_module_registry::Access;

use crate::capabilities::context::{Caller, Role};
use crate::clock::{Clock, rfc3339};
use crate::control_plane::ControlPlane;
use crate::control_plane::touches::PendingTouches;
use crate::control_plane::{api_keys, sessions, tokens};
use crate::error::SoukError;
use crate::secrets::{random_secret, token_hash, write_private_file};
use crate::tenancy::{Tenant, tenant_not_found};

pub use crate::control_plane::tokens::TokenInfo;

const OPERATOR_PREFIX: &str = "souk_op_";
const TENANT_PREFIX: &str = "souk_tk_";
/// The prefix of a user's session token.
pub const SESSION_PREFIX: &str = "souk_ss_";
/// The prefix of an API key.
pub const API_KEY_PREFIX: &str = "souk_ak_";
/// Last-seen and last-used times change at most this often per session or
/// key, so a busy client does not write the control plane on every
/// request; and they are written together, at most this often in all
/// ([`crate::control_plane::touches`]), so many sessions do not empty the
/// control-plane caches on every use either.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long has expired.
    pub idle: Duration,
    /// A session this old has expired, however busy.
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(24 * 3600),
            absolute: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// A signed-in user of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The user's tenant.
    pub tenant_id: String,
    /// The user's id.
    pub user_id: String,
    /// The user's display name.
    pub display_name: String,
    /// The user's role now (read with the session, so a change counts at
    /// the next request).
    pub role: Role,
    /// The linked Membership member number.
    pub member_number: Option<String>,
    /// The session the request came with.
    pub session_id: String,
}

/// The holder of a tenant's API key for one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    /// The key's tenant.
    pub tenant_id: String,
    /// The key's id.
    pub key_id: String,
    /// The key's name.
    pub name: String,
    /// The one module it reaches.
    pub module: String,
    /// Whether it may only read (GET and HEAD).
    pub read_only: bool,
}

/// The credentials a request presents, as the API edge read them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `Authorization: Bearer` token.
    pub bearer: Option<&'a str>,
    /// The `souk_session` cookie.
    pub session_cookie: Option<&'a str>,
    /// The `X-CSRF-Token` header.
    pub csrf: Option<&'a str>,
    /// Whether the request may change state (any method but GET, HEAD and
    /// OPTIONS): a cookie session must then carry its CSRF token.
    pub changes_state: bool,
}

/// Who sent a module request: the principal its credentials name (if
/// any were valid) and the client address it came from.
#[derive(Debug, Clone, Default)]
pub struct Visitor {
    /// The authenticated principal; `None` when no valid credential came.
    pub principal: Option<Principal>,
    /// The peer address of the connection.
    pub address: Option<IpAddr>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator.
    Operator,
    /// A tenant token.
    Tenant {
        /// The tenant it belongs to.
        tenant_id: String,
        /// The token's id.
        token_id: String,
        /// The token's name.
        token_name: String,
    },
    /// A signed-in user.
    User(SignedIn),
    /// An API key (module routes only).
    ApiKey(KeyHolder),
}

impl Principal {
    /// The identity passed to modules.
    pub fn caller(&self) -> Caller {
        match self {
            Principal::Operator => Caller::operator(),
            Principal::Tenant {
                token_id,
                token_name,
                ..
            } => Caller::tenant_token(token_id, token_name),
            Principal::User(user) => Caller::user(
                &user.user_id,
                &user.display_name,
                user.role,
                user.member_number.clone(),
            ),
            Principal::ApiKey(key) => Caller::api_key(&key.key_id, &key.name),
        }
    }

    /// Checks that this principal may act for `tenant`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`], worded as for a tenant that does not exist.
    pub fn check_tenant(&self, tenant: &Tenant) -> Result<(), SoukError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Tenant { tenant_id, .. }
            | Principal::User(SignedIn { tenant_id, .. })
            | Principal::ApiKey(KeyHolder { tenant_id, .. })
                if *tenant_id == tenant.id =>
            {
                Ok(())
            }
            _ => Err(tenant_not_found(&tenant.slug)),
        }
    }

    /// Checks that this principal may use a tenant's `/v1` API as its
    /// administrator: the operator, a tenant token, a user with role
    /// `admin`. (Whose tenant it is, [`Principal::check_tenant`] checks.)
    ///
    /// # Errors
    /// [`SoukError::Forbidden`] for a member; [`SoukError::Unauthorized`]
    /// for an API key, which works only on module routes.
    pub fn require_tenant_admin(&self) -> Result<(), SoukError> {
        match self {
            Principal::Operator | Principal::Tenant { .. } => Ok(()),
            Principal::User(user) if user.role == Role::Admin => Ok(()),
            Principal::User(_) => Err(SoukError::Forbidden(
                "this needs a tenant administrator; members may use the tenant's member routes"
                    .into(),
            )),
            Principal::ApiKey(_) => Err(api_key_off_module_routes()),
        }
    }

    /// Checks that this principal is the operator.
    ///
    /// # Errors
    /// [`SoukError::Forbidden`] for tenant tokens.
    pub fn require_operator(&self) -> Result<(), SoukError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::ApiKey(_) => Err(api_key_off_module_routes()),
            Principal::Tenant { .. } | Principal::User(_) => Err(SoukError::Forbidden(
                "this needs the operator token; tenant tokens reach only their tenant's modules"
                    .into(),
            )),
        }
    }
}

fn api_key_off_module_routes() -> SoukError {
    SoukError::Unauthorized(
        "API keys work only on their module's routes (/t/{tenant}/m/{module}/...), never on /v1"
            .into(),
    )
}

/// What a principal is to one module of one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The operator, a tenant token of the tenant, or a user of the
    /// tenant with role `admin`.
    Admin,
    /// A user of the tenant with role `member`.
    Member,
    /// The tenant's API key for this module; `read_only` as the key says.
    Key {
        /// GET and HEAD only.
        read_only: bool,
    },
    /// No credential valid here: none, an invalid one, or an API key of
    /// another module or tenant (which is answered as no credential, so
    /// it learns nothing about the module or tenant it was sent to).
    Anonymous,
    /// A credential of another tenant (token or session): everything about
    /// this tenant is answered as for a tenant that does not exist.
    Foreign,
}

impl Standing {
    /// The standing of `principal` towards `module` of `tenant`.
    pub fn of(principal: Option<&Principal>, tenant: &Tenant, module: &str) -> Self {
        let Some(principal) = principal else {
            return Standing::Anonymous;
        };
        match principal {
            Principal::Operator => Standing::Admin,
            Principal::ApiKey(key) if key.tenant_id == tenant.id && key.module == module => {
                Standing::Key {
                    read_only: key.read_only,
                }
            }
            Principal::ApiKey(_) => Standing::Anonymous,
            _ if principal.check_tenant(tenant).is_err() => Standing::Foreign,
            Principal::User(user) if user.role == Role::Member => Standing::Member,
            Principal::Tenant { .. } | Principal::User(_) => Standing::Admin,
        }
    }

    /// Whether errors met before a `public` route is reached are hidden
    /// from this caller (see [`Standing::hide`]).
    pub fn is_outsider(self) -> bool {
        matches!(self, Standing::Anonymous | Standing::Foreign)
    }

    /// What an outsider is told instead of `error`: a caller without a
    /// credential that is valid here learns only that one is needed (401),
    /// another tenant's caller only that the tenant does not exist (404) —
    /// never whether the module is installed, busy, or has the route.
    /// Insiders get `error` itself, and so does everybody a refusal for
    /// capacity (the tenant's or the host's: it names no module, and a
    /// `public` route's callers need its `Retry-After`).
    pub fn hide(self, tenant_slug: &str, error: SoukError) -> SoukError {
        match (self, error) {
            (_, error @ SoukError::Module(_)) => error,
            (Standing::Anonymous, _) => credential_required(),
            (Standing::Foreign, _) => tenant_not_found(tenant_slug),
            (_, error) => error,
        }
    }
}

/// The 401 every missing, unknown, expired or revoked credential gets: the
/// same words for each, so a caller learns nothing about credentials.
pub fn credential_required() -> SoukError {
    SoukError::Unauthorized(
        "a valid credential is required: send `Authorization: Bearer <token>` or sign in".into(),
    )
}

/// What a route's access check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAdmission {
    /// The caller the module is told about.
    pub caller: Caller,
    /// Whether the call is anonymous on a `public` route (the host rate
    /// limits those per client address).
    pub anonymous: bool,
    /// Whether the call is made with an API key (the module's `api_keys`
    /// feature is then checked by the gate).
    pub api_key: bool,
}

/// Decides whether a caller of `standing` (whose principal is `principal`)
/// may call a route with `access` using `method`.
///
/// | access | admitted |
/// | --- | --- |
/// | `public` | everybody; outsiders as `anonymous` |
/// | `member` | admins, members, the module's API keys |
/// | `admin` | admins, the module's API keys |
///
/// A read-only key is admitted for GET and HEAD only.
///
/// # Errors
/// [`SoukError::Unauthorized`] for an anonymous caller of a non-public
/// route, [`SoukError::NotFound`] (the tenant's) for another tenant's
/// caller, [`SoukError::Forbidden`] for a member on an `admin` route and a
/// read-only key on anything but a read.
pub fn authorize_route(
    principal: Option<&Principal>,
    standing: Standing,
    tenant_slug: &str,
    access: Access,
    method: &str,
) -> Result<RouteAdmission, SoukError> {
    let named = |api_key: bool| RouteAdmission {
        caller: principal.map_or_else(Caller::anonymous, Principal::caller),
        anonymous: false,
        api_key,
    };
    match (standing, access) {
        (Standing::Anonymous | Standing::Foreign, Access::Public) => Ok(RouteAdmission {
            caller: Caller::anonymous(),
            anonymous: true,
            api_key: false,
        }),
        (Standing::Anonymous | Standing::Foreign, _) => {
            Err(standing.hide(tenant_slug, credential_required()))
        }
        (Standing::Key { read_only: true }, _) if !matches!(method, "GET" | "HEAD") => {
            Err(SoukError::Forbidden(
                "this API key is read-only: it may only make GET and HEAD requests".into(),
            ))
        }
        (Standing::Key { .. }, _) => Ok(named(true)),
        (Standing::Member, Access::Admin) => Err(SoukError::Forbidden(
            "this route is for the tenant's administrators".into(),
        )),
        (Standing::Admin | Standing::Member, _) => Ok(named(false)),
    }
}

/// Whether two hashes of secrets are equal. Comparing hashes leaks nothing
/// useful, but compare without early exit anyway.
fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Token storage and checks.
pub struct Auth {
    control: ControlPlane,
    /// Stamps token creation and revocation; says when sessions expired.
    clock: Arc<dyn Clock>,
    operator_token_path: PathBuf,
    /// How long sessions live.
    sessions: SessionPolicy,
    /// Last-seen and last-used times waiting to be written together.
    touches: PendingTouches,
}

impl Auth {
    /// Tokens recorded in `control` and stamped by `clock`; the operator
    /// token lives in `data_dir/operator-token`.
    pub fn new(control: ControlPlane, data_dir: &Path, clock: Arc<dyn Clock>) -> Self {
        Auth {
            control,
            clock,
            operator_token_path: data_dir.join("operator-token"),
            sessions: SessionPolicy::default(),
            touches: PendingTouches::default(),
        }
    }

    /// The same, with sessions living as `policy` says.
    pub fn with_sessions(mut self, policy: SessionPolicy) -> Self {
        self.sessions = policy;
        self
    }

    /// How long sessions live.
    pub fn session_policy(&self) -> SessionPolicy {
        self.sessions
    }

    /// Where the operator token is kept.
    pub fn operator_token_path(&self) -> &Path {
        &self.operator_token_path
    }

    /// Creates the operator token if there is none. Returns `true` when it
    /// was created now.
    ///
    /// # Errors
    /// I/O errors writing the file.
    pub fn ensure_operator_token(&self) -> Result<bool, SoukError> {
        if self.operator_token_path.exists() {
            return Ok(false);
        }
        let token = format!("{OPERATOR_PREFIX}{}", random_secret());
        write_private_file(&self.operator_token_path, format!("{token}\n").as_bytes())
            .map_err(|e| SoukError::Internal(e.into()))?;
        Ok(true)
    }

    fn operator_token_hash(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.operator_token_path).ok()?;
        Some(token_hash(text.trim()))
    }

    /// Resolves what a request presents: the bearer token if there is one
    /// (a session token sent as a bearer needs no CSRF token), else the
    /// session cookie, which must carry its CSRF token (`X-CSRF-Token`)
    /// when the request changes state.
    ///
    /// # Errors
    /// [`SoukError::Unauthorized`] for a missing, unknown, expired or
    /// revoked credential (one message for all);
    /// [`SoukError::Forbidden`] for a cookie session without its CSRF
    /// token on a state-changing request.
    pub async fn identify(&self, credentials: &Credentials<'_>) -> Result<Principal, SoukError> {
        if credentials.bearer.is_some() {
            return self.authenticate(credentials.bearer).await;
        }
        let Some(cookie) = credentials.session_cookie.map(str::trim) else {
            return Err(credential_required());
        };
        let (principal, csrf_hash) = self.session(cookie).await?;
        if credentials.changes_state {
            let sent = credentials.csrf.map(str::trim).unwrap_or_default();
            if sent.is_empty() || !same_hash(&token_hash(sent), &csrf_hash) {
                return Err(SoukError::Forbidden(
                    "a request signed in by the session cookie that changes state must carry \
                     the session's CSRF token in `X-CSRF-Token`"
                        .into(),
                ));
            }
        }
        Ok(principal)
    }

    /// The live session whose token is `token`, as a principal, with its
    /// CSRF token's hash; an expired one is refused (idle past
    /// [`SessionPolicy::idle`], or past its absolute expiry), as is one
    /// whose user is not active.
    async fn session(&self, token: &str) -> Result<(Principal, String), SoukError> {
        if !token.starts_with(SESSION_PREFIX) {
            return Err(credential_required());
        }
        let mut conn = self.control.pool().acquire().await?;
        let live = sessions::live_by_hash(&mut conn, &token_hash(token))
            .await?
            .ok_or_else(credential_required)?;
        drop(conn);
        let now = self.clock.now().unix_timestamp();
        let idle = i64::try_from(self.sessions.idle.as_secs()).unwrap_or(i64::MAX);
        let last_seen = self.touches.session_used(
            &live.session.id,
            live.session.last_seen,
            now,
            TOUCH_EVERY.as_secs() as i64,
        );
        if now >= live.session.expires_at
            || now.saturating_sub(last_seen) >= idle
            || live.user.status != "active"
        {
            return Err(credential_required());
        }
        self.write_touches(now).await;
        let role = match live.user.role.as_str() {
            "admin" => Role::Admin,
            _ => Role::Member,
        };
        let principal = Principal::User(SignedIn {
            tenant_id: live.user.tenant_id,
            user_id: live.user.id,
            display_name: live.user.display_name,
            role,
            member_number: live.user.member_number,
            session_id: live.session.id,
        });
        Ok((principal, live.csrf_hash))
    }

    /// Writes the last-seen and last-used times waiting, if the last batch
    /// was written at least [`TOUCH_EVERY`] ago (see
    /// [`crate::control_plane::touches`]). A failure is logged: the times
    /// are kept again at the sessions' and keys' next use.
    async fn write_touches(&self, now: i64) {
        if let Some(batch) = self.touches.take_due(now, TOUCH_EVERY.as_secs() as i64)
            && let Err(e) = batch.write(self.control.pool()).await
        {
            tracing::warn!(error = %e, "last-seen times not written; kept again at the next use");
        }
    }

    /// The unrevoked API key `key`, as a principal.
    async fn api_key(&self, key: &str) -> Result<Principal, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        let row = api_keys::active_by_hash(&mut conn, &token_hash(key))
            .await?
            .ok_or_else(credential_required)?;
        drop(conn);
        let now = self.clock.now().unix_timestamp();
        self.touches
            .key_used(&row.id, row.last_used, now, TOUCH_EVERY.as_secs() as i64);
        self.write_touches(now).await;
        Ok(Principal::ApiKey(KeyHolder {
            tenant_id: row.tenant_id,
            key_id: row.id,
            name: row.name,
            module: row.module,
            read_only: row.read_only,
        }))
    }

    /// Authenticates a bearer token.
    ///
    /// # Errors
    /// [`SoukError::Unauthorized`] for a missing, unknown or revoked token —
    /// the same message for each, so a caller learns nothing about tokens.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, SoukError> {
        let refused = credential_required;
        let token = bearer
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(refused)?;
        let hash = token_hash(token);
        if token.starts_with(OPERATOR_PREFIX) {
            let expected = self.operator_token_hash().ok_or_else(refused)?;
            return if same_hash(&expected, &hash) {
                Ok(Principal::Operator)
            } else {
                Err(refused())
            };
        }
        if token.starts_with(SESSION_PREFIX) {
            return Ok(self.session(token).await?.0);
        }
        if token.starts_with(API_KEY_PREFIX) {
            return self.api_key(token).await;
        }
        if !token.starts_with(TENANT_PREFIX) {
            return Err(refused());
        }
        let token = self
            .control
            .active_token(&hash)
            .await?
            .ok_or_else(refused)?;
        Ok(Principal::Tenant {
            tenant_id: token.tenant_id,
            token_id: token.id,
            token_name: token.name,
        })
    }

    /// Creates a tenant token. The secret is returned once and never stored.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a bad name.
    pub async fn create_token(
        &self,
        tenant: &Tenant,
        name: &str,
    ) -> Result<(TokenInfo, String), SoukError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(SoukError::Invalid(
                "token name must be 1 to 100 characters".into(),
            ));
        }
        let secret = format!("{TENANT_PREFIX}{}", random_secret());
        let info = TokenInfo {
            id: format!("tok_{}", hex::encode(rand::random::<[u8; 8]>())),
            name: name.to_owned(),
            created_at: rfc3339(self.clock.now()),
            revoked_at: None,
        };
        let mut conn = self.control.pool().acquire().await?;
        tokens::insert(&mut conn, &tenant.id, &info, &token_hash(&secret)).await?;
        Ok((info, secret))
    }

    /// A tenant's tokens.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_tokens(&self, tenant: &Tenant) -> Result<Vec<TokenInfo>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(tokens::list(&mut conn, &tenant.id).await?)
    }

    /// Revokes a token; it stops working at once.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the tenant has no such token.
    pub async fn revoke_token(
        &self,
        tenant: &Tenant,
        token_id: &str,
    ) -> Result<TokenInfo, SoukError> {
        let at = rfc3339(self.clock.now());
        let mut conn = self.control.pool().acquire().await?;
        tokens::revoke(&mut conn, &tenant.id, token_id, &at)
            .await?
            .ok_or_else(|| {
                SoukError::NotFound(format!("tenant {} has no token {token_id:?}", tenant.slug))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::context::CallerKind;

    fn tenant(id: &str) -> Tenant {
        Tenant {
            id: id.into(),
            slug: format!("slug-{id}"),
            name: id.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn user(tenant_id: &str, role: Role) -> Principal {
        Principal::User(SignedIn {
            tenant_id: tenant_id.into(),
            user_id: "usr_1".into(),
            display_name: "Ann".into(),
            role,
            member_number: Some("M-7".into()),
            session_id: "ses_1".into(),
        })
    }

    fn key(tenant_id: &str, module: &str, read_only: bool) -> Principal {
        Principal::ApiKey(KeyHolder {
            tenant_id: tenant_id.into(),
            key_id: "key_1".into(),
            name: "crm".into(),
            module: module.into(),
            read_only,
        })
    }

    fn token(tenant_id: &str) -> Principal {
        Principal::Tenant {
            tenant_id: tenant_id.into(),
            token_id: "tok_1".into(),
            token_name: "ci".into(),
        }
    }

    #[test]
    fn standing_depends_on_tenant_role_and_module() {
        let acme = tenant("t_acme");
        let s = |p: Option<&Principal>| Standing::of(p, &acme, "cards");
        assert_eq!(s(None), Standing::Anonymous);
        assert_eq!(s(Some(&Principal::Operator)), Standing::Admin);
        assert_eq!(s(Some(&token("t_acme"))), Standing::Admin);
        assert_eq!(s(Some(&token("t_other"))), Standing::Foreign);
        assert_eq!(s(Some(&user("t_acme", Role::Admin))), Standing::Admin);
        assert_eq!(s(Some(&user("t_acme", Role::Member))), Standing::Member);
        assert_eq!(s(Some(&user("t_other", Role::Admin))), Standing::Foreign);
        assert_eq!(
            s(Some(&key("t_acme", "cards", true))),
            Standing::Key { read_only: true }
        );
        // A key of another module or tenant is no credential here.
        assert_eq!(s(Some(&key("t_acme", "forum", false))), Standing::Anonymous);
        assert_eq!(
            s(Some(&key("t_other", "cards", false))),
            Standing::Anonymous
        );
    }

    #[test]
    fn route_access_admits_by_level_and_hides_the_tenant_from_outsiders() {
        let member = user("t_acme", Role::Member);
        let admin = user("t_acme", Role::Admin);
        let ro_key = key("t_acme", "cards", true);
        let decide = |p: Option<&Principal>, standing, access, method| {
            authorize_route(p, standing, "acme", access, method)
        };
        // Anonymous: public only, named anonymous and rate limited.
        let a = decide(None, Standing::Anonymous, Access::Public, "POST").unwrap();
        assert_eq!(a.caller.kind, CallerKind::Anonymous);
        assert!(a.anonymous && !a.api_key);
        for access in [Access::Member, Access::Admin] {
            let e = decide(None, Standing::Anonymous, access, "GET").unwrap_err();
            assert!(matches!(e, SoukError::Unauthorized(_)), "{e}");
        }
        // Another tenant's session: the tenant does not exist, except on a
        // public route, where it is nobody.
        let foreign = user("t_other", Role::Admin);
        let e = decide(Some(&foreign), Standing::Foreign, Access::Member, "GET").unwrap_err();
        assert!(
            matches!(e, SoukError::NotFound(ref m) if m.contains("acme")),
            "{e}"
        );
        let a = decide(Some(&foreign), Standing::Foreign, Access::Public, "GET").unwrap();
        assert_eq!(a.caller, Caller::anonymous());
        // A member: member and public routes, named with role and number.
        let a = decide(Some(&member), Standing::Member, Access::Member, "POST").unwrap();
        assert_eq!(a.caller.kind, CallerKind::User);
        assert_eq!(a.caller.role, Some(Role::Member));
        assert_eq!(a.caller.member_number.as_deref(), Some("M-7"));
        assert!(!a.anonymous);
        let a = decide(Some(&member), Standing::Member, Access::Public, "GET").unwrap();
        assert_eq!(
            a.caller.kind,
            CallerKind::User,
            "a credential still names the caller"
        );
        let e = decide(Some(&member), Standing::Member, Access::Admin, "GET").unwrap_err();
        assert!(matches!(e, SoukError::Forbidden(_)), "{e}");
        // Admins everywhere.
        for access in [Access::Public, Access::Member, Access::Admin] {
            assert!(decide(Some(&admin), Standing::Admin, access, "DELETE").is_ok());
        }
        // A read-only key reads only.
        let ro = Standing::Key { read_only: true };
        let a = decide(Some(&ro_key), ro, Access::Admin, "GET").unwrap();
        assert!(a.api_key);
        assert_eq!(a.caller.kind, CallerKind::ApiKey);
        assert!(decide(Some(&ro_key), ro, Access::Admin, "HEAD").is_ok());
        let e = decide(Some(&ro_key), ro, Access::Member, "POST").unwrap_err();
        assert!(matches!(e, SoukError::Forbidden(_)), "{e}");
        let rw = Standing::Key { read_only: false };
        assert!(
            decide(
                Some(&key("t_acme", "cards", false)),
                rw,
                Access::Admin,
                "POST"
            )
            .is_ok()
        );
    }

    #[test]
    fn members_and_keys_stay_off_the_tenant_api() {
        assert!(user("t", Role::Admin).require_tenant_admin().is_ok());
        assert!(token("t").require_tenant_admin().is_ok());
        assert!(matches!(
            user("t", Role::Member).require_tenant_admin(),
            Err(SoukError::Forbidden(_))
        ));
        assert!(matches!(
            key("t", "cards", false).require_tenant_admin(),
            Err(SoukError::Unauthorized(_))
        ));
        assert!(matches!(
            key("t", "cards", false).require_operator(),
            Err(SoukError::Unauthorized(_))
        ));
        assert!(matches!(
            user("t", Role::Admin).require_operator(),
            Err(SoukError::Forbidden(_))
        ));
    }

    #[test]
    fn outsiders_learn_nothing_from_refusals_but_capacity() {
        let busy = || {
            SoukError::Module(crate::error::CallError::Capacity {
                retry_after: Duration::from_secs(2),
            })
        };
        let missing = || SoukError::NotFound("module \"cards\" is not installed".into());
        assert!(matches!(
            Standing::Anonymous.hide("acme", missing()),
            SoukError::Unauthorized(_)
        ));
        let e = Standing::Foreign.hide("acme", missing()).to_string();
        assert_eq!(e, tenant_not_found("acme").to_string());
        assert!(matches!(
            Standing::Member.hide("acme", missing()),
            SoukError::NotFound(ref m) if m.contains("cards")
        ));
        assert!(matches!(
            Standing::Anonymous.hide("acme", busy()),
            SoukError::Module(_)
        ));
    }
}
