//! The registry's HTTP API, served from a [`RegistryStore`] under
//! [`API_PREFIX`] (`/registry/v1`).
//!
//! This module owns the wire: which paths exist, how request bytes become
//! typed values (a slug, a digest, a [`SignedEntry`]), and how every store
//! error becomes an RFC 9457 problem document with a stable `type`. It
//! owns no trust decision of its own: a publish is authorised by the
//! entry's signature, checked by the store against the trust root, not by
//! a bearer token; clients re-verify everything they download.
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/registry/v1/trust` | the signed trust-root chain, oldest first |
//! | GET | `/registry/v1/snapshot` | the current signed snapshot |
//! | GET | `/registry/v1/modules` | the module slugs, sorted |
//! | GET | `/registry/v1/modules/{slug}/log` | the module's signed entries |
//! | GET | `/registry/v1/blobs/sha256/{hex}` | the package bytes |
//! | POST | `/registry/v1/publish` | publish: entry in [`ENTRY_HEADER`], package as body (see below) |
//! | POST | `/registry/v1/state` | append a yank, deprecate or revoke entry (JSON body) |
//!
//! A publish is authenticated before its body is read: the signed entry in
//! [`ENTRY_HEADER`] names the signing key and carries its signature over
//! the canonical entry, which binds the package's sha256 together with the
//! module, version, dependencies, API version and the log head it follows.
//! The registry checks that the key is a publisher the trust root grants
//! the module, that the signature verifies, and that the entry follows the
//! head with a new version; a request that fails any of these is answered
//! (401 without the header, 403 for the key or signature, 409 for the
//! head or version) before a byte of its body is read. Only then, and
//! only while fewer than [`RegistryService::with_max_uploads`] publishes
//! are in progress (otherwise 503 with `Retry-After`), is the body
//! streamed into a temporary file of the store, hashed and bounded as it
//! arrives, and published from there once its digest matches the signed
//! one. The temporary file is removed on every failure.
//!
//! The snapshot is re-signed after every change, whenever the stored
//! snapshot no longer lists the heads on disk (an operator's CLI wrote to
//! the store directly), and when it is within a margin of its expiry.
//!
//! The store does blocking file I/O; every handler runs it on tokio's
//! blocking pool.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::keys::KeyPair;
use crate::manifest::Slug;
use crate::package::{Digest, Package};
use crate::records::{EntryHash, EntryRejection, SignedEntry};
use crate::snapshot::SignedSnapshot;
use crate::store::{PendingPackage, ReceivedPackage, RegistryStore, StoreError};
use crate::trust::TrustError;

/// The path every registry endpoint lives under.
pub const API_PREFIX: &str = "/registry/v1";

/// The request header that carries a publish entry: the standard base64 of
/// the [`SignedEntry`]'s JSON.
pub const ENTRY_HEADER: &str = "souk-entry";

/// The prefix of every problem `type` this API answers with.
pub const PROBLEM_TYPE_PREFIX: &str = "https://souk.dev/problems/registry/";

/// Default snapshot lifetime: 24 hours. Long enough that a registry that
/// is briefly down does not freeze its hosts, short enough that a mirror
/// cannot hold hosts on stale metadata for long.
pub const DEFAULT_SNAPSHOT_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest state-change request body accepted (a yank, deprecate or
/// revoke entry is well under 4 KiB).
const MAX_STATE_BODY_BYTES: usize = 64 * 1024;

/// The largest publish entry header accepted, base64 included.
const MAX_ENTRY_HEADER_BYTES: usize = 64 * 1024;

/// Default bound on publishes receiving or checking a package at once
/// ([`RegistryService::with_max_uploads`]). Each holds at most one package
/// in memory while it is parsed and validated (32 MiB by default), so this
/// bounds what authenticated publishers can make the registry hold.
pub const DEFAULT_MAX_UPLOADS: usize = 4;

/// Seconds a publish refused because [`RegistryService::with_max_uploads`]
/// publishes are in progress is told to wait (`Retry-After`).
pub const UPLOAD_RETRY_AFTER_SECS: u64 = 5;

/// How long an upload may send nothing before it is cut off (the client
/// then gets `incomplete-body`), so a stalled publisher cannot hold one of
/// the upload slots.
pub const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Body bytes gathered before one write to the temporary file.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Returns the current time in unix seconds. Injected so tests can move
/// time (expiry) without sleeping.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Checks a package the store is about to accept; `Err` carries the reason
/// shown to the publisher. The host supplies one that loads the component
/// and checks it targets a supported WIT version.
pub type PackageValidator = Arc<dyn Fn(&Package) -> Result<(), String> + Send + Sync>;

/// The system clock: seconds since the unix epoch (0 if the system clock
/// is set before 1970).
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// The registry service: a store, the keys that sign its snapshots, and
/// the policy for re-signing them.
pub struct RegistryService {
    store: RegistryStore,
    snapshot_keys: Vec<KeyPair>,
    snapshot_lifetime: u64,
    clock: Clock,
    validator: PackageValidator,
    /// Serialises snapshot issuing so two requests never sign two
    /// snapshots for one change.
    issuing: Mutex<()>,
    /// One permit per publish receiving or checking a package.
    uploads: Arc<Semaphore>,
    max_uploads: usize,
}

impl fmt::Debug for RegistryService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryService")
            .field("store", &self.store.dir())
            .field(
                "snapshot_keys",
                &self
                    .snapshot_keys
                    .iter()
                    .map(|k| k.id())
                    .collect::<Vec<_>>(),
            )
            .field("snapshot_lifetime", &self.snapshot_lifetime)
            .field("max_uploads", &self.max_uploads)
            .finish_non_exhaustive()
    }
}

/// What a successful publish or state change answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendReceipt {
    pub module: String,
    /// The new head of the module's log.
    pub head: EntryHash,
    /// The version of the snapshot issued after the change; `None` if
    /// issuing it failed (the next `GET /snapshot` retries).
    pub snapshot_version: Option<u64>,
}

impl RegistryService {
    /// A service over `store` whose snapshots are signed by
    /// `snapshot_keys` (enough of the trust root's snapshot keys to meet
    /// its threshold), with the default lifetime
    /// ([`DEFAULT_SNAPSHOT_LIFETIME`]), the system clock, and a validator
    /// that accepts every package that parses.
    pub fn new(store: RegistryStore, snapshot_keys: Vec<KeyPair>) -> Self {
        RegistryService {
            store,
            snapshot_keys,
            snapshot_lifetime: DEFAULT_SNAPSHOT_LIFETIME.as_secs(),
            clock: system_clock(),
            validator: Arc::new(|_| Ok(())),
            issuing: Mutex::new(()),
            uploads: Arc::new(Semaphore::new(DEFAULT_MAX_UPLOADS)),
            max_uploads: DEFAULT_MAX_UPLOADS,
        }
    }

    /// Sets how many publishes may receive or check a package at once
    /// (default [`DEFAULT_MAX_UPLOADS`], at least 1). A publish beyond the
    /// bound is answered 503 `too-many-uploads` with `Retry-After`
    /// ([`UPLOAD_RETRY_AFTER_SECS`]) before its body is read; it is counted
    /// only once its entry has been authenticated, so unauthenticated
    /// requests cannot use up the slots.
    pub fn with_max_uploads(mut self, max_uploads: usize) -> Self {
        let max_uploads = max_uploads.clamp(1, Semaphore::MAX_PERMITS);
        self.uploads = Arc::new(Semaphore::new(max_uploads));
        self.max_uploads = max_uploads;
        self
    }

    /// The bound on concurrent publishes ([`RegistryService::with_max_uploads`]).
    pub fn max_uploads(&self) -> usize {
        self.max_uploads
    }

    /// Sets how long each issued snapshot is valid. A snapshot is re-signed
    /// once less than a quarter of this remains.
    pub fn with_snapshot_lifetime(mut self, lifetime: Duration) -> Self {
        self.snapshot_lifetime = lifetime.as_secs().max(1);
        self
    }

    /// Replaces the clock (tests use a settable one).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the package validator run on every publish.
    pub fn with_validator(mut self, validator: PackageValidator) -> Self {
        self.validator = validator;
        self
    }

    /// The store served.
    pub fn store(&self) -> &RegistryStore {
        &self.store
    }

    /// The snapshot to serve: the stored one while it lists the heads on
    /// disk and has more than a quarter of its lifetime left, otherwise a
    /// freshly issued one. Blocking (file I/O).
    ///
    /// # Errors
    /// Any error of [`RegistryStore::snapshot`] when a new one must be
    /// issued, or of reading the store.
    pub fn current_snapshot(&self) -> Result<SignedSnapshot, StoreError> {
        let _issuing = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        let now = (self.clock)();
        if let Some(current) = self.store.current_snapshot()? {
            let margin = self.snapshot_lifetime / 4;
            let fresh = current.snapshot.expires > now.saturating_add(margin);
            if fresh && self.lists_stored_heads(&current)? {
                return Ok(current);
            }
        }
        self.issue_locked(now)
    }

    /// Issues the next snapshot now, whatever the state of the current one.
    /// Blocking (file I/O).
    ///
    /// # Errors
    /// Any error of [`RegistryStore::snapshot`].
    pub fn issue_snapshot(&self) -> Result<SignedSnapshot, StoreError> {
        let _issuing = self.issuing.lock().unwrap_or_else(|p| p.into_inner());
        self.issue_locked((self.clock)())
    }

    fn issue_locked(&self, now: u64) -> Result<SignedSnapshot, StoreError> {
        let keys: Vec<&KeyPair> = self.snapshot_keys.iter().collect();
        self.store.snapshot(&keys, self.snapshot_lifetime, now)
    }

    /// Whether `snapshot` lists exactly the heads of the logs on disk. The
    /// heads are hashed, not validated: a changed log gets a new snapshot,
    /// and issuing one validates every log.
    fn lists_stored_heads(&self, snapshot: &SignedSnapshot) -> Result<bool, StoreError> {
        let modules = self.store.modules()?;
        if modules.len() != snapshot.snapshot.heads.len() {
            return Ok(false);
        }
        for module in modules {
            let entries = self.store.log_entries(&module)?;
            let head = match entries.last() {
                Some(last) => Some(last.hash()?),
                None => None,
            };
            if head.as_ref() != snapshot.snapshot.heads.get(&module) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Publishes a received package, then issues the next snapshot.
    /// Blocking.
    fn publish(
        &self,
        entry: SignedEntry,
        received: ReceivedPackage,
    ) -> Result<AppendReceipt, StoreError> {
        let module = entry.entry.action.module().to_string();
        let validator = Arc::clone(&self.validator);
        let head = self
            .store
            .publish_received(entry, received, |p| validator(p))?;
        Ok(self.receipt(module, head))
    }

    /// Appends a state change, then issues the next snapshot. Blocking.
    fn append_state(&self, entry: SignedEntry) -> Result<AppendReceipt, StoreError> {
        let module = entry.entry.action.module().to_string();
        let head = self.store.append_state(entry)?;
        Ok(self.receipt(module, head))
    }

    fn receipt(&self, module: String, head: EntryHash) -> AppendReceipt {
        let snapshot_version = match self.issue_snapshot() {
            Ok(s) => Some(s.snapshot.version),
            Err(e) => {
                tracing::error!(error = %e, "issuing the snapshot after a change failed");
                None
            }
        };
        AppendReceipt {
            module,
            head,
            snapshot_version,
        }
    }
}

/// The registry API's routes, all under [`API_PREFIX`]. Unknown paths
/// under it answer a `not-found` problem.
pub fn router(service: Arc<RegistryService>) -> Router {
    let api = Router::new()
        .route("/trust", get(get_trust))
        .route("/snapshot", get(get_snapshot))
        .route("/modules", get(get_modules))
        .route("/modules/{slug}/log", get(get_log))
        .route("/blobs/sha256/{hex}", get(get_blob))
        .route("/publish", post(post_publish))
        .route("/state", post(post_state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(service);
    Router::new().nest(API_PREFIX, api)
}

/// [`router`] with a `not-found` problem for every path outside
/// [`API_PREFIX`] too, for a process that serves nothing but the registry
/// (`souk registry serve`). A host that merges [`router`] into its own API
/// keeps its own fallback instead.
pub fn standalone_router(service: Arc<RegistryService>) -> Router {
    router(service).fallback(not_found)
}

// ----- problems -----

/// An RFC 9457 problem document as this API sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemDocument {
    /// A stable URI naming the kind of problem,
    /// `https://souk.dev/problems/registry/<kind>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, fixed summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this case, and what to do.
    pub detail: String,
}

