//! The HTTP API (axum, JSON).
//!
//! Errors are RFC 9457 problem documents (`application/problem+json`) with a
//! stable `type` URI per kind and a human `detail` — every error answer the
//! host itself makes, including the router's own (405, a path that is not
//! valid UTF-8, ...), which `problem_for_bare_errors` turns into problem
//! documents. Only a module's own answers pass as the module wrote them.
//! A refused module call (tenant at its concurrency cap: 429; host at
//! capacity: 503) carries `Retry-After`. Bodies are read as bytes
//! under a size limit and parsed here, at the boundary, so malformed input
//! gets a 4xx that says what is wrong.
//!
//! | method | path | who |
//! | --- | --- | --- |
//! | GET | `/healthz` | anyone |
//! | GET, POST | `/v1/tenants` | operator |
//! | GET | `/v1/tenants/{tenant}` | operator, the tenant |
//! | GET, POST | `/v1/tenants/{tenant}/tokens` | operator |
//! | DELETE | `/v1/tenants/{tenant}/tokens/{id}` | operator |
//! | GET | `/v1/modules` | operator, tenants |
//! | POST | `/v1/modules` (package bytes) | operator |
//! | GET, POST | `/v1/tenants/{tenant}/modules` | operator, the tenant |
//! | POST | `/v1/tenants/{tenant}/modules/{module}/upgrade` | operator, the tenant |
//! | DELETE | `/v1/tenants/{tenant}/modules/{module}` (`?force=true`: forced; a tenant adds `&confirm={module}`) | operator, the tenant |
//! | GET | `/v1/tenants/{tenant}/audit`, `/v1/tenants/{tenant}/archives` | operator, the tenant |
//! | GET, POST | `/v1/tenants/{tenant}/lockfile` | operator, the tenant |
//! | GET, POST | `/v1/tenants/{tenant}/jobs...` (see `jobs.rs`) | operator, the tenant |
//! | any | `/t/{tenant}/m/{module}/{*path}` | as the route's `access` says (`people.rs`'s doc) |
//! | | module pages on their own origin (a second listener) | see [`pages`] |
//! | | users, sessions, invitations, API keys | see [`people`] |
//! | | single sign-on (OpenID Connect) | see [`sso`] |
//!
//! "The tenant" is a tenant token of the tenant or a signed-in user of it
//! with role `admin`; members get 403 there, API keys 401 (they work only
//! on module routes). A session is a bearer token or the `souk_session`
//! cookie; a cookie-signed request that changes state must carry the
//! session's CSRF token in `X-CSRF-Token` (403 otherwise).
//! | GET, HEAD | `/f/{token}` (a module file through a signed URL) | whoever holds the URL |
//! | GET, POST | `/pay/{token}...` (a renewal invoice's payment link; see `pay_page.rs`) | whoever holds the link |
//! | GET, POST, PATCH, DELETE | `/v1/tenants/{tenant}/modules/{module}/webhooks...`, `.../event-deliveries` (see `webhooks.rs`) | operator, the tenant |
//! | any | `/t/{tenant}/m/{module}/{*path}` | operator, the tenant |

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::{Credentials, Principal, Visitor};
use crate::error::SoukError;
use crate::runtime::{CallError, ModuleRequest};
use crate::souk::Souk;
use crate::tenancy::Tenant;
use crate::{archive, installer};

mod billing;
mod files;
mod jobs;
mod mail;
pub mod pages;
mod pay_page;
mod payments;
mod people;
mod sso;
mod webhooks;

/// Largest JSON or module request body. Default 1 MiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest package upload. 40 MiB (a package holds at most a 32 MiB component).
pub const MAX_PACKAGE_BYTES: usize = 40 * 1024 * 1024;

