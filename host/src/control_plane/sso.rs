//! The `sso_providers` and `sso_logins` tables: each tenant's OpenID
//! Connect provider, and the sign-ins under way with it (their `state` and
//! `nonce` stored as hashes, each usable once until it expires).

use sqlx::SqliteConnection;

/// A tenant's provider as stored. Holds the client secret: never
/// serialized, never shown (`crate::sso::SsoSettings` is what callers see).
#[derive(Clone, sqlx::FromRow)]
pub struct ProviderRow {
    /// The tenant.
    pub tenant_id: String,
    /// The issuer identifier, as configured (and as the discovery document
    /// and every ID token must name it).
    pub issuer: String,
    /// The client id the provider issued to this tenant's host.
    pub client_id: String,
    /// The client secret, sent to the token endpoint.
    pub client_secret: String,
    /// JSON array of lower-cased e-mail domains; empty: any.
    pub allowed_domains: String,
    /// Whether unknown verified addresses become members.
    pub provision_members: bool,
    /// From discovery.
    pub authorization_endpoint: String,
    /// From discovery.
    pub token_endpoint: String,
    /// From discovery.
    pub jwks_uri: String,
    /// `client_secret_basic` or `client_secret_post`.
    pub token_auth: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

const PROVIDER_COLUMNS: &str = "tenant_id, issuer, client_id, client_secret, allowed_domains, \
     provision_members, authorization_endpoint, token_endpoint, jwks_uri, token_auth, \
     created_at, updated_at";

/// The provider of `tenant_id`, if one is configured.
///
/// # Errors
/// Database errors.
pub async fn provider(
    conn: &mut SqliteConnection,
    tenant_id: &str,
) -> Result<Option<ProviderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PROVIDER_COLUMNS} FROM sso_providers WHERE tenant_id = ?"
    ))
    .bind(tenant_id)
    .fetch_optional(conn)
    .await
}

/// Stores `row` as its tenant's provider, replacing any (its
/// `created_at` is kept from the row replaced).
///
/// # Errors
/// Database errors.
pub async fn save_provider(
    conn: &mut SqliteConnection,
    row: &ProviderRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO sso_providers ({PROVIDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (tenant_id) DO UPDATE SET issuer = excluded.issuer, \
         client_id = excluded.client_id, client_secret = excluded.client_secret, \
         allowed_domains = excluded.allowed_domains, \
         provision_members = excluded.provision_members, \
         authorization_endpoint = excluded.authorization_endpoint, \
         token_endpoint = excluded.token_endpoint, jwks_uri = excluded.jwks_uri, \
         token_auth = excluded.token_auth, updated_at = excluded.updated_at"
    ))
    .bind(&row.tenant_id)
    .bind(&row.issuer)
    .bind(&row.client_id)
    .bind(&row.client_secret)
    .bind(&row.allowed_domains)
    .bind(row.provision_members)
    .bind(&row.authorization_endpoint)
    .bind(&row.token_endpoint)
    .bind(&row.jwks_uri)
    .bind(&row.token_auth)
    .bind(&row.created_at)
    .bind(&row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the provider of `tenant_id` and every sign-in under way with
/// it; answers whether there was one.
///
/// # Errors
/// Database errors.
pub async fn remove_provider(
    conn: &mut SqliteConnection,
    tenant_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM sso_logins WHERE tenant_id = ?")
        .bind(tenant_id)
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query("DELETE FROM sso_providers WHERE tenant_id = ?")
        .bind(tenant_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// A sign-in under way.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoginRow {
    /// sha256 of the `state` sent to the provider.
    pub state_hash: String,
    /// The tenant it signs in to.
    pub tenant_id: String,
    /// sha256 of the `nonce` the ID token must carry.
    pub nonce_hash: String,
    /// sha256 of the browser-binding cookie set when it started.
    pub browser_hash: String,
    /// The PKCE code verifier.
    pub code_verifier: String,
    /// The redirect URI sent to the provider.
    pub redirect_uri: String,
    /// Where the browser goes once signed in (a relative path).
    pub return_to: String,
    /// RFC 3339.
    pub created_at: String,
    /// Unix seconds.
    pub expires_at: i64,
}

const LOGIN_COLUMNS: &str = "state_hash, tenant_id, nonce_hash, browser_hash, code_verifier, \
     redirect_uri, return_to, created_at, expires_at";

/// Records a sign-in that starts; forgets those of every tenant that
/// expired before `forget_before` (unix seconds).
///
/// # Errors
/// Database errors.
pub async fn insert_login(
    conn: &mut SqliteConnection,
    row: &LoginRow,
    forget_before: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sso_logins WHERE expires_at < ?")
        .bind(forget_before)
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO sso_logins ({LOGIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&row.state_hash)
    .bind(&row.tenant_id)
    .bind(&row.nonce_hash)
    .bind(&row.browser_hash)
    .bind(&row.code_verifier)
    .bind(&row.redirect_uri)
    .bind(&row.return_to)
    .bind(&row.created_at)
    .bind(row.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the sign-in of `tenant_id` whose state hashes to `state_hash`,
/// if it was not used and has not expired at `now` (unix seconds): marks
/// it used at `at` in the same statement, so a state works once even
/// when two callbacks race.
///
/// # Errors
/// Database errors.
pub async fn take_login(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    state_hash: &str,
    now: i64,
    at: &str,
) -> Result<Option<LoginRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE sso_logins SET used_at = ? WHERE state_hash = ? AND tenant_id = ? \
         AND used_at IS NULL AND expires_at > ? RETURNING {LOGIN_COLUMNS}"
    ))
    .bind(at)
    .bind(state_hash)
    .bind(tenant_id)
    .bind(now)
    .fetch_optional(conn)
    .await
}