impl ProblemDocument {
    /// The last segment of `type` (`version-exists`, `unknown-key`, ...),
    /// or the whole `type` if it is not one of this API's.
    pub fn kind_name(&self) -> &str {
        self.kind
            .strip_prefix(PROBLEM_TYPE_PREFIX)
            .unwrap_or(&self.kind)
    }
}

impl fmt::Display for ProblemDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.title, self.status, self.detail)
    }
}

/// A problem about to be sent.
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    headers: Vec<(HeaderName, HeaderValue)>,
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
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    fn internal(context: &str, error: &dyn fmt::Display) -> Self {
        tracing::error!(error = %error, "{context}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Registry error",
            format!("{context}; the registry operator's log has the cause"),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemDocument {
            kind: format!("{PROBLEM_TYPE_PREFIX}{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        use StatusCode as S;
        let detail = e.to_string();
        let p = |status, kind, title| Problem::new(status, kind, title, detail.clone());
        match &e {
            StoreError::Log(log) => rejection_problem(&log.rejection, detail),
            StoreError::EntryRefused { rejection, .. } => rejection_problem(rejection, detail),
            StoreError::WrongEntryKind { .. } => p(
                S::UNPROCESSABLE_ENTITY,
                "wrong-entry-kind",
                "Wrong kind of entry",
            ),
            StoreError::PackageTooLarge { .. } => p(
                S::PAYLOAD_TOO_LARGE,
                "package-too-large",
                "Package too large",
            ),
            StoreError::DigestMismatch { .. } => p(
                S::UNPROCESSABLE_ENTITY,
                "digest-mismatch",
                "Package digest mismatch",
            ),
            StoreError::Package(_) | StoreError::Rejected { .. } => p(
                S::UNPROCESSABLE_ENTITY,
                "invalid-package",
                "Invalid package",
            ),
            StoreError::PackageMismatch { .. } => p(
                S::UNPROCESSABLE_ENTITY,
                "manifest-mismatch",
                "Manifest does not match the signed record",
            ),
            StoreError::UnknownModule(_) => p(S::NOT_FOUND, "unknown-module", "Unknown module"),
            StoreError::UnknownVersion { .. } => {
                p(S::NOT_FOUND, "unknown-version", "Unknown version")
            }
            StoreError::BlobMissing(_) => p(S::NOT_FOUND, "blob-not-found", "No such package"),
            StoreError::Io { .. }
            | StoreError::Corrupt { .. }
            | StoreError::AlreadyInitialised { .. }
            | StoreError::NotInitialised { .. }
            | StoreError::Trust(_)
            | StoreError::Snapshot(_)
            | StoreError::Canonical(_)
            | StoreError::BlobTooLarge { .. }
            | StoreError::BlobCorrupt { .. } => {
                Problem::internal("the registry store could not answer", &e)
            }
        }
    }
}

/// The problem for a refused log entry.
fn rejection_problem(rejection: &EntryRejection, detail: String) -> Problem {
    use StatusCode as S;
    let p = |status, kind, title| Problem::new(status, kind, title, detail.clone());
    match rejection {
        EntryRejection::Unauthorised(TrustError::UnknownKey { .. }) => {
            p(S::FORBIDDEN, "unknown-key", "Unknown signing key")
        }
        EntryRejection::Unauthorised(TrustError::NotGranted { .. }) => p(
            S::FORBIDDEN,
            "key-not-granted",
            "Key not granted this module",
        ),
        EntryRejection::Unauthorised(TrustError::RevokedKey { .. }) => {
            p(S::FORBIDDEN, "revoked-key", "Revoked signing key")
        }
        EntryRejection::Unauthorised(_) => {
            p(S::FORBIDDEN, "unauthorised-key", "Signing key not trusted")
        }
        EntryRejection::BadSignature(_) => {
            p(S::FORBIDDEN, "bad-signature", "Signature does not verify")
        }
        EntryRejection::VersionExists { .. } => {
            p(S::CONFLICT, "version-exists", "Version already published")
        }
        EntryRejection::BrokenChain { .. } => Problem::new(
            S::CONFLICT,
            "stale-head",
            "Entry does not follow the log head",
            format!(
                "{detail}; fetch the module's log again and sign the entry after its last entry"
            ),
        ),
        EntryRejection::UnknownVersion { .. } => p(
            S::UNPROCESSABLE_ENTITY,
            "unknown-version",
            "Version never published",
        ),
        EntryRejection::InvalidTransition { .. } => p(
            S::CONFLICT,
            "invalid-transition",
            "State change does not apply",
        ),
        EntryRejection::SelfReference { .. } | EntryRejection::WrongModule { .. } => p(
            S::UNPROCESSABLE_ENTITY,
            "invalid-entry",
            "Invalid log entry",
        ),
        EntryRejection::Canonical(_) => {
            p(S::BAD_REQUEST, "malformed-entry", "Entry cannot be encoded")
        }
    }
}

type Answer = Result<Response, Problem>;

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Problem> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Problem::from),
        Err(e) => Err(Problem::internal("a registry task failed", &e)),
    }
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    Ok((status, axum::Json(value)).into_response())
}

