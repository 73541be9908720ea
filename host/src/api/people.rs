//! People endpoints: users, invitations, sessions (sign-in, cookies and
//! CSRF) and API keys. Each handler parses its input and calls one
//! `People` function (the CLI's `souk user` calls the same ones).
//!
//! | method | path | who |
//! | --- | --- | --- |
//! | GET, POST | `/v1/tenants/{tenant}/users` (`?after=&limit=`) | tenant admins |
//! | GET, PATCH, DELETE | `/v1/tenants/{tenant}/users/{id}` | tenant admins |
//! | POST | `/v1/tenants/{tenant}/users/{id}/invitation` | tenant admins |
//! | GET | `/v1/tenants/{tenant}/users/{id}/sessions` | tenant admins, the user |
//! | DELETE | `/v1/tenants/{tenant}/users/{id}/sessions/{session}` | tenant admins, the user |
//! | POST | `/v1/tenants/{tenant}/sessions` (sign in) | anyone |
//! | GET, DELETE | `/v1/tenants/{tenant}/sessions/current` | the signed-in user |
//! | POST | `/v1/invitations/accept` | anyone holding an invitation |
//! | GET, POST | `/v1/tenants/{tenant}/api-keys` | tenant admins |
//! | DELETE | `/v1/tenants/{tenant}/api-keys/{id}` | tenant admins |
//!
//! "Tenant admins" are the operator, the tenant's tokens and its users
//! with role `admin`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;

use super::{ApiResult, Problem, TenantAccess, TenantPerson, parse_json};
use crate::auth::Principal;
use crate::error::SoukError;
use crate::people::{NewApiKey, NewUser, UserChanges};
use crate::souk::Souk;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "souk_session";
/// The cookie holding the session's CSRF token, readable by the page's
/// scripts (double submit: the header must carry the same token, which
/// the host checks against the hash stored with the session).
pub const CSRF_COOKIE: &str = "souk_csrf";
/// The header a cookie-signed request that changes state carries.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The people routes.
pub(super) fn routes() -> Router<Arc<Souk>> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/users",
            get(list_users).post(create_user),
        )
        .route(
            "/v1/tenants/{tenant}/users/{id}",
            get(show_user).patch(update_user).delete(delete_user),
        )
        .route("/v1/tenants/{tenant}/users/{id}/invitation", post(invite))
        .route(
            "/v1/tenants/{tenant}/users/{id}/sessions",
            get(list_sessions),
        )
        .route(
            "/v1/tenants/{tenant}/users/{id}/sessions/{session}",
            delete(revoke_session),
        )
        .route("/v1/tenants/{tenant}/sessions", post(sign_in))
        .route(
            "/v1/tenants/{tenant}/sessions/current",
            get(current_session).delete(sign_out),
        )
        .route("/v1/invitations/accept", post(accept_invitation))
        .route(
            "/v1/tenants/{tenant}/api-keys",
            get(list_api_keys).post(create_api_key),
        )
        .route("/v1/tenants/{tenant}/api-keys/{id}", delete(revoke_api_key))
}

/// The value of cookie `name` among the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// The client address of the connection, when the server recorded it.
pub fn client_address(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Extractor: the client address of the connection, if recorded.
pub(super) struct ClientAddress(pub(super) Option<std::net::IpAddr>);

impl FromRequestParts<Arc<Souk>> for ClientAddress {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<Souk>) -> ApiResult<Self> {
        Ok(ClientAddress(client_address(parts)))
    }
}

