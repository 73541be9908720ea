//! The registry over HTTP: a real axum server on 127.0.0.1:0 with a
//! temporary store, the verifying client a host uses, and, where an attack
//! needs one, a hostile proxy in front of the registry that alters what it
//! serves. Each test names the attack or behaviour it proves.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::Response;
use semver::Version;
use souk_module_registry::client::{ClientError, ClientOptions, RegistryClient};
use souk_module_registry::http::{RegistryService, router, standalone_router};
use souk_module_registry::{
    ApiVersion, Digest, KeyPair, KeySet, ModuleAction, ModulePattern, Package, Publish,
    PublisherGrant, RegistryStore, Revoke, SignedEntry, SignedTrustRoot, Slug, SnapshotError,
    StoreLimits, TrustError, TrustRoot, VersionState, Yank,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const NOW: u64 = 1_700_000_000;
const FAR_FUTURE: u64 = 4_000_000_000;
const SNAPSHOT_LIFETIME: u64 = 3600;

// ----- fixture -----

struct Operator {
    root: KeyPair,
    snapshot: KeyPair,
    publisher: KeyPair,
    acme: KeyPair,
}

impl Operator {
    fn new() -> Self {
        Operator {
            root: KeyPair::generate(),
            snapshot: KeyPair::generate(),
            publisher: KeyPair::generate(),
            acme: KeyPair::generate(),
        }
    }

    /// Root 1: `publisher` may publish `membership`, `acme` may publish
    /// `acme-*`.
    fn root_v1(&self) -> TrustRoot {
        TrustRoot {
            version: 1,
            expires: FAR_FUTURE,
            root: KeySet::single(self.root.public()),
            snapshot: KeySet::single(self.snapshot.public()),
            publishers: vec![
                PublisherGrant {
                    key: self.publisher.public(),
                    modules: vec![ModulePattern::parse("membership").unwrap()],
                },
                PublisherGrant {
                    key: self.acme.public(),
                    modules: vec![ModulePattern::parse("acme-*").unwrap()],
                },
            ],
            revoked: BTreeSet::new(),
        }
    }
}

struct Server {
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    async fn start(app: axum::Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Server {
            url,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

struct Registry {
    _dir: tempfile::TempDir,
    op: Operator,
    store: RegistryStore,
    clock: Arc<AtomicU64>,
    server: Server,
}

async fn start_registry() -> Registry {
    start_registry_with(StoreLimits::default()).await
}

async fn start_registry_with(limits: StoreLimits) -> Registry {
    start_registry_bounded(limits, souk_module_registry::http::DEFAULT_MAX_UPLOADS).await
}

async fn start_registry_bounded(limits: StoreLimits, max_uploads: usize) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::new();
    let store =
        RegistryStore::create(dir.path(), op.root_v1().sign(&[&op.root]).unwrap(), limits).unwrap();
    let clock = Arc::new(AtomicU64::new(NOW));
    let read = Arc::clone(&clock);
    let service = RegistryService::new(store.clone(), vec![op.snapshot.clone()])
        .with_snapshot_lifetime(Duration::from_secs(SNAPSHOT_LIFETIME))
        .with_clock(Arc::new(move || read.load(Ordering::SeqCst)))
        .with_max_uploads(max_uploads);
    let server = Server::start(standalone_router(Arc::new(service))).await;
    Registry {
        _dir: dir,
        op,
        store,
        clock,
        server,
    }
}

fn slug(s: &str) -> Slug {
    Slug::parse(s).unwrap()
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn package_bytes(module: &str, version: &str, component_size: usize) -> Vec<u8> {
    let manifest = format!(
        "slug: {module}\nname: Test module\nversion: {version}\ncategory: tools\napi: 0.1.0\n"
    );
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    component.resize(component_size.max(8), 0);
    Package::build(&manifest, &component).unwrap()
}

impl Registry {
    fn url(&self) -> &str {
        &self.server.url
    }

    fn pinned(&self) -> SignedTrustRoot {
        self.store.trust_chain().unwrap().remove(0)
    }

    /// Signs `action` after the current head of its module's log.
    fn sign(&self, action: ModuleAction, key: &KeyPair) -> SignedEntry {
        let prev = self
            .store
            .log_entries(action.module())
            .unwrap()
            .last()
            .map(|e| e.hash().unwrap());
        SignedEntry::sign(prev, action, key).unwrap()
    }

    /// A publish entry for `module` `version` signed by `key`, and its
    /// package.
    fn publish_entry(&self, module: &str, version: &str, key: &KeyPair) -> (SignedEntry, Vec<u8>) {
        let bytes = package_bytes(module, version, 64);
        let action = ModuleAction::Publish(Publish {
            module: slug(module),
            version: v(version),
            digest: Digest::of(&bytes),
            dependencies: Default::default(),
            api: ApiVersion::V0_1_0,
            published_at: NOW,
        });
        (self.sign(action, key), bytes)
    }

    /// Publishes `membership` `version` through the HTTP API.
    async fn publish(&self, version: &str) {
        let (entry, bytes) = self.publish_entry("membership", version, &self.op.publisher);
        let cache = tempfile::tempdir().unwrap();
        let client = self.client(cache.path());
        client.publish(&entry, bytes, |_, _| {}).await.unwrap();
    }

    fn client(&self, cache: &Path) -> RegistryClient {
        client_of(self.url(), cache, self.pinned())
    }

    fn rotate(&self, version: u64, edit: impl FnOnce(&mut TrustRoot), signers: &[&KeyPair]) {
        let mut doc = self.store.trust().unwrap().root().clone();
        doc.version = version;
        edit(&mut doc);
        self.store
            .rotate_trust_root(doc.sign(signers).unwrap())
            .unwrap();
    }
}

fn client_of(url: &str, cache: &Path, pinned: SignedTrustRoot) -> RegistryClient {
    RegistryClient::new(url, cache, pinned, ClientOptions::default()).unwrap()
}

// ----- hostile proxy -----

/// What the hostile proxy serves instead of the registry's answer.
#[derive(Clone)]
enum Serve {
    /// These bytes.
    Bytes(Vec<u8>),
    /// The registry's answer with its last byte flipped.
    Tampered,
    /// The registry's Content-Length, then half the body, then a broken
    /// connection.
    Truncated,
    /// 64 KiB chunks without end (up to 1 GiB), no Content-Length.
    Endless,
}

struct Hostile {
    upstream: String,
    overrides: Mutex<HashMap<String, Serve>>,
    served_bytes: AtomicU64,
    http: reqwest::Client,
}

impl Hostile {
    async fn start(upstream: &str) -> (Arc<Hostile>, Server) {
        let hostile = Arc::new(Hostile {
            upstream: upstream.to_owned(),
            overrides: Mutex::new(HashMap::new()),
            served_bytes: AtomicU64::new(0),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(hostile_get)
            .with_state(Arc::clone(&hostile));
        (hostile, Server::start(app).await)
    }

    fn serve(&self, path: &str, serve: Serve) {
        self.overrides
            .lock()
            .unwrap()
            .insert(path.to_owned(), serve);
    }

    async fn upstream_bytes(&self, path: &str) -> Vec<u8> {
        let response = self
            .http
            .get(format!("{}{path}", self.upstream))
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap().to_vec()
    }
}

async fn hostile_get(State(hostile): State<Arc<Hostile>>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    let serve = hostile.overrides.lock().unwrap().get(&path).cloned();
    let bytes_response = |bytes: Vec<u8>| {
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, bytes.len())
            .body(Body::from(bytes))
            .unwrap()
    };
    match serve {
        None => bytes_response(hostile.upstream_bytes(&path).await),
        Some(Serve::Bytes(bytes)) => bytes_response(bytes),
        Some(Serve::Tampered) => {
            let mut bytes = hostile.upstream_bytes(&path).await;
            if let Some(last) = bytes.last_mut() {
                *last ^= 0x01;
            }
            bytes_response(bytes)
        }
        Some(Serve::Truncated) => {
            let bytes = hostile.upstream_bytes(&path).await;
            let len = bytes.len();
            let half = bytes::Bytes::from(bytes[..len / 2].to_vec());
            // Half the body, a pause so it reaches the client, then a cut.
            let stream = futures_util::stream::unfold(0, move |step| {
                let half = half.clone();
                async move {
                    match step {
                        0 => Some((Ok(half), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Some((Err(std::io::Error::other("connection cut")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_LENGTH, len)
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Some(Serve::Endless) => {
            let counter = Arc::clone(&hostile);
            let chunk = bytes::Bytes::from(vec![0u8; 64 * 1024]);
            let stream = futures_util::stream::iter((0..16 * 1024).map(move |_| {
                counter
                    .served_bytes
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
                Ok::<_, std::io::Error>(chunk.clone())
            }));
            Response::builder()
                .status(StatusCode::OK)
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

fn blob_path(bytes: &[u8]) -> String {
    format!("/registry/v1/blobs/sha256/{}", Digest::of(bytes).hex())
}

// ----- round trip -----

#[tokio::test]
async fn published_package_is_fetched_and_verified_round_trip() {
    let registry = start_registry().await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());

    let (entry, bytes) = registry.publish_entry("membership", "1.0.0", &registry.op.publisher);
    let receipt = client
        .publish(&entry, bytes.clone(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(receipt.module, "membership");
    assert_eq!(receipt.head, entry.hash().unwrap());
    assert_eq!(receipt.snapshot_version, Some(1));

    let index = client.refresh(NOW).await.unwrap();
    assert_eq!(index.snapshot_version(), 1);
    assert_eq!(
        index.modules().collect::<Vec<_>>(),
        vec![&slug("membership")]
    );
    let fetched = client
        .fetch_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap();
    assert_eq!(fetched.package.digest, Digest::of(&bytes));
    assert_eq!(fetched.package.manifest.version, v("1.0.0"));
    assert_eq!(std::fs::read(&fetched.path).unwrap(), bytes);
    assert_eq!(
        fetched.status.state(),
        souk_module_registry::VersionState::Available
    );
}

#[tokio::test]
async fn publish_reports_progress_while_streaming_the_package() {
    let registry = start_registry().await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    let bytes = package_bytes("membership", "1.0.0", 300 * 1024);
    let action = ModuleAction::Publish(Publish {
        module: slug("membership"),
        version: v("1.0.0"),
        digest: Digest::of(&bytes),
        dependencies: Default::default(),
        api: ApiVersion::V0_1_0,
        published_at: NOW,
    });
    let entry = registry.sign(action, &registry.op.publisher);
    let total = bytes.len() as u64;
    let mut calls = Vec::new();
    client
        .publish(&entry, bytes, |sent, of| calls.push((sent, of)))
        .await
        .unwrap();
    assert_eq!(calls.first(), Some(&(0, total)));
    assert_eq!(calls.last(), Some(&(total, total)));
    assert!(calls.len() >= 5, "one call per 64 KiB chunk: {calls:?}");
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{calls:?}");
}

#[tokio::test]
async fn registry_endpoints_answer_json_and_problems() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}/registry/v1{path}", registry.url()))
            .send()
    };

    let modules: Vec<String> = get("/modules").await.unwrap().json().await.unwrap();
    assert_eq!(modules, vec!["membership"]);
    let trust: Vec<SignedTrustRoot> = get("/trust").await.unwrap().json().await.unwrap();
    assert_eq!(trust.len(), 1);
    let log: Vec<SignedEntry> = get("/modules/membership/log")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log.len(), 1);

    let bytes = package_bytes("membership", "1.0.0", 64);
    let blob = get(&blob_path(&bytes)[12..]).await.unwrap();
    assert_eq!(
        blob.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(blob.content_length(), Some(bytes.len() as u64));
    assert_eq!(blob.bytes().await.unwrap().to_vec(), bytes);

    for (path, status, kind) in [
        ("/modules/nope/log", 404, "unknown-module"),
        ("/modules/Not_A_Slug/log", 400, "invalid-slug"),
        ("/blobs/sha256/zz", 400, "invalid-digest"),
        (&blob_path(b"absent")[12..], 404, "blob-not-found"),
        ("/no-such-endpoint", 404, "not-found"),
    ] {
        let response = get(path).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            problem["type"],
            format!("https://souk.dev/problems/registry/{kind}"),
            "{path}"
        );
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }

    // Malformed publish requests are answered 401 or 400, never 500.
    let post = http
        .post(format!("{}/registry/v1/publish", registry.url()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    let post = http
        .post(format!("{}/registry/v1/publish", registry.url()))
        .header("souk-entry", "!!not base64!!")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 400);
    let post = http
        .post(format!("{}/registry/v1/state", registry.url()))
        .body("{\"not\": \"an entry\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 400);
}

// ----- publish refusals -----

#[tokio::test]
async fn republishing_an_existing_version_is_answered_409_version_exists() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    // Different bytes under the same version, signed after the head.
    let bytes = package_bytes("membership", "1.0.0", 128);
    let action = ModuleAction::Publish(Publish {
        module: slug("membership"),
        version: v("1.0.0"),
        digest: Digest::of(&bytes),
        dependencies: Default::default(),
        api: ApiVersion::V0_1_0,
        published_at: NOW,
    });
    let entry = registry.sign(action, &registry.op.publisher);
    let err = client.publish(&entry, bytes, |_, _| {}).await.unwrap_err();
    let ClientError::Refused { problem, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(problem.status, 409);
    assert_eq!(
        problem.kind,
        "https://souk.dev/problems/registry/version-exists"
    );
    assert!(problem.detail.contains("immutable"), "{}", problem.detail);
}

#[tokio::test]
async fn publish_signed_by_an_unknown_key_is_refused_as_unknown_key() {
    let registry = start_registry().await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    let (entry, bytes) = registry.publish_entry("membership", "1.0.0", &KeyPair::generate());
    let err = client.publish(&entry, bytes, |_, _| {}).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some("unknown-key"), "{err}");
    assert!(registry.store.modules().unwrap().is_empty());
}

#[tokio::test]
async fn publish_by_a_key_not_granted_the_module_is_refused_as_key_not_granted() {
    let registry = start_registry().await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    // `acme` may publish acme-*, not membership.
    let (entry, bytes) = registry.publish_entry("membership", "1.0.0", &registry.op.acme);
    let err = client.publish(&entry, bytes, |_, _| {}).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some("key-not-granted"), "{err}");
}

#[tokio::test]
async fn publish_by_a_revoked_key_is_refused_as_revoked_key() {
    let registry = start_registry().await;
    let acme = registry.op.acme.id();
    registry.rotate(
        2,
        |doc| {
            doc.publishers.retain(|g| g.key.id() != acme);
            doc.revoked.insert(acme.clone());
        },
        &[&registry.op.root],
    );
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    let (entry, bytes) = registry.publish_entry("acme-crm", "1.0.0", &registry.op.acme);
    let err = client.publish(&entry, bytes, |_, _| {}).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some("revoked-key"), "{err}");
}

#[tokio::test]
async fn publish_with_a_forged_signature_is_refused_as_bad_signature() {
    let registry = start_registry().await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    let (mut entry, bytes) = registry.publish_entry("membership", "1.0.0", &registry.op.publisher);
    entry.signature = KeyPair::generate().sign(&entry.entry.signing_bytes().unwrap());
    let err = client.publish(&entry, bytes, |_, _| {}).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some("bad-signature"), "{err}");
}

#[tokio::test]
async fn uploaded_package_that_differs_from_the_signed_digest_is_refused() {
    let registry = start_registry().await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    let (entry, mut bytes) = registry.publish_entry("membership", "1.0.0", &registry.op.publisher);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = client.publish(&entry, bytes, |_, _| {}).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some("digest-mismatch"), "{err}");
}

#[tokio::test]
async fn package_refused_by_the_hosts_validator_is_answered_invalid_package() {
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::new();
    let store = RegistryStore::create(
        dir.path(),
        op.root_v1().sign(&[&op.root]).unwrap(),
        StoreLimits::default(),
    )
    .unwrap();
    let service = RegistryService::new(store.clone(), vec![op.snapshot.clone()]).with_validator(
        Arc::new(|_| Err("the component targets no supported WIT version".into())),
    );
    let server = Server::start(router(Arc::new(service))).await;
    let pinned = store.trust_chain().unwrap().remove(0);
    let cache = tempfile::tempdir().unwrap();
    let client = client_of(&server.url, cache.path(), pinned);
    let bytes = package_bytes("membership", "1.0.0", 64);
    let entry = SignedEntry::sign(
        None,
        ModuleAction::Publish(Publish {
            module: slug("membership"),
            version: v("1.0.0"),
            digest: Digest::of(&bytes),
            dependencies: Default::default(),
            api: ApiVersion::V0_1_0,
            published_at: NOW,
        }),
        &op.publisher,
    )
    .unwrap();
    let err = client.publish(&entry, bytes, |_, _| {}).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some("invalid-package"), "{err}");
    assert!(
        err.to_string().contains("no supported WIT version"),
        "{err}"
    );
}

#[tokio::test]
async fn package_over_the_registry_limit_is_answered_413() {
    let registry = start_registry_with(StoreLimits {
        max_package_bytes: 8 * 1024,
        ..StoreLimits::default()
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    let bytes = package_bytes("membership", "1.0.0", 64 * 1024);
    let action = ModuleAction::Publish(Publish {
        module: slug("membership"),
        version: v("1.0.0"),
        digest: Digest::of(&bytes),
        dependencies: Default::default(),
        api: ApiVersion::V0_1_0,
        published_at: NOW,
    });
    let entry = registry.sign(action, &registry.op.publisher);
    let err = client.publish(&entry, bytes, |_, _| {}).await.unwrap_err();
    let ClientError::Refused { problem, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(problem.status, 413);
    assert_eq!(problem.kind_name(), "package-too-large");
}

// ----- download attacks -----

#[tokio::test]
async fn tampered_package_bytes_served_by_the_registry_are_refused() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let (hostile, proxy) = Hostile::start(registry.url()).await;
    let bytes = package_bytes("membership", "1.0.0", 64);
    hostile.serve(&blob_path(&bytes), Serve::Tampered);
    let cache = tempfile::tempdir().unwrap();
    let client = client_of(&proxy.url, cache.path(), registry.pinned());
    client.refresh(NOW).await.unwrap();
    let err = client
        .fetch_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");
    assert!(
        !cache
            .path()
            .join("blobs/sha256")
            .join(Digest::of(&bytes).hex())
            .exists(),
        "nothing unverified may be cached"
    );
}

#[tokio::test]
async fn truncated_download_is_refused() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let (hostile, proxy) = Hostile::start(registry.url()).await;
    let bytes = package_bytes("membership", "1.0.0", 64);
    hostile.serve(&blob_path(&bytes), Serve::Truncated);
    let cache = tempfile::tempdir().unwrap();
    let client = client_of(&proxy.url, cache.path(), registry.pinned());
    client.refresh(NOW).await.unwrap();
    let err = client
        .fetch_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Truncated { .. }), "{err}");
}

#[tokio::test]
async fn oversized_download_is_cut_off_at_the_limit_while_streaming() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let (hostile, proxy) = Hostile::start(registry.url()).await;
    let bytes = package_bytes("membership", "1.0.0", 64);
    hostile.serve(&blob_path(&bytes), Serve::Endless);
    let limit = 1024 * 1024;
    let options = ClientOptions {
        max_package_bytes: limit,
        ..ClientOptions::default()
    };
    let cache = tempfile::tempdir().unwrap();
    let client = RegistryClient::new(&proxy.url, cache.path(), registry.pinned(), options).unwrap();
    client.refresh(NOW).await.unwrap();
    let err = client
        .fetch_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::TooLarge {
                what: "package",
                ..
            }
        ),
        "{err}"
    );
    // The server had 1 GiB to send; the client stopped reading near the
    // limit (socket buffers account for the rest).
    let served = hostile.served_bytes.load(Ordering::SeqCst);
    assert!(served < 64 * 1024 * 1024, "served {served} bytes");

    // A download announcing more than the limit is refused before its body
    // is read.
    hostile.serve(
        &blob_path(&bytes),
        Serve::Bytes(vec![0; 2 * limit as usize]),
    );
    let err = client
        .fetch_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::TooLarge { .. }), "{err}");
}

// ----- snapshot attacks -----

#[tokio::test]
async fn replayed_older_snapshot_is_refused_after_a_newer_one_was_accepted() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let (hostile, proxy) = Hostile::start(registry.url()).await;
    let old_snapshot = hostile.upstream_bytes("/registry/v1/snapshot").await;
    let old_log = hostile
        .upstream_bytes("/registry/v1/modules/membership/log")
        .await;
    registry.publish("1.1.0").await;

    let cache = tempfile::tempdir().unwrap();
    let client = client_of(&proxy.url, cache.path(), registry.pinned());
    assert_eq!(client.refresh(NOW).await.unwrap().snapshot_version(), 2);

    hostile.serve("/registry/v1/snapshot", Serve::Bytes(old_snapshot));
    hostile.serve("/registry/v1/modules/membership/log", Serve::Bytes(old_log));
    let err = client.refresh(NOW).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Snapshot(SnapshotError::Rollback {
                offered: 1,
                last_accepted: 2
            })
        ),
        "{err}"
    );

    // The accepted version is persisted: a restarted host refuses it too.
    let restarted = client_of(&proxy.url, cache.path(), registry.pinned());
    let err = restarted.refresh(NOW).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Snapshot(SnapshotError::Rollback { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn expired_snapshot_is_refused_as_freeze() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    // The registry's clock stands still (a frozen mirror); the host's moves on.
    let err = client.refresh(NOW + SNAPSHOT_LIFETIME).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Snapshot(SnapshotError::Expired { .. })),
        "{err}"
    );
    // A registry whose clock moves re-signs before expiry.
    registry
        .clock
        .store(NOW + SNAPSHOT_LIFETIME, Ordering::SeqCst);
    let index = client.refresh(NOW + SNAPSHOT_LIFETIME + 1).await.unwrap();
    assert_eq!(index.snapshot_version(), 2);
    assert_eq!(index.expires(), NOW + 2 * SNAPSHOT_LIFETIME);
}

#[tokio::test]
async fn log_from_one_snapshot_mixed_into_another_is_refused() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let (hostile, proxy) = Hostile::start(registry.url()).await;
    let old_log = hostile
        .upstream_bytes("/registry/v1/modules/membership/log")
        .await;
    registry.publish("1.1.0").await;
    // The new snapshot, with the log as it was under the old one.
    hostile.serve("/registry/v1/modules/membership/log", Serve::Bytes(old_log));
    let cache = tempfile::tempdir().unwrap();
    let client = client_of(&proxy.url, cache.path(), registry.pinned());
    let err = client.refresh(NOW).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Snapshot(SnapshotError::HeadMismatch { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("mix-and-match"), "{err}");
}

// ----- states -----

#[tokio::test]
async fn yanked_version_is_not_choosable_but_still_fetchable() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    registry.publish("1.1.0").await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    let yank = registry.sign(
        ModuleAction::Yank(Yank {
            module: slug("membership"),
            version: v("1.0.0"),
            reason: "loses notes".into(),
        }),
        &registry.op.publisher,
    );
    let receipt = client.append_state(&yank).await.unwrap();
    assert_eq!(receipt.snapshot_version, Some(3));

    let index = client.refresh(NOW).await.unwrap();
    let membership = slug("membership");
    let status = index.status(&membership, &v("1.0.0")).unwrap();
    assert_eq!(status.state(), VersionState::Yanked);
    let choosable: Vec<_> = index
        .choosable_versions(&membership)
        .into_iter()
        .map(|p| p.version.to_string())
        .collect();
    assert_eq!(choosable, vec!["1.1.0"]);
    let offered: Vec<_> = index
        .registry_index()
        .versions(&membership)
        .map(|o| (o.version.to_string(), o.yanked))
        .collect();
    assert_eq!(
        offered,
        vec![("1.0.0".into(), true), ("1.1.0".into(), false)]
    );

    // A lockfile naming the yanked version still installs it.
    let fetched = client
        .fetch_package(&membership, &v("1.0.0"))
        .await
        .unwrap();
    assert_eq!(fetched.status.yanked.as_deref(), Some("loses notes"));
}

