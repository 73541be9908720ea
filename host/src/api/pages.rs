//! Module pages on an origin of their own (issue 15; docs/module-pages.md).
//!
//! `souk serve` answers module paths (`/t/{tenant}/m/{module}/...`) on a
//! second listener, the *module origin*, whose router has nothing else:
//! no `/v1`, no sign-in, no files. On the API origin the same paths still
//! answer API clients (bearer tokens, API keys), but a browser navigation
//! to one (`Sec-Fetch-Mode: navigate`) is sent to the module origin with a
//! 303, so pages a person opens live there.
//!
//! Wherever it is served, every module answer carries the host's
//! `Content-Security-Policy: sandbox ...` without `allow-same-origin`
//! (`runtime::answer`): the document gets an opaque origin, so even where
//! cookies do reach the module origin (cookies are not isolated by port:
//! on one loopback address every port gets them) its scripts read none,
//! and their requests are cross-site, so the host's `SameSite=Lax` session
//! cookie is not sent with them. On the module origin the host's own
//! answers (problems for 401, 404, ...) carry the policy too.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use super::{MAX_BODY_BYTES, Problem, module_root, module_route, problem_for_bare_errors};
use crate::runtime::answer::HOST_CSP;
use crate::souk::Souk;

/// The router of the module origin: module paths only; anything else is
/// a 404 problem. Every answer carries `X-Content-Type-Options: nosniff`
/// and the host's sandbox policy.
pub fn module_origin_router(souk: Arc<Souk>) -> Router {
    Router::new()
        .route("/t/{tenant}/m/{module}", any(module_root))
        .route("/t/{tenant}/m/{module}/{*path}", any(module_route))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "the module origin serves module pages only (/t/{tenant}/m/{module}/...)",
            )
        })
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .layer(axum::middleware::map_response(sandbox_everything))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(souk)
}

/// On the module origin, the host's own answers get the module answers'
/// protection too (a module answer has it already).
async fn sandbox_everything(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if !headers
        .get_all(header::CONTENT_SECURITY_POLICY)
        .iter()
        .any(|v| v.as_bytes() == HOST_CSP.as_bytes())
    {
        headers.append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HOST_CSP),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Wraps the API origin's router so that a browser's navigation to a
/// module path (GET or HEAD with `Sec-Fetch-Mode: navigate`) is answered
/// with `303 See Other` to the same path and query on `module_origin`
/// (`scheme://host[:port]`, no trailing `/`). Other requests to module
/// paths (API clients, a page's `fetch`) are served where they are, with
/// the sandbox policy.
pub fn send_page_visits_to(router: Router, module_origin: &str) -> Router {
    let origin: Arc<str> = Arc::from(module_origin.trim_end_matches('/'));
    router.layer(axum::middleware::from_fn_with_state(
        origin,
        redirect_navigation,
    ))
}

async fn redirect_navigation(
    State(origin): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    let navigates = request
        .headers()
        .get("sec-fetch-mode")
        .is_some_and(|v| v.as_bytes() == b"navigate");
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    let uri = request.uri();
    if navigates && safe && is_module_path(uri.path()) {
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        if let Ok(location) = HeaderValue::try_from(format!("{origin}{path}")) {
            return (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
        }
    }
    next.run(request).await
}

/// Whether `path` is a module path: `/t/{tenant}/m/{module}` or below.
fn is_module_path(path: &str) -> bool {
    let mut segments = path.split('/').skip(1);
    let (Some("t"), Some(tenant), Some("m"), Some(module)) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return false;
    };
    !tenant.is_empty() && !module.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_are_recognised() {
        assert!(is_module_path("/t/acme/m/cards"));
        assert!(is_module_path("/t/acme/m/cards/page"));
        assert!(!is_module_path("/t/acme/m/"));
        assert!(!is_module_path("/t/acme"));
        assert!(!is_module_path("/v1/tenants/acme"));
        assert!(!is_module_path("/f/token"));
    }
}
