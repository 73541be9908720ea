//! Dispatches a module's requests to handlers by method and path pattern.

use std::fmt;

use crate::http::{IntoResponse, Problem, Request, Response, percent_decode};

type Handler = Box<dyn Fn(&Request) -> Response + Send + Sync>;
type Check = Box<dyn Fn(&Request) -> Result<(), Problem> + Send + Sync>;

/// Maps method and path patterns to handlers.
///
/// A pattern is a path whose segments are literals, `{name}` (exactly one
/// non-empty segment, read with [`Request::param`]), or, as the last segment
/// only, `{*name}` (the rest of the path, possibly empty). These are the
/// patterns of `routes` in `module.yaml`.
///
/// When several routes match a path, the most specific wins: segment by
/// segment from the left, a literal beats `{name}`, which beats `{*name}`.
/// A `HEAD` request without a `HEAD` route is served by the `GET` route, as
/// the host does. A path no route matches gets a 404 problem; a path some
/// route matches with another method gets a 405 problem with an `Allow`
/// header.
///
/// ```
/// use souk_sdk::{Problem, Request, Response, Router};
///
/// fn show(request: &Request) -> Result<Response, Problem> {
///     let number = request.param("number")?;
///     Ok(Response::json(200, &number))
/// }
///
/// let router = Router::new()
///     .get("/members/{number}", show)
///     .delete("/members/{number}", |_: &Request| Response::no_content());
/// let response = router.handle(Request::new("GET", "/members/M-7", "", vec![], vec![]));
/// assert_eq!(response.body(), br#""M-7""#);
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    before: Vec<Check>,
}

struct Route {
    method: String,
    pattern: String,
    segments: Vec<Segment>,
    handler: Handler,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

impl Segment {
    /// Lower is more specific.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
            Segment::Rest(_) => 2,
        }
    }
}

impl Router {
    /// A router without routes: every request gets a 404.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route for any method (upper-cased).
    ///
    /// # Panics
    ///
    /// When `pattern` is not a valid pattern (see [`Router`]) or the same
    /// method and pattern are already routed. Patterns are part of the
    /// module's code, so this is a bug to fix, not an input to handle.
    #[must_use]
    pub fn route<R, F>(mut self, method: &str, pattern: &str, handler: F) -> Self
    where
        R: IntoResponse,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        let method = method.to_ascii_uppercase();
        let segments = match parse_pattern(pattern) {
            Ok(segments) => segments,
            Err(reason) => panic!("invalid route pattern `{pattern}`: {reason}"),
        };
        if self
            .routes
            .iter()
            .any(|route| route.method == method && same_shape(&route.segments, &segments))
        {
            panic!("route {method} {pattern} is registered twice");
        }
        self.routes.push(Route {
            method,
            pattern: pattern.to_owned(),
            segments,
            handler: Box::new(move |request| handler(request).into_response()),
        });
        self
    }

    /// Runs `check` before the handler of every matched route, in the
    /// order added; a check's problem is the answer and the handler does
    /// not run. For what every route needs first (e.g. noting
    /// [`Request::public_url`] in the module's settings).
    #[must_use]
    pub fn before<F>(mut self, check: F) -> Self
    where
        F: Fn(&Request) -> Result<(), Problem> + Send + Sync + 'static,
    {
        self.before.push(Box::new(check));
        self
    }

    /// Adds a `GET` route. See [`Router::route`].
    #[must_use]
    pub fn get<R, F>(self, pattern: &str, handler: F) -> Self
    where
        R: IntoResponse,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.route("GET", pattern, handler)
    }

    /// Adds a `POST` route. See [`Router::route`].
    #[must_use]
    pub fn post<R, F>(self, pattern: &str, handler: F) -> Self
    where
        R: IntoResponse,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.route("POST", pattern, handler)
    }

    /// Adds a `PUT` route. See [`Router::route`].
    #[must_use]
    pub fn put<R, F>(self, pattern: &str, handler: F) -> Self
    where
        R: IntoResponse,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.route("PUT", pattern, handler)
    }

    /// Adds a `PATCH` route. See [`Router::route`].
    #[must_use]
    pub fn patch<R, F>(self, pattern: &str, handler: F) -> Self
    where
        R: IntoResponse,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.route("PATCH", pattern, handler)
    }

    /// Adds a `DELETE` route. See [`Router::route`].
    #[must_use]
    pub fn delete<R, F>(self, pattern: &str, handler: F) -> Self
    where
        R: IntoResponse,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.route("DELETE", pattern, handler)
    }

    /// Serves a request with the best-matching route's handler, or answers
    /// 404 / 405 with a problem document.
    pub fn handle(&self, mut request: Request) -> Response {
        let best = self.best_match(&request, request.method()).or_else(|| {
            (request.method() == "HEAD")
                .then(|| self.best_match(&request, "GET"))
                .flatten()
        });
        if let Some((route, params)) = best {
            request.set_params(params);
            if let Err(problem) = self.before.iter().try_for_each(|check| check(&request)) {
                return problem.into_response();
            }
            return (route.handler)(&request);
        }
        let path_segments = split_path(request.path());
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            if match_segments(&route.segments, &path_segments).is_some()
                && !allowed.contains(&route.method.as_str())
            {
                allowed.push(&route.method);
            }
        }
        if allowed.is_empty() {
            return Problem::not_found(format!(
                "no route matches {} {}",
                request.method(),
                request.path()
            ))
            .into_response();
        }
        allowed.sort_unstable();
        let allow = allowed.join(", ");
        Problem::method_not_allowed(format!(
            "{} is not allowed on {}; allowed: {allow}",
            request.method(),
            request.path()
        ))
        .into_response()
        .with_header("allow", allow)
    }
}

