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
use souk_module_registry::http::{RegistryService, router};
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
    let dir = tempfile::tempdir().unwrap();
    let op = Operator::new();
    let store =
        RegistryStore::create(dir.path(), op.root_v1().sign(&[&op.root]).unwrap(), limits).unwrap();
    let clock = Arc::new(AtomicU64::new(NOW));
    let read = Arc::clone(&clock);
    let service = RegistryService::new(store.clone(), vec![op.snapshot.clone()])
        .with_snapshot_lifetime(Duration::from_secs(SNAPSHOT_LIFETIME))
        .with_clock(Arc::new(move || read.load(Ordering::SeqCst)));
    let server = Server::start(router(Arc::new(service))).await;
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

    // Malformed publish requests are answered 400, never 500.
    let post = http
        .post(format!("{}/registry/v1/publish", registry.url()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 400);
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
