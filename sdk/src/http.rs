//! The HTTP side of a module: the [`Request`] the host routed to it, the
//! [`Response`] it returns, and [`Problem`] documents (RFC 9457) for errors.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::{DbError, QueryError};

/// The media type of a problem document (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The header the host sets on every request with the public URL of the
/// module's mount ([`Request::public_url`]).
pub const PUBLIC_URL_HEADER: &str = "souk-public-url";

/// An HTTP request routed to the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    params: Vec<(String, String)>,
}

impl Request {
    /// A request as the host hands it over: `path` is relative to the
    /// module's mount point and starts with `/`; `query` is the raw query
    /// string without the `?`. The method is upper-cased.
    pub fn new(
        method: impl Into<String>,
        path: impl Into<String>,
        query: impl Into<String>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Self {
        let mut method = method.into();
        method.make_ascii_uppercase();
        Self {
            method,
            path: path.into(),
            query: query.into(),
            headers,
            body,
            params: Vec::new(),
        }
    }

    /// The method, upper-cased (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path relative to the module's mount point, still percent-encoded.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string, without the leading `?`.
    pub fn query_string(&self) -> &str {
        self.query.strip_prefix('?').unwrap_or(&self.query)
    }

    /// The query string decoded into name-value pairs, in order
    /// (`application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte).
    /// A pair without `=` has an empty value.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(self.query_string())
    }

    /// The first value of a query parameter, decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Every value of a query parameter, decoded, in order.
    pub fn query_all(&self, name: &str) -> Vec<String> {
        self.query_pairs()
            .into_iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value)
            .collect()
    }

    /// The first value of a query parameter, parsed with [`FromStr`];
    /// `Ok(None)` when the parameter is absent.
    ///
    /// # Errors
    ///
    /// A 400 [`Problem`] naming the parameter when its value does not parse.
    pub fn query_parsed<T: FromStr>(&self, name: &str) -> Result<Option<T>, Problem>
    where
        T::Err: fmt::Display,
    {
        match self.query(name) {
            None => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|error: T::Err| {
                Problem::bad_request(format!("query parameter `{name}` = `{raw}`: {error}"))
            }),
        }
    }

    /// The headers, in the order the host passed them.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The absolute public URL of this module's mount for the calling
    /// tenant, e.g. `https://m.example.org/t/acme/m/digital-card`, without
    /// a trailing `/`: append a route's path to link to it (a QR code, a
    /// share link, a page's own URL). The host sets it on every request it
    /// serves (the `souk-public-url` header) and drops any copy a client
    /// sent, so it can be trusted. `None` when the host did not set it (it
    /// serves nothing, as in a `souk` CLI call).
    pub fn public_url(&self) -> Option<&str> {
        self.header(PUBLIC_URL_HEADER)
    }

    /// The raw body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body parsed as JSON into `T`.
    ///
    /// # Errors
    ///
    /// [`BodyError::Malformed`] when the body is not JSON at all,
    /// [`BodyError::Shape`] when it is JSON but does not fit `T`. Both turn
    /// into a [`Problem`] (400 and 422) with `?` in a handler that returns
    /// `Result<_, Problem>`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, BodyError> {
        serde_json::from_slice(&self.body).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => BodyError::Shape(error),
            _ => BodyError::Malformed(error),
        })
    }

    /// A path parameter captured by the [`crate::Router`] (`{number}` in
    /// `/members/{number}`), percent-decoded.
    ///
    /// # Errors
    ///
    /// A 500 [`Problem`] when the matched route has no such parameter: a
    /// mismatch between the route pattern and the handler, not a caller
    /// error.
    pub fn param(&self, name: &str) -> Result<&str, Problem> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| {
                Problem::internal(format!("the matched route has no path parameter `{name}`"))
            })
    }

    /// Every path parameter captured by the router, in pattern order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    pub(crate) fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }
}

/// Why a request body did not parse as the JSON a handler expects.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is not JSON (syntax error, empty or truncated body).
    #[error("the request body is not valid JSON: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The body is JSON of the wrong shape (missing field, wrong type).
    #[error("the request body does not have the expected fields: {0}")]
    Shape(#[source] serde_json::Error),
}

/// Anything a route handler may return.
pub trait IntoResponse {
    /// Turns the value into the response sent to the client.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        Response::problem(&self)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => error.into_response(),
        }
    }
}