/// A path segment, or a `invalid-path` problem when it cannot be decoded
/// (for example percent-encoded bytes that are not UTF-8).
fn path_segment(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    match path {
        Ok(Path(segment)) => Ok(segment),
        Err(e) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-path",
            "Invalid path",
            format!("the request path cannot be decoded: {}", e.body_text()),
        )),
    }
}

fn parse_slug(text: &str) -> Result<Slug, Problem> {
    Slug::parse(text).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-slug",
            "Invalid module slug",
            format!("{text:?} is not a module slug: {e}"),
        )
    })
}

fn parse_entry(bytes: &[u8], source: &str) -> Result<SignedEntry, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-entry",
            "Malformed entry",
            format!("{source} is not a signed log entry: {e}"),
        )
    })
}

// ----- handlers -----

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("no such registry endpoint; the API lives under {API_PREFIX}"),
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this registry endpoint does not take that method; see the registry API's table of endpoints",
    )
}

async fn get_trust(State(service): State<Arc<RegistryService>>) -> Answer {
    let chain = blocking(move || service.store.trust_chain()).await?;
    json_response(StatusCode::OK, &chain)
}

async fn get_snapshot(State(service): State<Arc<RegistryService>>) -> Answer {
    let snapshot = blocking(move || service.current_snapshot()).await?;
    json_response(StatusCode::OK, &snapshot)
}