#[tokio::test]
async fn revoked_version_is_refused_by_fetch_package_for_running() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    client.refresh(NOW).await.unwrap();
    // Installed (and cached) before the revocation.
    client
        .fetch_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap();

    let revoke = registry.sign(
        ModuleAction::Revoke(Revoke {
            module: slug("membership"),
            version: v("1.0.0"),
            reason: "exfiltrates member emails".into(),
        }),
        &registry.op.publisher,
    );
    client.append_state(&revoke).await.unwrap();
    let index = client.refresh(NOW).await.unwrap();
    assert!(
        !index
            .status(&slug("membership"), &v("1.0.0"))
            .unwrap()
            .may_run()
    );
    assert_eq!(
        index.registry_index().versions(&slug("membership")).count(),
        0
    );
    for err in [
        client
            .fetch_package(&slug("membership"), &v("1.0.0"))
            .await
            .unwrap_err(),
        client
            .offline_package(&slug("membership"), &v("1.0.0"))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, ClientError::Revoked { .. }), "{err}");
        assert!(err.to_string().contains("exfiltrates"), "{err}");
    }
}

// ----- trust -----

#[tokio::test]
async fn trust_root_rotation_is_followed_across_two_rotations_by_a_client_pinned_at_v1() {
    let registry = start_registry().await;
    let pinned = registry.pinned();
    let cache = tempfile::tempdir().unwrap();

    let root2 = KeyPair::generate();
    let root3 = KeyPair::generate();
    let newcomer = KeyPair::generate();
    registry.rotate(
        2,
        |doc| doc.root = KeySet::single(root2.public()),
        &[&registry.op.root, &root2],
    );
    // Root 3 grants a new publisher: only a client that followed both
    // rotations accepts what it signs.
    registry.rotate(
        3,
        |doc| {
            doc.root = KeySet::single(root3.public());
            doc.publishers.push(PublisherGrant {
                key: newcomer.public(),
                modules: vec![ModulePattern::parse("forum").unwrap()],
            });
        },
        &[&root2, &root3],
    );
    let client = client_of(registry.url(), cache.path(), pinned.clone());
    let (entry, bytes) = registry.publish_entry("forum", "1.0.0", &newcomer);
    client.publish(&entry, bytes, |_, _| {}).await.unwrap();

    let index = client.refresh(NOW).await.unwrap();
    assert_eq!(index.trust_version(), 3);
    assert!(index.log(&slug("forum")).is_some());
    client
        .fetch_package(&slug("forum"), &v("1.0.0"))
        .await
        .unwrap();

    // The followed roots are persisted: a restarted client starts at 3.
    let restarted = client_of(registry.url(), cache.path(), pinned);
    assert_eq!(restarted.trust_version().await, 3);
}