impl Router {
    /// The most specific route for `method` whose pattern matches the
    /// request's path, with the captured parameters.
    fn best_match(
        &self,
        request: &Request,
        method: &str,
    ) -> Option<(&Route, Vec<(String, String)>)> {
        let path_segments = split_path(request.path());
        let mut best: Option<(&Route, Vec<(String, String)>)> = None;
        for route in self.routes.iter().filter(|route| route.method == method) {
            let Some(params) = match_segments(&route.segments, &path_segments) else {
                continue;
            };
            let more_specific = best
                .as_ref()
                .is_none_or(|(current, _)| specificity(route) < specificity(current));
            if more_specific {
                best = Some((route, params));
            }
        }
        best
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.routes
                    .iter()
                    .map(|route| format!("{} {}", route.method, route.pattern)),
            )
            .finish()
    }
}

/// Whether two patterns match exactly the same paths (parameter names aside).
fn same_shape(left: &[Segment], right: &[Segment]) -> bool {
    left.len() == right.len()
        && left.iter().zip(right).all(|pair| match pair {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            (Segment::Param(_), Segment::Param(_)) | (Segment::Rest(_), Segment::Rest(_)) => true,
            _ => false,
        })
}

fn specificity(route: &Route) -> Vec<u8> {
    route.segments.iter().map(Segment::rank).collect()
}

/// `/` has no segments; `/a/b` has `a` and `b`; `/a/` has `a` and an empty
/// one.
fn split_path(path: &str) -> Vec<&str> {
    let path = path.strip_prefix('/').unwrap_or(path);
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    }
}

fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    if !pattern.starts_with('/') {
        return Err("it must start with `/`".to_owned());
    }
    let raw_segments = split_path(pattern);
    let mut segments = Vec::with_capacity(raw_segments.len());
    let mut names: Vec<&str> = Vec::new();
    for (index, raw) in raw_segments.iter().enumerate() {
        if raw.is_empty() {
            return Err("it has an empty segment".to_owned());
        }
        let segment = match raw
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(inner) => {
                let (name, is_rest) = match inner.strip_prefix('*') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if !is_parameter_name(name) {
                    return Err(format!("`{raw}` is not `{{name}}` or `{{*name}}`"));
                }
                if names.contains(&name) {
                    return Err(format!("parameter `{name}` appears twice"));
                }
                names.push(name);
                if is_rest {
                    if index + 1 != raw_segments.len() {
                        return Err(format!("`{raw}` must be the last segment"));
                    }
                    Segment::Rest(name.to_owned())
                } else {
                    Segment::Param(name.to_owned())
                }
            }
            None if raw.contains(['{', '}']) => {
                return Err(format!("`{raw}` mixes a parameter with literal text"));
            }
            None => Segment::Literal((*raw).to_owned()),
        };
        segments.push(segment);
    }
    Ok(segments)
}