pub(super) fn set_cookie(
    name: &str,
    value: &str,
    max_age: u64,
    http_only: bool,
    secure: bool,
) -> String {
    let mut cookie = format!("{name}={value}; Path=/; SameSite=Lax; Max-Age={max_age}");
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

pub(super) fn with_cookies<const N: usize>(
    mut response: Response,
    cookies: [String; N],
) -> ApiResult<Response> {
    for cookie in cookies {
        let value = HeaderValue::try_from(cookie)
            .map_err(|e| Problem::from(crate::error::SoukError::Internal(e.into())))?;
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn create_user(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let new: NewUser = parse_json(body)?;
    let (user, invitation, emailed) = souk
        .create_user(&access.principal, &access.tenant, &new)
        .await?;
    let body = json!({"user": user, "invitation": invitation, "emailed": emailed});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_users(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let page = souk
        .people()
        .list_users(&access.tenant, query.after.as_deref(), query.limit)
        .await?;
    Ok(Json(page).into_response())
}

async fn show_user(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(Json(souk.people().show_user(&access.tenant, &id).await?).into_response())
}

async fn update_user(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let changes: UserChanges = parse_json(body)?;
    let user = souk
        .people()
        .update_user(&access.principal, &access.tenant, &id, &changes)
        .await?;
    Ok(Json(user).into_response())
}

async fn delete_user(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let user = souk
        .people()
        .delete_user(&access.principal, &access.tenant, &id)
        .await?;
    Ok(Json(user).into_response())
}

async fn invite(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (invitation, emailed) = souk.invite_user(&access.tenant, &id).await?;
    let mut body = serde_json::to_value(&invitation)
        .map_err(|e| SoukError::Internal(anyhow::anyhow!("invitation: {e}")))?;
    body["emailed"] = emailed.into();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_sessions(
    State(souk): State<Arc<Souk>>,
    person: TenantPerson,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    person.require_admin_or(&id)?;
    let sessions = souk.people().list_sessions(&person.tenant, &id).await?;
    Ok(Json(sessions).into_response())
}

async fn revoke_session(
    State(souk): State<Arc<Souk>>,
    person: TenantPerson,
    Path((_, id, session)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    person.require_admin_or(&id)?;
    let info = souk
        .people()
        .revoke_session(&person.principal, &person.tenant, &id, &session)
        .await?;
    Ok(Json(info).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

async fn sign_in(
    State(souk): State<Arc<Souk>>,
    Path(tenant): Path<String>,
    ClientAddress(address): ClientAddress,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let credentials: Credentials = parse_json(body)?;
    let signed = souk
        .people()
        .sign_in(&tenant, &credentials.email, credentials.password, address)
        .await?;
    let config = &souk.people_state.config;
    let max_age = config.sessions.absolute.as_secs();
    let secure = config.cookie_secure;
    let cookies = [
        set_cookie(SESSION_COOKIE, &signed.token, max_age, true, secure),
        set_cookie(CSRF_COOKIE, &signed.csrf_token, max_age, false, secure),
    ];
    with_cookies((StatusCode::CREATED, Json(signed)).into_response(), cookies)
}

async fn current_session(person: TenantPerson) -> ApiResult<Response> {
    let Principal::User(me) = &person.principal else {
        return Err(Problem::from(crate::error::SoukError::Invalid(
            "only a signed-in user has a current session".into(),
        )));
    };
    let body = json!({
        "user_id": me.user_id,
        "display_name": me.display_name,
        "role": me.role,
        "member_number": me.member_number,
        "session_id": me.session_id,
    });
    Ok(Json(body).into_response())
}

async fn sign_out(State(souk): State<Arc<Souk>>, person: TenantPerson) -> ApiResult<Response> {
    let info = souk
        .people()
        .sign_out(&person.principal, &person.tenant)
        .await?;
    let secure = souk.people_state.config.cookie_secure;
    let cookies = [
        set_cookie(SESSION_COOKIE, "", 0, true, secure),
        set_cookie(CSRF_COOKIE, "", 0, false, secure),
    ];
    with_cookies(Json(info).into_response(), cookies)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Acceptance {
    token: String,
    password: String,
}

async fn accept_invitation(
    State(souk): State<Arc<Souk>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let acceptance: Acceptance = parse_json(body)?;
    let user = souk
        .people()
        .accept_invitation(&acceptance.token, acceptance.password)
        .await?;
    Ok(Json(user).into_response())
}

async fn create_api_key(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let new: NewApiKey = parse_json(body)?;
    let (key, secret) = souk
        .people()
        .create_api_key(&access.principal, &access.tenant, &new)
        .await?;
    let mut body = serde_json::to_value(&key)
        .map_err(|e| Problem::from(crate::error::SoukError::Internal(e.into())))?;
    body["key"] = json!(secret);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_api_keys(State(souk): State<Arc<Souk>>, access: TenantAccess) -> ApiResult<Response> {
    Ok(Json(souk.people().list_api_keys(&access.tenant).await?).into_response())
}

async fn revoke_api_key(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let key = souk
        .people()
        .revoke_api_key(&access.principal, &access.tenant, &id)
        .await?;
    Ok(Json(key).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; souk_csrf=abc"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("x=1;souk_session=souk_ss_tok ; y=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("souk_ss_tok"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "souk"), None);
        let mut empty = HeaderMap::new();
        empty.insert(header::COOKIE, HeaderValue::from_static("souk_session="));
        assert_eq!(cookie(&empty, SESSION_COOKIE), None);
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_when_asked() {
        let c = set_cookie(SESSION_COOKIE, "v", 60, true, false);
        assert_eq!(
            c,
            "souk_session=v; Path=/; SameSite=Lax; Max-Age=60; HttpOnly"
        );
        let c = set_cookie(CSRF_COOKIE, "v", 60, false, true);
        assert_eq!(c, "souk_csrf=v; Path=/; SameSite=Lax; Max-Age=60; Secure");
    }
}