async fn get_modules(State(service): State<Arc<RegistryService>>) -> Answer {
    let modules = blocking(move || service.store.modules()).await?;
    let names: Vec<&str> = modules.iter().map(Slug::as_str).collect();
    json_response(StatusCode::OK, &names)
}

async fn get_log(
    State(service): State<Arc<RegistryService>>,
    slug: Result<Path<String>, PathRejection>,
) -> Answer {
    let slug = parse_slug(&path_segment(slug)?)?;
    let entries = blocking(move || {
        let entries = service.store.log_entries(&slug)?;
        if entries.is_empty() {
            return Err(StoreError::UnknownModule(slug));
        }
        Ok(entries)
    })
    .await?;
    json_response(StatusCode::OK, &entries)
}

async fn get_blob(
    State(service): State<Arc<RegistryService>>,
    hex: Result<Path<String>, PathRejection>,
) -> Answer {
    let hex = path_segment(hex)?;
    let digest = match hex.len() {
        64 => Digest::parse(&hex).ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-digest",
            "Invalid digest",
            format!("{hex:?} is not a sha256 digest (64 hex digits)"),
        )
    })?;
    let bytes = blocking(move || service.store.blob(&digest)).await?;
    let len = bytes.len();
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(response)
}

fn too_large(kind: &'static str, what: &str, limit: u64) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        kind,
        "Request too large",
        format!("the {what} is larger than this registry's limit of {limit} bytes"),
    )
}