/// An RFC 9457 problem document.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    /// Extension members (RFC 9457 section 3.2), merged into the body.
    extra: serde_json::Map<String, serde_json::Value>,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl Problem {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            extra: serde_json::Map::new(),
            retry_after: None,
        }
    }

    /// The problem for an error answer made by the router or an extractor
    /// (no route for the method, a path that does not decode, ...), whose
    /// own body is `text` (plain text, or empty).
    fn for_status(status: StatusCode, text: &str) -> Self {
        let (kind, title) = match status {
            StatusCode::BAD_REQUEST => ("invalid-request", "Invalid request"),
            StatusCode::NOT_FOUND => ("not-found", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "Method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "Request body too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported-media-type", "Unsupported media type")
            }
            StatusCode::UNPROCESSABLE_ENTITY => ("invalid-input", "Invalid input"),
            other if other.is_server_error() => ("internal", "Internal error"),
            other => ("http-error", other.canonical_reason().unwrap_or("Error")),
        };
        let detail = if text.trim().is_empty() {
            match status {
                StatusCode::METHOD_NOT_ALLOWED => {
                    "this endpoint does not accept the request's method".to_owned()
                }
                other => other.canonical_reason().unwrap_or("error").to_owned(),
            }
        } else {
            crate::capabilities::log::printable(text.trim(), crate::runtime::MAX_ERROR_BYTES)
        };
        Problem::new(status, kind, title, detail)
    }

    /// The problem for a refused entitlement: 402 when paying (an upgrade,
    /// or settling the subscription) would allow it, 403 when no plan does.
    /// Its status, title, detail and members come from [`souk_denial`], as
    /// the SDK's do for a module's own denials: one body either way.
    pub fn denied(denial: &souk_denial::Denial) -> Self {
        let status = if denial.is_payable() {
            StatusCode::PAYMENT_REQUIRED
        } else {
            StatusCode::FORBIDDEN
        };
        let mut problem = Problem::new(
            status,
            souk_denial::PROBLEM_KIND,
            souk_denial::PROBLEM_TITLE,
            denial.to_string(),
        );
        for (name, member) in denial.members() {
            let value = match member {
                souk_denial::Member::Text(text) => json!(text),
                souk_denial::Member::OptionalText(text) => json!(text),
                souk_denial::Member::OptionalCount(count) => json!(count),
            };
            problem.extra.insert(name.into(), value);
        }
        problem
    }

    fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("https://souk.dev/problems/{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(members) = body.as_object_mut() {
            members.extend(self.extra);
        }
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<SoukError> for Problem {
    fn from(e: SoukError) -> Self {
        use StatusCode as S;
        let detail = e.to_string();
        let retry_after = match &e {
            SoukError::Module(call) => call.retry_after_secs(),
            SoukError::TooManyRequests { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let mut problem = match e {
            SoukError::NotFound(_) => Problem::new(S::NOT_FOUND, "not-found", "Not found", detail),
            SoukError::Conflict(_) => Problem::new(S::CONFLICT, "conflict", "Conflict", detail),
            SoukError::Invalid(_) => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "invalid-input",
                "Invalid input",
                detail,
            ),
            SoukError::PackageRefused(_) => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "package-refused",
                "Package refused",
                detail,
            ),
            SoukError::Dependency(_) => Problem::new(
                S::CONFLICT,
                "dependency-unsatisfied",
                "Dependency not satisfied",
                detail,
            ),
            SoukError::LifecycleFailed(_) => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "lifecycle-failed",
                "Module lifecycle step failed; nothing was changed",
                detail,
            ),
            SoukError::Unauthorized(_) => {
                Problem::new(S::UNAUTHORIZED, "unauthorized", "Unauthorized", detail)
            }
            SoukError::Forbidden(_) => Problem::new(S::FORBIDDEN, "forbidden", "Forbidden", detail),
            SoukError::Revoked(_) => Problem::new(
                S::FORBIDDEN,
                "module-revoked",
                "Module version revoked",
                detail,
            ),
            SoukError::MethodNotAllowed(_) => Problem::new(
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                detail,
            ),
            SoukError::Denied(denial) => Problem::denied(&denial),
            SoukError::PaymentRequired(_) => Problem::new(
                S::PAYMENT_REQUIRED,
                "payment-required",
                "Payment required",
                detail,
            ),
            SoukError::ProviderUnavailable(_) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "payment-provider-unavailable",
                "Payment provider unavailable; retry",
                detail,
            ),
            SoukError::TooManyRequests { .. } => Problem::new(
                S::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
                detail,
            ),
            SoukError::Module(CallError::Timeout(_)) => Problem::new(
                S::GATEWAY_TIMEOUT,
                "module-timeout",
                "Module timed out",
                detail,
            ),
            SoukError::Module(CallError::Capacity { .. }) => Problem::new(
                S::SERVICE_UNAVAILABLE,
                "host-at-capacity",
                "Host at capacity",
                detail,
            ),
            SoukError::Module(CallError::TenantBusy { limit, .. }) => {
                let mut problem = Problem::new(
                    S::TOO_MANY_REQUESTS,
                    "tenant-busy",
                    "Too many module calls at once",
                    detail,
                );
                problem.extra.insert("limit".into(), json!(limit));
                problem
            }
            SoukError::Module(CallError::BadAnswer { .. }) => Problem::new(
                S::BAD_GATEWAY,
                "module-answer-refused",
                "Module answer refused",
                detail,
            ),
            SoukError::Module(_) => {
                Problem::new(S::BAD_GATEWAY, "module-failed", "Module failed", detail)
            }
            SoukError::Internal(ref inner) => {
                tracing::error!(error = %format!("{inner:#}"), "internal error");
                Problem::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the host failed unexpectedly; the operator's log has the details",
                )
            }
        };
        problem.retry_after = retry_after;
        problem
    }
}