/// The response a module returns for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with a status code.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response (`content-type: application/json`).
    ///
    /// Serializing the SDK's and serde's ordinary types cannot fail; a value
    /// whose `Serialize` impl does fail (e.g. a map with non-string keys)
    /// gives a 500 problem response instead.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(error) => Problem::internal(format!("the response did not serialize: {error}"))
                .into_response(),
        }
    }

    /// `204 No Content`.
    pub fn no_content() -> Self {
        Self::new(204)
    }

    /// A plain-text response (`content-type: text/plain; charset=utf-8`).
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.into().into_bytes())
    }

    /// A problem document (`content-type: application/problem+json`) with
    /// the problem's status.
    pub fn problem(problem: &Problem) -> Self {
        Self::new(problem.status)
            .with_header("content-type", PROBLEM_JSON)
            .with_body(problem.to_json().into_bytes())
    }

    /// Sets a header, replacing any header of the same name (compared
    /// case-insensitively), e.g. to turn [`Response::text`] into CSV.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers
            .retain(|(existing, _)| !existing.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a header, keeping any others of the same name (for headers that
    /// may repeat, such as `set-cookie`).
    #[must_use]
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    #[must_use]
    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The status, headers and body.
    pub fn into_parts(self) -> (u16, Vec<(String, String)>, Vec<u8>) {
        (self.status, self.headers, self.body)
    }
}

/// An error response as an RFC 9457 problem document: a stable `type` a
/// client can branch on, a short `title`, the `status`, and a `detail` for
/// this occurrence.
///
/// The generic constructors ([`Problem::not_found`], ...) use the type
/// `about:blank` with the status phrase as title, as RFC 9457 recommends;
/// a module's own problems should get their own type with [`Problem::new`],
/// e.g. `https://souk.dev/problems/membership/duplicate-member-number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    problem_type: String,
    title: String,
    status: u16,
    detail: Option<String>,
    extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem with its own type URI, a title that does not change from
    /// occurrence to occurrence, and a status code.
    pub fn new(status: u16, problem_type: impl Into<String>, title: impl Into<String>) -> Self {
        Self {
            problem_type: problem_type.into(),
            title: title.into(),
            status,
            detail: None,
            extensions: serde_json::Map::new(),
        }
    }

    /// An `about:blank` problem whose title is the status phrase.
    pub fn from_status(status: u16) -> Self {
        Self::new(status, "about:blank", status_phrase(status))
    }

    /// `400 Bad Request`: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::from_status(400).with_detail(detail)
    }

    /// `404 Not Found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::from_status(404).with_detail(detail)
    }

    /// `405 Method Not Allowed`.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::from_status(405).with_detail(detail)
    }

    /// `409 Conflict`: the request clashes with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::from_status(409).with_detail(detail)
    }

    /// `422 Unprocessable Content`: well-formed, but the values are invalid.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::from_status(422).with_detail(detail)
    }

    /// `500 Internal Server Error`: the module failed.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::from_status(500).with_detail(detail)
    }

    /// Sets the human-readable explanation of this occurrence.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an extension member (e.g. `errors` listing invalid fields). The
    /// standard members `type`, `title`, `status`, `detail` and `instance`
    /// cannot be replaced this way.
    #[must_use]
    pub fn with_extension(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        let name = name.into();
        if !matches!(
            name.as_str(),
            "type" | "title" | "status" | "detail" | "instance"
        ) {
            self.extensions.insert(name, value);
        }
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The problem type URI.
    pub fn problem_type(&self) -> &str {
        &self.problem_type
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The detail, if set.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The problem document as JSON text.
    pub fn to_json(&self) -> String {
        let mut document = self.extensions.clone();
        document.insert("type".into(), self.problem_type.clone().into());
        document.insert("title".into(), self.title.clone().into());
        document.insert("status".into(), self.status.into());
        if let Some(detail) = &self.detail {
            document.insert("detail".into(), detail.clone().into());
        }
        serde_json::Value::Object(document).to_string()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl From<BodyError> for Problem {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::Malformed(_) => Problem::bad_request(error.to_string()),
            BodyError::Shape(_) => Problem::unprocessable(error.to_string()),
        }
    }
}

/// A database error the handler did not handle itself is the module's
/// failure: 500, with the host's message as detail.
impl From<DbError> for Problem {
    fn from(error: DbError) -> Self {
        Problem::internal(error.to_string())
    }
}

/// See `From<DbError>`: 500, with the error as detail.
impl From<QueryError> for Problem {
    fn from(error: QueryError) -> Self {
        Problem::internal(error.to_string())
    }
}

/// The reason phrase of a status code, for `about:blank` problem titles.
fn status_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ if (400..500).contains(&status) => "Client Error",
        _ if (500..600).contains(&status) => "Server Error",
        _ => "Error",
    }
}