/// Reads a request body of at most `limit` bytes: refused up front when
/// its Content-Length says more, and while streaming when it sends more.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    kind: &'static str,
    what: &str,
) -> Result<bytes::Bytes, Problem> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large(kind, what, limit));
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, cap).await.map_err(|e| {
        let source = std::error::Error::source(&e);
        if source.is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large(kind, what, limit)
        } else {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "incomplete-body",
                "Incomplete request body",
                format!("the {what} could not be read completely: {e}"),
            )
        }
    })
}

/// The signed entry of a publish request, from [`ENTRY_HEADER`].
fn publish_entry(headers: &HeaderMap) -> Result<SignedEntry, Problem> {
    let Some(header_value) = headers.get(ENTRY_HEADER) else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing-entry",
            "Missing publish entry",
            format!(
                "a publish carries its signed entry in the {ENTRY_HEADER} header (base64 of the entry's JSON) and the package as the body; the entry's signature authenticates the publisher"
            ),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Souk-Entry realm=\"souk-registry\""),
        ));
    };
    if header_value.len() > MAX_ENTRY_HEADER_BYTES {
        return Err(too_large(
            "entry-too-large",
            "publish entry",
            MAX_ENTRY_HEADER_BYTES as u64,
        ));
    }
    let json = BASE64
        .decode(header_value.as_bytes().trim_ascii())
        .map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-entry",
                "Malformed entry",
                format!("the {ENTRY_HEADER} header is not standard base64: {e}"),
            )
        })?;
    parse_entry(&json, &format!("the {ENTRY_HEADER} header"))
}