/// Marks a response as a module's own answer: passed on as the module made
/// it, never rewritten by [`problem_for_bare_errors`].
#[derive(Debug, Clone, Copy)]
struct ModuleAnswer;

/// Turns an error answer that is not a problem document — the router's
/// empty 405, an extractor's `text/plain` rejection (e.g. a path segment
/// that is not valid UTF-8) — into one with the same status and headers
/// (`Allow` stays), so every error the host makes is a problem document.
/// Modules' own answers ([`ModuleAnswer`]) pass unchanged.
async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    if !(status.is_client_error() || status.is_server_error())
        || is_problem
        || response.extensions().get::<ModuleAnswer>().is_some()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Rejection texts are short; a longer one is cut, not buffered whole.
    let text = match axum::body::to_bytes(body, crate::runtime::MAX_ERROR_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let (problem, body) = Problem::for_status(status, &text)
        .into_response()
        .into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(problem.headers);
    Response::from_parts(parts, body)
}

type ApiResult<T> = Result<T, Problem>;

/// Builds the router.
pub fn router(souk: Arc<Souk>) -> Router {
    let packages = Router::new()
        .route("/v1/modules", post(add_module))
        .layer(DefaultBodyLimit::max(MAX_PACKAGE_BYTES));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/v1/tenants/{tenant}", get(show_tenant))
        .route(
            "/v1/tenants/{tenant}/tokens",
            get(list_tokens).post(create_token),
        )
        .route("/v1/tenants/{tenant}/tokens/{id}", delete(revoke_token))
        .route("/v1/modules", get(list_modules))
        .route(
            "/v1/tenants/{tenant}/modules",
            get(list_installed).post(install),
        )
        .route("/v1/tenants/{tenant}/modules/{module}", delete(uninstall))
        .route(
            "/v1/tenants/{tenant}/modules/{module}/upgrade",
            post(upgrade),
        )
        .route("/v1/tenants/{tenant}/audit", get(audit_log))
        .route("/v1/tenants/{tenant}/archives", get(list_archives))
        .route(
            "/v1/tenants/{tenant}/lockfile",
            get(show_lockfile).post(install_lockfile),
        )
        .merge(billing::routes())
        .merge(jobs::routes())
        .merge(people::routes())
        .merge(webhooks::routes())
        .merge(sso::routes())
        .merge(mail::routes())
        .merge(payments::routes())
        .merge(pay_page::routes())
        .route("/t/{tenant}/m/{module}", any(module_root))
        .route("/t/{tenant}/m/{module}/{*path}", any(module_route))
        .route("/f/{token}", get(files::download))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(packages)
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "no such endpoint",
            )
        })
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(souk)
}

/// What the request presents: its bearer token, session cookie and CSRF
/// header, and whether its method changes state.
fn credentials(parts: &Parts) -> Credentials<'_> {
    let headers = &parts.headers;
    Credentials {
        bearer: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ")),
        session_cookie: people::cookie(headers, people::SESSION_COOKIE),
        csrf: headers
            .get(people::CSRF_HEADER)
            .and_then(|v| v.to_str().ok()),
        changes_state: !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS),
    }
}

async fn principal(souk: &Souk, parts: &Parts) -> ApiResult<Principal> {
    Ok(souk.auth.identify(&credentials(parts)).await?)
}

/// Extractor: an authenticated caller that may use `/v1` as an
/// administrator (the operator, a tenant token, a user with role `admin`).
struct Authenticated;

impl FromRequestParts<Arc<Souk>> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, souk: &Arc<Souk>) -> ApiResult<Self> {
        principal(souk, parts).await?.require_tenant_admin()?;
        Ok(Authenticated)
    }
}

/// Extractor: who sent a module request. No credential, or one that is not
/// valid (unknown, expired, revoked), is an anonymous visitor — a `public`
/// route serves it, any other answers 401; a cookie session without its
/// CSRF token on a request that changes state is refused (403).
struct ModuleVisitor(Visitor);