#[tokio::test]
async fn rotation_not_signed_by_the_old_root_is_not_followed() {
    let registry = start_registry().await;
    let (hostile, proxy) = Hostile::start(registry.url()).await;
    let mut doc = registry.store.trust().unwrap().root().clone();
    doc.version = 2;
    let usurper = KeyPair::generate();
    doc.root = KeySet::single(usurper.public());
    let chain = vec![registry.pinned(), doc.sign(&[&usurper]).unwrap()];
    hostile.serve(
        "/registry/v1/trust",
        Serve::Bytes(serde_json::to_vec(&chain).unwrap()),
    );
    let cache = tempfile::tempdir().unwrap();
    let client = client_of(&proxy.url, cache.path(), registry.pinned());
    let err = client.refresh(NOW).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Trust(TrustError::RotationNotSigned { .. })
        ),
        "{err}"
    );
    assert_eq!(client.trust_version().await, 1);
}

// ----- offline -----

#[tokio::test]
async fn offline_install_from_cache_works_with_the_server_stopped() {
    let mut registry = start_registry().await;
    registry.publish("1.0.0").await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    client.refresh(NOW).await.unwrap();
    let online = client
        .fetch_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap();

    registry.server.stop().await;
    let host = registry.client(cache.path());
    assert!(matches!(
        host.refresh(NOW).await,
        Err(ClientError::Http { .. })
    ));
    let index = host.offline_index().await.unwrap();
    assert_eq!(index.snapshot_version(), 1);
    let offline = host
        .offline_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap();
    assert_eq!(offline.package.digest, online.package.digest);
    // After the offline index is loaded, fetch_package answers from cache.
    host.fetch_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap();

    // What is read back from disk is re-verified: a damaged cached package
    // is refused, not installed.
    let mut damaged = std::fs::read(&offline.path).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    std::fs::write(&offline.path, damaged).unwrap();
    let err = host
        .offline_package(&slug("membership"), &v("1.0.0"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");
}

// ----- publishing authenticates before it reads -----

/// What a registry answered on a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl RawAnswer {
    /// The problem document's `type`, after checking it is one.
    fn problem_kind(&self) -> String {
        assert_eq!(
            self.headers.get("content-type").map(String::as_str),
            Some("application/problem+json"),
            "{self:?}"
        );
        let problem: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(problem["status"], self.status, "{problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
        problem["type"]
            .as_str()
            .unwrap()
            .strip_prefix("https://souk.dev/problems/registry/")
            .unwrap()
            .to_owned()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A publish request written by hand, so a test controls how much of the
/// body is sent and when.
struct RawPublish {
    stream: tokio::net::TcpStream,
}

/// Writes all of `bytes` (tokio's `net` API alone, without `io-util`).
async fn write_all(stream: &tokio::net::TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what is available into `buf`; 0 at the end of the stream.
async fn read_some(stream: &tokio::net::TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

impl RawPublish {
    /// Connects and sends the request head: `headers` and, when given, a
    /// Content-Length (otherwise the body is chunked).
    async fn start(url: &str, headers: &[(&str, String)], content_length: Option<u64>) -> Self {
        let addr = url.strip_prefix("http://").unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut head = format!("POST /registry/v1/publish HTTP/1.1\r\nhost: {addr}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        match content_length {
            Some(n) => head.push_str(&format!("content-length: {n}\r\n")),
            None => head.push_str("transfer-encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        write_all(&stream, head.as_bytes()).await.unwrap();
        RawPublish { stream }
    }

    /// Sends body bytes (as they are: the caller frames chunked bodies).
    async fn send(&mut self, bytes: &[u8]) {
        write_all(&self.stream, bytes).await.unwrap();
    }

    /// Closes the sending side: a body shorter than announced ends here.
    fn end_sending(self) -> Self {
        let std = self.stream.into_std().unwrap();
        std.shutdown(std::net::Shutdown::Write).unwrap();
        RawPublish {
            stream: tokio::net::TcpStream::from_std(std).unwrap(),
        }
    }

    /// Reads the answer. The deadline only keeps a broken registry (one
    /// that waits for a body it was never going to be sent) from hanging
    /// the test; it is not a timing assertion.
    async fn answer(self) -> RawAnswer {
        tokio::time::timeout(Duration::from_secs(60), read_answer(&self.stream))
            .await
            .expect("the registry answered nothing: it is waiting for the body")
    }
}

async fn read_answer(stream: &tokio::net::TcpStream) -> RawAnswer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = read_some(stream, &mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before an answer: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let length: usize = headers["content-length"].parse().unwrap();
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = read_some(stream, &mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside the answer");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    RawAnswer {
        status,
        headers,
        body,
    }
}

fn entry_header(entry: &SignedEntry) -> (&'static str, String) {
    use base64::Engine as _;
    (
        "souk-entry",
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(entry).unwrap()),
    )
}

/// Files in the store's `tmp/`.
fn tmp_files(store: &RegistryStore) -> Vec<String> {
    std::fs::read_dir(store.dir().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Waits until `tmp/` holds `count` files (the registry removes a file
/// when it notices a broken upload). Panics after a generous deadline.
async fn wait_for_tmp_files(store: &RegistryStore, count: usize) {
    for _ in 0..3000 {
        if tmp_files(store).len() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("tmp/ holds {:?}, expected {count} files", tmp_files(store));
}

/// Checks that the store holds exactly `modules`, each version's blob
/// intact, no other blob, and nothing in `tmp/`.
fn assert_store_holds(store: &RegistryStore, modules: &[(&str, &[&str])]) {
    let expected: Vec<Slug> = modules.iter().map(|(m, _)| slug(m)).collect();
    assert_eq!(store.modules().unwrap(), expected);
    let mut digests = BTreeSet::new();
    for (module, versions) in modules {
        let log = store.module_log(&slug(module)).unwrap();
        let published: Vec<String> = log
            .versions()
            .map(|p| p.publish.version.to_string())
            .collect();
        assert_eq!(published, *versions, "{module}");
        for version in *versions {
            let package = store.package(&slug(module), &v(version)).unwrap();
            digests.insert(package.digest.hex());
        }
    }
    let blobs: BTreeSet<String> = std::fs::read_dir(store.dir().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        blobs, digests,
        "blobs/ holds exactly the published packages"
    );
    assert_eq!(tmp_files(store), Vec::<String>::new(), "tmp/ is empty");
}

fn publish_action(module: &str, version: &str, bytes: &[u8]) -> ModuleAction {
    ModuleAction::Publish(Publish {
        module: slug(module),
        version: v(version),
        digest: Digest::of(bytes),
        dependencies: Default::default(),
        api: ApiVersion::V0_1_0,
        published_at: NOW,
    })
}

/// The announced size of every refused request below: a whole default
/// package, of which only 16 bytes are ever sent.
const ANNOUNCED: u64 = 32 * 1024 * 1024;

/// A publish request refused from its headers: (what it is, its headers,
/// the status and problem kind it must get).
type RefusalCase = (&'static str, Vec<(&'static str, String)>, u16, &'static str);

#[tokio::test]
async fn publish_refusals_are_answered_from_the_headers_before_the_body_is_read() {
    use base64::Engine as _;
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let op = &registry.op;
    let (valid, valid_bytes) = registry.publish_entry("membership", "1.1.0", &op.publisher);

    let mut cases: Vec<RefusalCase> = vec![
        ("no entry header", vec![], 401, "missing-entry"),
        (
            "entry header not base64",
            vec![("souk-entry", "!!not base64!!".into())],
            400,
            "malformed-entry",
        ),
        (
            "entry header not JSON",
            vec![("souk-entry", b64(b"\xff\xfe not json"))],
            400,
            "malformed-entry",
        ),
        (
            "entry header JSON but no entry",
            vec![("souk-entry", b64(br#"{"entry": {"prev": null}}"#))],
            400,
            "malformed-entry",
        ),
        (
            "entry header over 64 KiB",
            vec![("souk-entry", "A".repeat(65 * 1024))],
            413,
            "entry-too-large",
        ),
    ];
    let mut signed_case =
        |name: &'static str, entry: SignedEntry, status: u16, kind: &'static str| {
            cases.push((name, vec![entry_header(&entry)], status, kind));
        };
    // Keys the trust root does not let sign for membership.
    let (stranger, _) = registry.publish_entry("membership", "1.1.0", &KeyPair::generate());
    signed_case("unknown key", stranger, 403, "unknown-key");
    let (ungranted, _) = registry.publish_entry("membership", "1.1.0", &op.acme);
    signed_case(
        "key granted other modules",
        ungranted,
        403,
        "key-not-granted",
    );
    // Signatures that do not verify.
    let mut flipped = valid.clone();
    let mut sig = flipped.signature.to_bytes();
    sig[10] ^= 0x01;
    flipped.signature = souk_module_registry::Signature::from_bytes(sig);
    signed_case(
        "signature with a flipped bit",
        flipped,
        403,
        "bad-signature",
    );
    let mut forged = valid.clone();
    forged.signature = KeyPair::generate().sign(&forged.entry.signing_bytes().unwrap());
    signed_case("signature by another key", forged, 403, "bad-signature");
    let mut zero = valid.clone();
    zero.signature = souk_module_registry::Signature::from_bytes([0; 64]);
    signed_case("all-zero signature", zero, 403, "bad-signature");
    let mut other_digest = valid.clone();
    let ModuleAction::Publish(record) = &mut other_digest.entry.action else {
        unreachable!()
    };
    record.digest = Digest::of(b"another package");
    signed_case(
        "signature made for another digest",
        other_digest,
        403,
        "bad-signature",
    );
    let mut other_version = valid.clone();
    let ModuleAction::Publish(record) = &mut other_version.entry.action else {
        unreachable!()
    };
    record.version = v("9.9.9");
    signed_case(
        "signature made for another version",
        other_version,
        403,
        "bad-signature",
    );
    let mut other_prev = valid.clone();
    other_prev.entry.prev = None;
    signed_case(
        "signature made for another log head",
        other_prev,
        403,
        "bad-signature",
    );
    let mut other_signer = valid.clone();
    other_signer.entry.signer = op.acme.id();
    signed_case(
        "signer id swapped for another publisher",
        other_signer,
        403,
        "key-not-granted",
    );
    // Correctly signed, but not something the log takes.
    let stale = SignedEntry::sign(
        None,
        publish_action("membership", "1.1.0", &valid_bytes),
        &op.publisher,
    )
    .unwrap();
    signed_case("entry after an old head", stale, 409, "stale-head");
    let (existing, _) = registry.publish_entry("membership", "1.0.0", &op.publisher);
    signed_case("version already published", existing, 409, "version-exists");
    let yank = registry.sign(
        ModuleAction::Yank(Yank {
            module: slug("membership"),
            version: v("1.0.0"),
            reason: "x".into(),
        }),
        &op.publisher,
    );
    signed_case("a yank entry", yank, 422, "wrong-entry-kind");

    for (name, headers, status, kind) in cases {
        let mut raw = RawPublish::start(registry.url(), &headers, Some(ANNOUNCED)).await;
        raw.send(&[0u8; 16]).await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, status, "{name}: {}", answer.text());
        assert_eq!(answer.problem_kind(), kind, "{name}");
        if status == 401 {
            assert!(
                answer.headers.contains_key("www-authenticate"),
                "{name}: {answer:?}"
            );
        }
        assert_store_holds(&registry.store, &[("membership", &["1.0.0"])]);
    }

    // A valid entry announcing more than the limit is refused before its
    // body too; the same entry with its real body is then accepted.
    let mut raw = RawPublish::start(
        registry.url(),
        &[entry_header(&valid)],
        Some(registry.store.limits().max_package_bytes + 1),
    )
    .await;
    raw.send(&[0u8; 16]).await;
    let answer = raw.answer().await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(answer.problem_kind(), "package-too-large");
    assert_store_holds(&registry.store, &[("membership", &["1.0.0"])]);
    let cache = tempfile::tempdir().unwrap();
    registry
        .client(cache.path())
        .publish(&valid, valid_bytes, |_, _| {})
        .await
        .unwrap();
    assert_store_holds(&registry.store, &[("membership", &["1.0.0", "1.1.0"])]);
}

#[tokio::test]
async fn publish_by_a_revoked_key_is_refused_before_the_body_is_read() {
    let registry = start_registry().await;
    let acme = registry.op.acme.id();
    registry.rotate(
        2,
        |doc| {
            doc.publishers.retain(|g| g.key.id() != acme);
            doc.revoked.insert(acme.clone());
        },
        &[&registry.op.root],
    );
    let (entry, _) = registry.publish_entry("acme-crm", "1.0.0", &registry.op.acme);
    let mut raw = RawPublish::start(registry.url(), &[entry_header(&entry)], Some(ANNOUNCED)).await;
    raw.send(b"x").await;
    let answer = raw.answer().await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert_eq!(answer.problem_kind(), "revoked-key");
    assert_store_holds(&registry.store, &[]);
}

#[tokio::test]
async fn body_that_is_not_the_signed_package_is_refused_and_nothing_is_kept() {
    let registry = start_registry().await;
    let (entry, bytes) = registry.publish_entry("membership", "1.0.0", &registry.op.publisher);
    let mut flipped_first = bytes.clone();
    flipped_first[0] ^= 0x01;
    let mut flipped_last = bytes.clone();
    *flipped_last.last_mut().unwrap() ^= 0x80;
    let mut appended = bytes.clone();
    appended.push(0);
    let shortened = bytes[..bytes.len() - 1].to_vec();
    // A valid package of its own, but not the one the entry signs.
    let another = package_bytes("membership", "1.0.0", 65);
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    for (name, body) in [
        ("first byte flipped", flipped_first),
        ("last byte flipped", flipped_last),
        ("one byte appended", appended),
        ("one byte short", shortened),
        ("another valid package", another),
        ("empty body", Vec::new()),
    ] {
        let err = client.publish(&entry, body, |_, _| {}).await.unwrap_err();
        assert_eq!(err.problem_kind(), Some("digest-mismatch"), "{name}: {err}");
        assert_store_holds(&registry.store, &[]);
    }
    client.publish(&entry, bytes, |_, _| {}).await.unwrap();
    assert_store_holds(&registry.store, &[("membership", &["1.0.0"])]);
}

#[tokio::test]
async fn over_size_body_is_refused_at_the_bound_while_it_streams() {
    let limit = 256 * 1024;
    let registry = start_registry_with(StoreLimits {
        max_package_bytes: limit,
        ..StoreLimits::default()
    })
    .await;
    let (entry, _) = registry.publish_entry("membership", "1.0.0", &registry.op.publisher);

    // Chunked, without a length: cut off once it passes the limit.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let endless = futures_util::stream::iter((0..1024).map(move |_| {
        counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    }));
    let (name, value) = entry_header(&entry);
    let response = reqwest::Client::new()
        .post(format!("{}/registry/v1/publish", registry.url()))
        .header(name, value)
        .body(reqwest::Body::wrap_stream(endless))
        .send()
        .await;
    match response {
        Ok(response) => {
            assert_eq!(response.status(), 413);
            let problem: serde_json::Value = response.json().await.unwrap();
            assert_eq!(
                problem["type"],
                "https://souk.dev/problems/registry/package-too-large"
            );
        }
        // The registry closed the connection while the client was still
        // sending; what matters is what it kept and read.
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    let sent = sent.load(Ordering::SeqCst);
    println!("over-size chunked upload: the client got {sent} bytes out before the cut");
    assert!(
        sent < 64 * 1024 * 1024,
        "the registry read the whole 64 MiB body"
    );
    wait_for_tmp_files(&registry.store, 0).await;
    assert_store_holds(&registry.store, &[]);

    // Chunked by hand, stopping just past the limit: the answer comes
    // while the connection is still open.
    let mut raw = RawPublish::start(registry.url(), &[entry_header(&entry)], None).await;
    let piece = vec![1u8; 32 * 1024];
    for _ in 0..(limit / piece.len() as u64 + 1) {
        raw.send(format!("{:x}\r\n", piece.len()).as_bytes()).await;
        raw.send(&piece).await;
        raw.send(b"\r\n").await;
    }
    let answer = raw.answer().await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(answer.problem_kind(), "package-too-large");
    assert_store_holds(&registry.store, &[]);
}

#[tokio::test]
async fn truncated_or_abandoned_upload_leaves_no_file_and_no_version() {
    let registry = start_registry().await;
    // A package large enough to be cut in several places.
    let bytes = package_bytes("membership", "1.0.0", 512 * 1024);
    let entry = registry.sign(
        publish_action("membership", "1.0.0", &bytes),
        &registry.op.publisher,
    );
    for cut in [0, 1, bytes.len() / 3, bytes.len() - 1] {
        // Half-closed: the registry sees the body end short.
        let mut raw = RawPublish::start(
            registry.url(),
            &[entry_header(&entry)],
            Some(bytes.len() as u64),
        )
        .await;
        raw.send(&bytes[..cut]).await;
        let answer = raw.end_sending().answer().await;
        assert_eq!(answer.status, 400, "cut at {cut}: {}", answer.text());
        assert_eq!(answer.problem_kind(), "incomplete-body", "cut at {cut}");
        wait_for_tmp_files(&registry.store, 0).await;
        assert_store_holds(&registry.store, &[]);

        // Abandoned: the connection is dropped mid-body.
        let mut raw = RawPublish::start(
            registry.url(),
            &[entry_header(&entry)],
            Some(bytes.len() as u64),
        )
        .await;
        raw.send(&bytes[..cut]).await;
        if cut > 0 {
            wait_for_tmp_files(&registry.store, 1).await;
        }
        drop(raw);
        wait_for_tmp_files(&registry.store, 0).await;
        assert_store_holds(&registry.store, &[]);
    }
    let cache = tempfile::tempdir().unwrap();
    registry
        .client(cache.path())
        .publish(&entry, bytes, |_, _| {})
        .await
        .unwrap();
    assert_store_holds(&registry.store, &[("membership", &["1.0.0"])]);
}

#[tokio::test]
async fn uploads_beyond_the_bound_get_503_with_retry_after_and_only_complete_versions_are_stored() {
    let registry = start_registry_bounded(StoreLimits::default(), 2).await;
    let op = &registry.op;
    let upload = |module: &str, key: &KeyPair| {
        let bytes = package_bytes(module, "1.0.0", 256 * 1024);
        let entry = registry.sign(publish_action(module, "1.0.0", &bytes), key);
        (entry, bytes)
    };
    let (a, a_bytes) = upload("acme-a", &op.acme);
    let (b, b_bytes) = upload("acme-b", &op.acme);
    let (c, c_bytes) = upload("acme-c", &op.acme);
    let (m, m_bytes) = upload("membership", &op.publisher);

    // Two uploads take both slots and stop halfway.
    let half = |bytes: &[u8]| bytes[..bytes.len() / 2].to_vec();
    let mut held_a = RawPublish::start(
        registry.url(),
        &[entry_header(&a)],
        Some(a_bytes.len() as u64),
    )
    .await;
    held_a.send(&half(&a_bytes)).await;
    let mut held_b = RawPublish::start(
        registry.url(),
        &[entry_header(&b)],
        Some(b_bytes.len() as u64),
    )
    .await;
    held_b.send(&half(&b_bytes)).await;
    wait_for_tmp_files(&registry.store, 2).await;

    // Every further authenticated upload is turned away before its body.
    for (entry, bytes) in [(&c, &c_bytes), (&m, &m_bytes), (&c, &c_bytes)] {
        let mut raw = RawPublish::start(
            registry.url(),
            &[entry_header(entry)],
            Some(bytes.len() as u64),
        )
        .await;
        raw.send(&bytes[..16]).await;
        let answer = raw.answer().await;
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert_eq!(answer.problem_kind(), "too-many-uploads");
        assert_eq!(
            answer.headers.get("retry-after").map(String::as_str),
            Some("5")
        );
    }
    // The client gives up when told to not retry.
    let cache = tempfile::tempdir().unwrap();
    let no_retry = RegistryClient::new(
        registry.url(),
        cache.path(),
        registry.pinned(),
        ClientOptions {
            busy_retries: 0,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let err = no_retry
        .publish(&c, c_bytes.clone(), |_, _| {})
        .await
        .unwrap_err();
    assert_eq!(err.problem_kind(), Some("too-many-uploads"), "{err}");
    // Unauthenticated requests are still answered while the slots are full.
    let mut raw = RawPublish::start(registry.url(), &[], Some(ANNOUNCED)).await;
    raw.send(b"x").await;
    assert_eq!(raw.answer().await.status, 401);
    assert_eq!(tmp_files(&registry.store).len(), 2);
    assert!(registry.store.modules().unwrap().is_empty());

    // One held upload is abandoned: its slot and its file go.
    drop(held_b);
    wait_for_tmp_files(&registry.store, 1).await;
    // The other completes.
    held_a.send(&a_bytes[a_bytes.len() / 2..]).await;
    let answer = held_a.answer().await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    // Slots are free again: the refused ones go through (the client
    // retries on its own when the registry is busy).
    let client = registry.client(cache.path());
    client.publish(&c, c_bytes, |_, _| {}).await.unwrap();
    client.publish(&m, m_bytes, |_, _| {}).await.unwrap();
    assert_store_holds(
        &registry.store,
        &[
            ("acme-a", &["1.0.0"]),
            ("acme-c", &["1.0.0"]),
            ("membership", &["1.0.0"]),
        ],
    );
}

#[tokio::test]
async fn many_parallel_authenticated_uploads_store_only_complete_verified_versions() {
    let registry = start_registry_bounded(StoreLimits::default(), 3).await;
    let mut uploads = Vec::new();
    for i in 0..12 {
        let module = format!("acme-m{i}");
        let bytes = package_bytes(&module, "1.0.0", 128 * 1024 + i);
        let entry = registry.sign(publish_action(&module, "1.0.0", &bytes), &registry.op.acme);
        uploads.push((module, entry, bytes));
    }
    let mut tasks = Vec::new();
    for (module, entry, bytes) in uploads {
        let url = registry.url().to_owned();
        let pinned = registry.pinned();
        tasks.push(tokio::spawn(async move {
            let cache = tempfile::tempdir().unwrap();
            let client = RegistryClient::new(
                &url,
                cache.path(),
                pinned,
                ClientOptions {
                    busy_retries: 0,
                    ..ClientOptions::default()
                },
            )
            .unwrap();
            (module, client.publish(&entry, bytes, |_, _| {}).await)
        }));
    }
    let mut stored = Vec::new();
    let mut busy = 0;
    for task in tasks {
        let (module, result) = task.await.unwrap();
        match result {
            Ok(receipt) => {
                assert_eq!(receipt.module, module);
                stored.push(module);
            }
            Err(e) => {
                assert_eq!(e.problem_kind(), Some("too-many-uploads"), "{module}: {e}");
                busy += 1;
            }
        }
    }
    println!(
        "12 parallel uploads, 3 slots: {} stored, {busy} turned away",
        stored.len()
    );
    assert!(!stored.is_empty());
    stored.sort();
    let versions: Vec<(&str, &[&str])> = stored
        .iter()
        .map(|m| (m.as_str(), &["1.0.0"][..]))
        .collect();
    assert_store_holds(&registry.store, &versions);
}

#[tokio::test]
async fn every_registry_error_is_a_problem_document_without_server_paths() {
    let registry = start_registry().await;
    registry.publish("1.0.0").await;
    let http = reqwest::Client::new();
    let dir = registry.store.dir().to_string_lossy().into_owned();
    let check = |status: u16, kind: &str, response_status: u16, content_type: &str, body: &str| {
        assert_eq!(response_status, status, "{kind}: {body}");
        assert_eq!(content_type, "application/problem+json", "{kind}: {body}");
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            problem["type"],
            format!("https://souk.dev/problems/registry/{kind}")
        );
        assert!(!body.contains(&dir), "{kind} shows the store path: {body}");
        assert!(!body.contains("/tmp"), "{kind} shows a server path: {body}");
    };
    // Status, content type and body of one request.
    let send = |method: &str, path: &str| {
        let request = http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", registry.url()),
        );
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_owned();
            (status, content_type, response.text().await.unwrap())
        }
    };
    for (method, path, status, kind) in [
        ("GET", "/registry/v1/publish", 405, "method-not-allowed"),
        ("DELETE", "/registry/v1/modules", 405, "method-not-allowed"),
        ("PUT", "/registry/v1/state", 405, "method-not-allowed"),
        (
            "GET",
            "/registry/v1/modules/%FF%FE/log",
            400,
            "invalid-path",
        ),
        (
            "GET",
            "/registry/v1/blobs/sha256/%C3%28",
            400,
            "invalid-path",
        ),
        (
            "GET",
            "/registry/v1/modules/..%2F..%2Fetc/log",
            400,
            "invalid-slug",
        ),
        ("GET", "/", 404, "not-found"),
        ("GET", "/registry", 404, "not-found"),
        ("POST", "/elsewhere", 404, "not-found"),
    ] {
        let (status_got, content_type, body) = send(method, path).await;
        check(status, kind, status_got, &content_type, &body);
    }

    // A damaged store answers 500 without naming its files.
    std::fs::write(
        registry.store.dir().join("logs/membership.json"),
        b"not json",
    )
    .unwrap();
    for (path, method) in [
        ("/registry/v1/modules/membership/log", "GET"),
        ("/registry/v1/snapshot", "GET"),
    ] {
        let (status_got, content_type, body) = send(method, path).await;
        check(500, "internal", status_got, &content_type, &body);
    }
    let (entry, _) = registry.publish_entry("acme-x", "1.0.0", &registry.op.acme);
    let mut broken = entry.clone();
    broken.entry.action = publish_action("membership", "2.0.0", b"x");
    broken.entry.signer = registry.op.publisher.id();
    broken.signature = registry
        .op
        .publisher
        .sign(&broken.entry.signing_bytes().unwrap());
    let mut raw =
        RawPublish::start(registry.url(), &[entry_header(&broken)], Some(ANNOUNCED)).await;
    raw.send(b"x").await;
    let answer = raw.answer().await;
    check(
        500,
        "internal",
        answer.status,
        answer.headers["content-type"].as_str(),
        &answer.text(),
    );
    assert_eq!(tmp_files(&registry.store), Vec::<String>::new());
}

#[tokio::test]
async fn a_client_streaming_a_large_package_reads_the_early_refusal() {
    let registry = start_registry().await;
    let cache = tempfile::tempdir().unwrap();
    let client = registry.client(cache.path());
    let stranger = KeyPair::generate();
    for round in 0..3 {
        let bytes = package_bytes("membership", "1.0.0", 24 * 1024 * 1024 + round);
        let entry = registry.sign(publish_action("membership", "1.0.0", &bytes), &stranger);
        let mut sent = 0;
        let err = client
            .publish(&entry, bytes, |s, _| sent = s)
            .await
            .unwrap_err();
        assert_eq!(
            err.problem_kind(),
            Some("unknown-key"),
            "round {round}: {err}"
        );
        println!("early refusal, round {round}: the client had sent {sent} bytes");
        assert_store_holds(&registry.store, &[]);
    }
}