fn too_many_uploads(max: usize) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too-many-uploads",
        "Too many uploads in progress",
        format!(
            "this registry receives at most {max} packages at once; try again in {UPLOAD_RETRY_AFTER_SECS} seconds"
        ),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(UPLOAD_RETRY_AFTER_SECS))
}

fn incomplete_body(reason: &str) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "incomplete-body",
        "Incomplete request body",
        format!("the package could not be read completely: {reason}; nothing was stored"),
    )
}

/// Appends `batch` to `pending` on the blocking pool.
async fn write_batch(
    mut pending: PendingPackage,
    batch: Vec<u8>,
) -> Result<PendingPackage, Problem> {
    blocking(move || {
        pending.write(&batch)?;
        Ok(pending)
    })
    .await
}

/// Streams `body` into a temporary file of the store, at most `limit`
/// bytes and never more than [`WRITE_BATCH_BYTES`] of it in memory. The
/// file is removed if anything fails, or if this future is dropped.
async fn receive_package(
    service: &RegistryService,
    mut body: Body,
    limit: u64,
) -> Result<ReceivedPackage, Problem> {
    let store = service.store.clone();
    let mut pending = blocking(move || store.receive_package()).await?;
    let mut batch: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, body.frame()).await {
            Err(_) => {
                return Err(incomplete_body(&format!(
                    "nothing arrived for {} seconds",
                    UPLOAD_IDLE_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(incomplete_body(&e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            // Trailers carry nothing a publish uses.
            continue;
        };
        let received = pending.size() + batch.len() as u64 + data.len() as u64;
        if received > limit {
            return Err(too_large("package-too-large", "package", limit));
        }
        batch.extend_from_slice(&data);
        if batch.len() >= WRITE_BATCH_BYTES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH_BYTES));
            pending = write_batch(pending, full).await?;
        }
    }
    if !batch.is_empty() {
        pending = write_batch(pending, batch).await?;
    }
    blocking(move || pending.finish()).await
}

/// Takes an upload slot, or answers `too-many-uploads`.
fn upload_slot(service: &RegistryService) -> Result<OwnedSemaphorePermit, Problem> {
    Arc::clone(&service.uploads)
        .try_acquire_owned()
        .map_err(|_| too_many_uploads(service.max_uploads))
}

async fn post_publish(State(service): State<Arc<RegistryService>>, request: Request) -> Answer {
    let (parts, body) = request.into_parts();
    // Everything up to the upload slot is decided from the headers alone:
    // a refused request's body is never read.
    let entry = publish_entry(&parts.headers)?;
    let checker = Arc::clone(&service);
    let checked = entry.clone();
    blocking(move || checker.store.authorise_publish(&checked)).await?;
    let limit = service.store.limits().max_package_bytes;
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large("package-too-large", "package", limit));
    }
    let slot = upload_slot(&service)?;
    let received = receive_package(&service, body, limit).await?;
    let receipt = blocking(move || {
        // The slot is held until the package is validated and stored, even
        // if the client goes away meanwhile.
        let _slot = slot;
        service.publish(entry, received)
    })
    .await?;
    json_response(StatusCode::CREATED, &receipt)
}

async fn post_state(State(service): State<Arc<RegistryService>>, request: Request) -> Answer {
    let (parts, body) = request.into_parts();
    let bytes = read_body(
        &parts.headers,
        body,
        MAX_STATE_BODY_BYTES as u64,
        "entry-too-large",
        "state entry",
    )
    .await?;
    let entry = parse_entry(&bytes, "the request body")?;
    let receipt = blocking(move || service.append_state(entry)).await?;
    json_response(StatusCode::OK, &receipt)
}