impl FromRequestParts<Arc<Souk>> for ModuleVisitor {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, souk: &Arc<Souk>) -> ApiResult<Self> {
        let credentials = credentials(parts);
        let principal = if credentials.bearer.is_none() && credentials.session_cookie.is_none() {
            None
        } else {
            match souk.auth.identify(&credentials).await {
                Ok(principal) => Some(principal),
                Err(SoukError::Unauthorized(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(ModuleVisitor(Visitor {
            principal,
            address: people::client_address(parts),
        }))
    }
}

/// Extractor: the operator, and nobody else.
struct Operator;

impl FromRequestParts<Arc<Souk>> for Operator {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, souk: &Arc<Souk>) -> ApiResult<Self> {
        principal(souk, parts).await?.require_operator()?;
        Ok(Operator)
    }
}

/// Extractor: the tenant named by the `{tenant}` path segment, which the
/// authenticated caller may act for as its administrator (a member: 403).
/// A tenant the caller may not see is answered exactly like one that does
/// not exist.
struct TenantAccess {
    principal: Principal,
    tenant: Tenant,
}

impl FromRequestParts<Arc<Souk>> for TenantAccess {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, souk: &Arc<Souk>) -> ApiResult<Self> {
        let person = TenantPerson::from_request_parts(parts, souk).await?;
        person.principal.require_tenant_admin()?;
        Ok(TenantAccess {
            principal: person.principal,
            tenant: person.tenant,
        })
    }
}

/// Extractor: the tenant named by the `{tenant}` path segment and a caller
/// of it (any role; not an API key). A tenant the caller may not see is
/// answered exactly like one that does not exist.
struct TenantPerson {
    principal: Principal,
    tenant: Tenant,
}

impl TenantPerson {
    /// Checks that the caller is a tenant administrator or user `user_id`.
    fn require_admin_or(&self, user_id: &str) -> ApiResult<()> {
        match &self.principal {
            Principal::User(me) if me.user_id == user_id => Ok(()),
            other => Ok(other.require_tenant_admin()?),
        }
    }
}

impl FromRequestParts<Arc<Souk>> for TenantPerson {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, souk: &Arc<Souk>) -> ApiResult<Self> {
        let principal = principal(souk, parts).await?;
        if let Principal::ApiKey(_) = principal {
            principal.require_tenant_admin()?;
        }
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, souk)
            .await
            .map_err(|e| Problem::bad_request(e.body_text()))?;
        let slug = params
            .get("tenant")
            .ok_or_else(|| Problem::bad_request("the path names no tenant"))?;
        let tenant = souk.tenancy.by_slug(slug).await?;
        principal.check_tenant(&tenant)?;
        Ok(TenantPerson { principal, tenant })
    }
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                e.body_text(),
            )
        } else {
            Problem::bad_request(e.body_text())
        }
    })
}

/// Parses a JSON body, naming what is wrong when it does not fit `T`.
fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body_bytes(body)?;
    if bytes.is_empty() {
        return Err(Problem::bad_request("a JSON body is required"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    slug: String,
    #[serde(default)]
    name: Option<String>,
}

async fn create_tenant(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let new: NewTenant = parse_json(body)?;
    let name = new.name.unwrap_or_else(|| new.slug.clone());
    let tenant = souk.tenancy.create(&new.slug, &name).await?;
    Ok((StatusCode::CREATED, Json(tenant)).into_response())
}

async fn list_tenants(State(souk): State<Arc<Souk>>, _: Operator) -> ApiResult<Response> {
    Ok(Json(souk.tenancy.list().await?).into_response())
}

async fn show_tenant(access: TenantAccess) -> ApiResult<Response> {
    Ok(Json(access.tenant).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
}

async fn create_token(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    access: TenantAccess,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let new: NewToken = parse_json(body)?;
    let (info, token) = souk.auth.create_token(&access.tenant, &new.name).await?;
    let body =
        json!({"id": info.id, "name": info.name, "created_at": info.created_at, "token": token});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn list_tokens(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    access: TenantAccess,
) -> ApiResult<Response> {
    Ok(Json(souk.auth.list_tokens(&access.tenant).await?).into_response())
}

async fn revoke_token(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(Json(souk.auth.revoke_token(&access.tenant, &id).await?).into_response())
}

async fn list_modules(State(souk): State<Arc<Souk>>, _: Authenticated) -> ApiResult<Response> {
    Ok(Json(souk.catalog.list().await?).into_response())
}

async fn add_module(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body)?;
    let version = souk.add_package(&bytes).await?;
    let status = if version.newly_added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(version)).into_response())
}

async fn list_installed(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
) -> ApiResult<Response> {
    Ok(Json(souk.installer().list(&access.tenant).await?).into_response())
}

async fn install(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: installer::InstallRequest = parse_json(body)?;
    let report = souk
        .installer()
        .install(&access.principal, &access.tenant, &request)
        .await?;
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UpgradeRequest {
    #[serde(default)]
    version: Option<String>,
}

async fn upgrade(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body)?;
    let request: UpgradeRequest = if bytes.is_empty() {
        UpgradeRequest::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?
    };
    let version = request.version.as_deref();
    let report = souk
        .installer()
        .upgrade(&access.principal, &access.tenant, &module, version)
        .await?;
    Ok(Json(report).into_response())
}

/// Query of `DELETE /v1/tenants/{tenant}/modules/{module}`:
/// `?force=true` forces the uninstall (the operator; a tenant token also
/// needs `confirm=<module slug>`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UninstallQuery {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    confirm: Option<String>,
}