/// Splits a query string into decoded name-value pairs.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`). A `%` not
/// followed by two hex digits stays as it is; bytes that are not UTF-8 become
/// U+FFFD.
pub(crate) fn percent_decode(input: &str, plus_is_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let escaped = bytes
                    .get(index + 1..index + 3)
                    .and_then(|hex| Some(hex_value(hex[0])? * 16 + hex_value(hex[1])?));
                match escaped {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 3;
                    }
                    None => {
                        decoded.push(b'%');
                        index += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with_query(query: &str) -> Request {
        Request::new("get", "/members", query, Vec::new(), Vec::new())
    }

    #[test]
    fn query_string_decodes_plus_and_percent_escapes() {
        let request = request_with_query("status=active&name=Ada+Lovelace&city=K%C3%B6ln");
        assert_eq!(
            request.query_pairs(),
            vec![
                ("status".into(), "active".into()),
                ("name".into(), "Ada Lovelace".into()),
                ("city".into(), "Köln".into()),
            ]
        );
        assert_eq!(request.query("name").as_deref(), Some("Ada Lovelace"));
        assert_eq!(request.query("missing"), None);
    }

    #[test]
    fn query_string_keeps_repeated_names_flags_and_broken_escapes() {
        let request = request_with_query("?tag=a&&tag=b&flag&pct=100%&bad=%zz");
        assert_eq!(
            request.query_all("tag"),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(request.query("tag").as_deref(), Some("a"));
        assert_eq!(request.query("flag").as_deref(), Some(""));
        assert_eq!(request.query("pct").as_deref(), Some("100%"));
        assert_eq!(request.query("bad").as_deref(), Some("%zz"));
    }

    #[test]
    fn query_parsed_reports_unparsable_values_as_bad_request() {
        let request = request_with_query("bytes=12&limit=lots");
        assert_eq!(request.query_parsed::<usize>("bytes"), Ok(Some(12)));
        assert_eq!(request.query_parsed::<usize>("absent"), Ok(None));
        let problem = request
            .query_parsed::<usize>("limit")
            .expect_err("`lots` is not a number");
        assert_eq!(problem.status(), 400);
        assert!(
            problem
                .detail()
                .is_some_and(|detail| detail.contains("`limit`"))
        );
    }

    #[test]
    fn the_public_url_is_the_host_s_header() {
        let bare = Request::new("GET", "/", "", vec![], vec![]);
        assert_eq!(bare.public_url(), None);
        let told = Request::new(
            "GET",
            "/",
            "",
            vec![(
                "Souk-Public-Url".into(),
                "https://m.example.org/t/acme/m/cards".into(),
            )],
            vec![],
        );
        assert_eq!(
            told.public_url(),
            Some("https://m.example.org/t/acme/m/cards")
        );
    }

    #[test]
    fn method_is_upper_cased_and_headers_match_case_insensitively() {
        let request = Request::new(
            "patch",
            "/x",
            "",
            vec![("Content-Type".into(), "application/json".into())],
            Vec::new(),
        );
        assert_eq!(request.method(), "PATCH");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("accept"), None);
    }

    #[test]
    fn json_body_errors_split_into_malformed_and_wrong_shape() {
        #[derive(Debug, serde::Deserialize)]
        struct NewMember {
            #[allow(dead_code)]
            name: String,
        }
        let body = |text: &str| Request::new("POST", "/", "", Vec::new(), text.as_bytes().to_vec());

        assert!(body(r#"{"name":"Ada"}"#).json::<NewMember>().is_ok());
        let malformed = body("{").json::<NewMember>().expect_err("truncated");
        assert!(matches!(malformed, BodyError::Malformed(_)));
        assert_eq!(Problem::from(malformed).status(), 400);
        let shape = body(r#"{"nom":"Ada"}"#)
            .json::<NewMember>()
            .expect_err("no name");
        assert!(matches!(shape, BodyError::Shape(_)));
        assert_eq!(Problem::from(shape).status(), 422);
    }

    #[test]
    fn problem_response_is_an_rfc9457_document() {
        let response = Problem::new(409, "urn:souk:test:duplicate", "Duplicate")
            .with_detail("member M-1 exists")
            .with_extension("number", "M-1".into())
            .with_extension("status", 200.into())
            .into_response();
        assert_eq!(response.status(), 409);
        assert_eq!(response.header("Content-Type"), Some(PROBLEM_JSON));
        let document: serde_json::Value =
            serde_json::from_slice(response.body()).expect("problem body is JSON");
        assert_eq!(
            document,
            serde_json::json!({
                "type": "urn:souk:test:duplicate",
                "title": "Duplicate",
                "status": 409,
                "detail": "member M-1 exists",
                "number": "M-1",
            })
        );
    }

    #[test]
    fn generic_problems_use_about_blank_and_the_status_phrase() {
        let problem = Problem::not_found("no member M-9");
        assert_eq!(problem.problem_type(), "about:blank");
        assert_eq!(problem.title(), "Not Found");
        assert_eq!(problem.to_string(), "404 Not Found: no member M-9");
        assert_eq!(Problem::unprocessable("x").title(), "Unprocessable Content");
    }

    #[test]
    fn json_and_no_content_responses() {
        let response = Response::json(201, &serde_json::json!({"number": "M-1"}));
        assert_eq!(response.status(), 201);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.body(), br#"{"number":"M-1"}"#);

        let empty = Response::no_content();
        assert_eq!(empty.status(), 204);
        assert!(empty.body().is_empty());

        let csv = Response::text(200, "a,b").with_header("Content-Type", "text/csv");
        assert_eq!(
            csv.headers(),
            &[("Content-Type".to_owned(), "text/csv".to_owned())]
        );
        let cookies = Response::no_content()
            .append_header("set-cookie", "a=1")
            .append_header("set-cookie", "b=2");
        assert_eq!(cookies.headers().len(), 2);

        let result: Result<Response, Problem> = Err(Problem::conflict("taken"));
        assert_eq!(result.into_response().status(), 409);
    }
}
