//! Single sign-on endpoints: a tenant's OpenID Connect provider, and the
//! browser's round trip through it. Each handler parses its input and
//! calls one `Sso` function.
//!
//! | method | path | who |
//! | --- | --- | --- |
//! | GET, PUT, DELETE | `/v1/tenants/{tenant}/sso` | tenant admins |
//! | GET | `/v1/tenants/{tenant}/sso/start?return_to=/path` | anyone (a browser) |
//! | GET | `/v1/tenants/{tenant}/sso/callback` | the provider's redirect |
//!
//! `start` answers `302 Found` to the provider with the `souk_sso` cookie
//! that binds the sign-in to this browser; `callback` answers
//! `303 See Other` to `return_to` with the session cookies a password
//! sign-in sets (`api/people.rs`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::people::{CSRF_COOKIE, ClientAddress, SESSION_COOKIE, cookie, set_cookie, with_cookies};
use super::{ApiResult, Problem, TenantAccess, parse_json};
use crate::error::SoukError;
use crate::souk::Souk;
use crate::sso::CallbackParams;
use crate::sso::input::SsoChanges;

/// The cookie binding a sign-in under way to the browser that started it.
pub const SSO_COOKIE: &str = "souk_sso";

/// The single sign-on routes.
pub(super) fn routes() -> Router<Arc<Souk>> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/sso",
            get(show).put(configure).delete(remove),
        )
        .route("/v1/tenants/{tenant}/sso/start", get(start))
        .route("/v1/tenants/{tenant}/sso/callback", get(callback))
}

async fn show(State(souk): State<Arc<Souk>>, access: TenantAccess) -> ApiResult<Response> {
    Ok(Json(souk.sso().show(&access.tenant).await?).into_response())
}

async fn configure(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let changes: SsoChanges = parse_json(body)?;
    let settings = souk
        .sso()
        .configure(&access.principal, &access.tenant, &changes)
        .await?;
    Ok(Json(settings).into_response())
}

async fn remove(State(souk): State<Arc<Souk>>, access: TenantAccess) -> ApiResult<Response> {
    souk.sso().remove(&access.principal, &access.tenant).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartQuery {
    #[serde(default)]
    return_to: Option<String>,
}

/// The request's own origin, from its `Host` header, when that is a plain
/// host name or address with an optional port.
fn origin(headers: &HeaderMap) -> ApiResult<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .ok_or_else(|| Problem::bad_request("the request has no usable Host header"))?;
    Ok(format!("http://{host}"))
}

fn redirect(status: StatusCode, location: &str) -> ApiResult<Response> {
    let location = HeaderValue::try_from(location)
        .map_err(|e| Problem::from(SoukError::Internal(e.into())))?;
    let mut response = status.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn start(
    State(souk): State<Arc<Souk>>,
    Path(tenant): Path<String>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    query: Result<Query<StartQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let base = origin(&headers)?;
    let started = souk
        .sso()
        .start(&tenant, query.return_to.as_deref(), &base, address)
        .await?;
    let ttl = souk.sso_state.config.login_ttl.as_secs();
    let secure = souk.people_state.config.cookie_secure;
    let mut binding = set_cookie(SSO_COOKIE, &started.browser_secret, ttl, true, secure);
    // Sent back only to this tenant's callback.
    binding = binding.replacen("Path=/", &format!("Path=/v1/tenants/{tenant}/sso/"), 1);
    with_cookies(redirect(StatusCode::FOUND, &started.location)?, [binding])
}

/// What a provider sends back; other parameters (`iss`, `scope`,
/// `session_state`, …) are ignored.
#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

async fn callback(
    State(souk): State<Arc<Souk>>,
    Path(tenant): Path<String>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let params = CallbackParams {
        code: query.code,
        state: query.state,
        error: query.error,
    };
    let browser = cookie(&headers, SSO_COOKIE);
    let finished = souk
        .sso()
        .callback(&tenant, &params, browser, address)
        .await?;
    let config = &souk.people_state.config;
    let max_age = config.sessions.absolute.as_secs();
    let secure = config.cookie_secure;
    let signed = &finished.sign_in;
    let cookies = [
        set_cookie(SESSION_COOKIE, &signed.token, max_age, true, secure),
        set_cookie(CSRF_COOKIE, &signed.csrf_token, max_age, false, secure),
        set_cookie(SSO_COOKIE, "", 0, true, secure).replacen(
            "Path=/",
            &format!("Path=/v1/tenants/{tenant}/sso/"),
            1,
        ),
    ];
    with_cookies(
        redirect(StatusCode::SEE_OTHER, &finished.return_to)?,
        cookies,
    )
}