async fn uninstall(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
    query: Result<Query<UninstallQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let removal = if query.force {
        installer::Removal::Forced {
            confirmation: query.confirm,
        }
    } else if query.confirm.is_some() {
        return Err(Problem::bad_request(
            "`confirm` confirms a forced uninstall; add force=true, or leave it out",
        ));
    } else {
        installer::Removal::Normal
    };
    let report = souk
        .installer()
        .uninstall(&access.principal, &access.tenant, &module, &removal)
        .await?;
    Ok(Json(report).into_response())
}

async fn audit_log(State(souk): State<Arc<Souk>>, access: TenantAccess) -> ApiResult<Response> {
    Ok(Json(souk.installer().audit_log(&access.tenant).await?).into_response())
}

async fn list_archives(State(souk): State<Arc<Souk>>, access: TenantAccess) -> ApiResult<Response> {
    Ok(Json(archive::list(&souk.control, &access.tenant).await?).into_response())
}

async fn show_lockfile(State(souk): State<Arc<Souk>>, access: TenantAccess) -> ApiResult<Response> {
    let lock = souk.installer().lockfile(&access.tenant).await?;
    Ok(([(header::CONTENT_TYPE, "application/toml")], lock.to_toml()).into_response())
}

async fn install_lockfile(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Problem::bad_request("the lockfile is not UTF-8 text"))?;
    let installed = souk
        .installer()
        .install_lockfile(&access.principal, &access.tenant, text)
        .await?;
    Ok(Json(json!({ "installed": installed })).into_response())
}

async fn module_root(
    State(souk): State<Arc<Souk>>,
    ModuleVisitor(visitor): ModuleVisitor,
    method: Method,
    headers: HeaderMap,
    Path((tenant, module)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request = module_request(method, &headers, String::new(), query, body)?;
    serve_module(&souk, &visitor, &tenant, &module, request).await
}

async fn module_route(
    State(souk): State<Arc<Souk>>,
    ModuleVisitor(visitor): ModuleVisitor,
    method: Method,
    headers: HeaderMap,
    Path((tenant, module, path)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request = module_request(method, &headers, path, query, body)?;
    serve_module(&souk, &visitor, &tenant, &module, request).await
}

/// The request as a module sees it (private headers are removed later, by
/// the dispatcher).
fn module_request(
    method: Method,
    headers: &HeaderMap,
    path: String,
    query: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<ModuleRequest> {
    Ok(ModuleRequest {
        method: method.as_str().to_owned(),
        path: format!("/{path}"),
        query: query.unwrap_or_default(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_owned(), v.to_owned()))
            })
            .collect(),
        body: body_bytes(body)?.to_vec(),
    })
}

async fn serve_module(
    souk: &Souk,
    visitor: &Visitor,
    tenant: &str,
    module: &str,
    request: ModuleRequest,
) -> ApiResult<Response> {
    let response = souk
        .dispatcher()
        .dispatch(visitor, tenant, module, request)
        .await?;
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = Response::builder().status(status);
    for (name, value) in &response.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) else {
            continue;
        };
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "set-cookie"
        ) {
            continue;
        }
        out = out.header(name, value);
    }
    out = out.extension(ModuleAnswer);
    out.body(Body::from(response.body))
        .map_err(|e| Problem::from(SoukError::Internal(e.into())))
}