fn is_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The captured parameters when `path` matches `pattern`.
fn match_segments(pattern: &[Segment], path: &[&str]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    for (index, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Literal(literal) => {
                let actual = path.get(index)?;
                if percent_decode(actual, false) != *literal {
                    return None;
                }
            }
            Segment::Param(name) => {
                let actual = path.get(index).filter(|actual| !actual.is_empty())?;
                params.push((name.clone(), percent_decode(actual, false)));
            }
            Segment::Rest(name) => {
                let rest = path.get(index..).unwrap_or_default();
                params.push((name.clone(), percent_decode(&rest.join("/"), false)));
                return Some(params);
            }
        }
    }
    (pattern.len() == path.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> Request {
        Request::new(method, path, "", Vec::new(), Vec::new())
    }

    fn echo(name: &'static str) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
        move |request: &Request| {
            let params: Vec<String> = request
                .params()
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            Response::text(
                200,
                format!("{name} {}", params.join(" ")).trim_end().to_owned(),
            )
        }
    }

    fn body(response: &Response) -> &str {
        std::str::from_utf8(response.body()).expect("utf-8 body")
    }

    fn members_router() -> Router {
        Router::new()
            .get("/members", echo("list"))
            .post("/members", echo("create"))
            .get("/members/{number}", echo("show"))
            .put("/members/{number}", echo("replace"))
            .delete("/members/{number}", echo("remove"))
            .get("/members/export", echo("export"))
            .get("/files/{*path}", echo("file"))
            .get("/", echo("root"))
    }

    #[test]
    fn routes_match_by_method_and_literal_path() {
        let router = members_router();
        assert_eq!(body(&router.handle(request("GET", "/members"))), "list");
        assert_eq!(body(&router.handle(request("post", "/members"))), "create");
        assert_eq!(body(&router.handle(request("GET", "/"))), "root");
    }

    #[test]
    fn parameters_capture_one_decoded_segment() {
        let router = members_router();
        assert_eq!(
            body(&router.handle(request("GET", "/members/M-7"))),
            "show number=M-7"
        );
        assert_eq!(
            body(&router.handle(request("PUT", "/members/A%20B"))),
            "replace number=A B"
        );
        assert_eq!(
            body(&router.handle(request("DELETE", "/members/7"))),
            "remove number=7"
        );
    }

    #[test]
    fn literal_segments_win_over_parameters_regardless_of_order() {
        let router = members_router();
        assert_eq!(
            body(&router.handle(request("GET", "/members/export"))),
            "export"
        );
    }

    #[test]
    fn rest_parameter_captures_the_remaining_path() {
        let router = members_router();
        assert_eq!(
            body(&router.handle(request("GET", "/files/a/b/c.txt"))),
            "file path=a/b/c.txt"
        );
        assert_eq!(body(&router.handle(request("GET", "/files"))), "file path=");
    }

    #[test]
    fn head_falls_back_to_the_get_route() {
        let router = members_router().route("HEAD", "/members/export", echo("head export"));
        assert_eq!(body(&router.handle(request("HEAD", "/members"))), "list");
        assert_eq!(
            body(&router.handle(request("HEAD", "/members/export"))),
            "head export"
        );
        assert_eq!(router.handle(request("HEAD", "/nope")).status(), 404);
    }

    #[test]
    fn unknown_paths_get_a_404_problem() {
        let router = members_router();
        for path in ["/nope", "/members/", "/members/7/notes", "/members//x"] {
            let response = router.handle(request("GET", path));
            assert_eq!(response.status(), 404, "{path}");
            assert_eq!(
                response.header("content-type"),
                Some("application/problem+json")
            );
        }
    }

    #[test]
    fn known_paths_with_another_method_get_a_405_with_allow() {
        let router = members_router();
        let response = router.handle(request("PATCH", "/members/7"));
        assert_eq!(response.status(), 405);
        assert_eq!(response.header("allow"), Some("DELETE, GET, PUT"));
        let response = router.handle(request("DELETE", "/members"));
        assert_eq!(response.status(), 405);
        assert_eq!(response.header("allow"), Some("GET, POST"));
    }

    #[test]
    fn handlers_may_return_results_of_problems() {
        let router = Router::new().get("/members/{number}", |request: &Request| {
            let number = request.param("number")?;
            let missing = request.param("missing")?;
            Ok::<_, Problem>(Response::text(200, format!("{number}{missing}")))
        });
        let response = router.handle(request("GET", "/members/1"));
        assert_eq!(response.status(), 500);
    }

    #[test]
    fn checks_run_before_matched_handlers_and_may_answer_instead() {
        let router = Router::new()
            .before(|request: &Request| match request.header("x-block") {
                Some(_) => Err(Problem::bad_request("blocked")),
                None => Ok(()),
            })
            .get("/members/{number}", echo("show"));
        let response = router.handle(request("GET", "/members/7"));
        assert_eq!(body(&response), "show number=7");
        let blocked = Request::new(
            "GET",
            "/members/7",
            "",
            vec![("x-block".into(), "1".into())],
            Vec::new(),
        );
        assert_eq!(router.handle(blocked).status(), 400);
        // No route: no check runs, the 404 stands.
        let unrouted = Request::new(
            "GET",
            "/nowhere",
            "",
            vec![("x-block".into(), "1".into())],
            Vec::new(),
        );
        assert_eq!(router.handle(unrouted).status(), 404);
    }

    #[test]
    fn invalid_patterns_are_refused() {
        assert!(parse_pattern("members").is_err());
        assert!(parse_pattern("/members/{}").is_err());
        assert!(parse_pattern("/members/{1x}").is_err());
        assert!(parse_pattern("/members/x{id}").is_err());
        assert!(parse_pattern("/{*rest}/x").is_err());
        assert!(parse_pattern("/{id}/{id}").is_err());
        assert!(parse_pattern("/a//b").is_err());
        assert_eq!(
            parse_pattern("/members/{number}/{*rest}"),
            Ok(vec![
                Segment::Literal("members".into()),
                Segment::Param("number".into()),
                Segment::Rest("rest".into()),
            ])
        );
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn registering_a_route_twice_panics() {
        let _router = Router::new()
            .get("/members/{a}", echo("one"))
            .get("/members/{b}", echo("two"));
    }
}
