//! Operator keys and registry stores, through the real `souk` binary.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn souk(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_souk"))
        .args(args)
        .output()
        .expect("run souk");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keys_generate_writes_a_private_key_only_the_owner_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let out_text = out.to_str().unwrap();
    let (ok, stdout, stderr) = souk(&["keys", "generate", "--out", out_text, "--name", "operator"]);
    assert!(ok, "{stderr}");
    let private = std::fs::read_to_string(out.join("operator.key")).unwrap();
    let mode = std::fs::metadata(out.join("operator.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(stdout.contains("ed25519:"), "{stdout}");
    // The secret never reaches the terminal.
    let secret = private.trim().rsplit(':').next().unwrap();
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    // Never overwritten.
    let (ok, _, stderr) = souk(&["keys", "generate", "--out", out_text, "--name", "operator"]);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("operator.key")).unwrap(),
        private
    );
}

#[test]
fn registry_init_creates_a_signed_trust_root_and_refuses_bad_grants() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys_text = keys.to_str().unwrap();
    for name in ["root", "publisher"] {
        let (ok, _, stderr) = souk(&["keys", "generate", "--out", keys_text, "--name", name]);
        assert!(ok, "{stderr}");
    }
    let store = dir.path().join("store");
    let root_key = keys.join("root.key");
    let grant = format!("{}=membership,acme-*", keys.join("publisher.pub").display());
    let (ok, stdout, stderr) = souk(&[
        "registry",
        "init",
        "--dir",
        store.to_str().unwrap(),
        "--root-key",
        root_key.to_str().unwrap(),
        "--grant",
        &grant,
    ]);
    assert!(ok, "{stdout}{stderr}");
    let root = std::fs::read_to_string(store.join("trust/1.root.json")).unwrap();
    assert!(
        root.contains("signatures") || root.contains("signature"),
        "{root}"
    );

    let (ok, _, stderr) = souk(&[
        "registry",
        "init",
        "--dir",
        store.to_str().unwrap(),
        "--root-key",
        root_key.to_str().unwrap(),
    ]);
    assert!(!ok, "initialising twice must fail");
    assert!(!stderr.is_empty());

    let bad = format!("{}=Not A Slug", keys.join("publisher.pub").display());
    let other = dir.path().join("store2");
    let (ok, _, stderr) = souk(&[
        "registry",
        "init",
        "--dir",
        other.to_str().unwrap(),
        "--root-key",
        root_key.to_str().unwrap(),
        "--grant",
        &bad,
    ]);
    assert!(!ok, "a bad module pattern must be refused");
    assert!(
        stderr.to_lowercase().contains("not a slug")
            || stderr.contains("pattern")
            || stderr.contains("slug"),
        "{stderr}"
    );
}

/// A registry running as its own process.
struct RegistryProcess {
    child: std::process::Child,
    url: String,
}

impl RegistryProcess {
    fn start(store: &std::path::Path, snapshot_key: &std::path::Path) -> Self {
        Self::start_with(store, snapshot_key, &[])
    }

    fn start_with(store: &std::path::Path, snapshot_key: &std::path::Path, args: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_souk"))
            .args(["registry", "serve", "--listen", "127.0.0.1:0", "--dir"])
            .arg(store)
            .arg("--snapshot-key")
            .arg(snapshot_key)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn registry");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("souk registry: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        RegistryProcess { child, url }
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_operator_publishes_to_a_registry_process_and_a_host_installs_after_verifying() {
    let (dir, keys, store) = registry_store();
    let (ok, _, stderr) = souk(&[
        "keys",
        "generate",
        "--out",
        keys.to_str().unwrap(),
        "--name",
        "stranger",
    ]);
    assert!(ok, "{stderr}");
    let registry = RegistryProcess::start(&store, &keys.join("root.key"));
    let root_file = store.join("trust/1.root.json");

    let package = dir.path().join("membership.souk");
    std::fs::write(&package, crate::support::package("membership", |m| m)).unwrap();
    let publish = |key: &str, package: &std::path::Path| {
        souk(&[
            "publish",
            package.to_str().unwrap(),
            "--registry",
            &registry.url,
            "--trust-root",
            root_file.to_str().unwrap(),
            "--key",
            keys.join(key).to_str().unwrap(),
        ])
    };
    let (ok, stdout, stderr) = publish("stranger.key", &package);
    assert!(!ok, "a key not in the trust root published: {stdout}");
    assert!(
        stderr.contains("(403)") && stderr.contains("not a publisher key"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = publish("publisher.key", &package);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("published membership"), "{stdout}");
    assert!(stderr.contains("100%"), "no progress shown: {stderr}");
    let (ok, _, stderr) = publish("publisher.key", &package);
    assert!(
        !ok && stderr.contains("(409)"),
        "republishing must fail: {stderr}"
    );
    // A core module is not a component for a supported WIT version.
    let manifest = std::fs::read_to_string(crate::support::module_files("membership").0).unwrap();
    let core = crate::support::raw_package(&manifest.replace("1.2.0", "1.2.1"), b"\0asm\x01\0\0\0");
    let core_path = dir.path().join("core.souk");
    std::fs::write(&core_path, core).unwrap();
    let (ok, _, stderr) = publish("publisher.key", &core_path);
    assert!(
        !ok && stderr.contains("(422)") && stderr.contains("component"),
        "{stderr}"
    );

    // A host with no modules pulls membership from the registry, verifying
    // trust root, snapshot, log signatures and the package digest.
    let host = crate::support::Host::start(&[]);
    let (ok, stdout, stderr) = host.cli(&[
        "registry",
        "pull",
        "--registry",
        &registry.url,
        "--trust-root",
        root_file.to_str().unwrap(),
        "membership",
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("membership 1.2.0") && stdout.contains("signed by ed25519:"),
        "{stdout}"
    );
    let token = host.tenant_with("acme", "membership");
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        serde_json::json!({"number": "P-1", "name": "Pema", "email": "p@example.org"}),
    );
    assert_eq!(a.status, 201, "{a:?}");

    // Deprecate with a replacement: the marketplace says so.
    let (ok, stdout, stderr) = souk(&[
        "registry",
        "deprecate",
        "membership",
        "1.2.0",
        "--reason",
        "superseded",
        "--replacement",
        "membership-plus",
        "--registry",
        &registry.url,
        "--trust-root",
        root_file.to_str().unwrap(),
        "--key",
        keys.join("publisher.key").to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, stderr) = host.cli(&[
        "registry",
        "pull",
        "--registry",
        &registry.url,
        "--trust-root",
        root_file.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let modules = host.get("/v1/modules", &token);
    assert_eq!(
        modules.body[0]["versions"][0]["deprecated"], "superseded (use membership-plus instead)",
        "{modules:?}"
    );

    // Yank: existing installs keep working.
    let state = |verb: &str, key: &str| {
        souk(&[
            "registry",
            verb,
            "membership",
            "1.2.0",
            "--reason",
            "test",
            "--registry",
            &registry.url,
            "--trust-root",
            root_file.to_str().unwrap(),
            "--key",
            keys.join(key).to_str().unwrap(),
        ])
    };
    let (ok, _, stderr) = state("yank", "stranger.key");
    assert!(!ok && stderr.contains("(403)"), "{stderr}");
    let (ok, stdout, stderr) = state("yank", "publisher.key");
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, stderr) = host.cli(&[
        "registry",
        "pull",
        "--registry",
        &registry.url,
        "--trust-root",
        root_file.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let modules = host.get("/v1/modules", &token);
    assert_eq!(
        modules.body[0]["versions"][0]["yanked"], "test",
        "{modules:?}"
    );
    assert_eq!(
        host.get("/t/acme/m/membership/members/P-1", &token).status,
        200
    );

    // A yanked version is skipped for new installs, but a lockfile still installs it.
    let beta = host.tenant("beta");
    let a = host.install("beta", &beta, "membership");
    assert_eq!(a.status, 409, "{a:?}");
    assert!(a.detail().contains("yanked"), "{a:?}");
    let lock = host.get("/v1/tenants/acme/lockfile", &token);
    let a = host.request(
        "POST",
        "/v1/tenants/beta/lockfile",
        Some(&beta),
        Some(lock.bytes),
    );
    assert_eq!(a.status, 200, "{a:?}");

    // Revoke: the host refuses to run it and reports who has it installed.
    let (ok, stdout, stderr) = state("revoke", "publisher.key");
    assert!(ok, "{stdout}{stderr}");
    let (ok, stdout, stderr) = host.cli(&[
        "registry",
        "pull",
        "--registry",
        &registry.url,
        "--trust-root",
        root_file.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("REVOKED: membership 1.2.0") && stdout.contains("acme, beta"),
        "{stdout}"
    );
    let a = host.get("/t/acme/m/membership/members/P-1", &token);
    assert_eq!(a.status, 403, "{a:?}");
    assert_eq!(a.body["type"], "https://souk.dev/problems/module-revoked");

    // With the registry gone, the host still pulls from its verified cache.
    drop(registry);
    let (ok, stdout, stderr) = host.cli(&[
        "registry",
        "pull",
        "--registry",
        "http://127.0.0.1:9",
        "--offline",
        "--trust-root",
        root_file.to_str().unwrap(),
    ]);
    assert!(ok, "offline pull from the verified cache: {stdout}{stderr}");
    assert!(stdout.contains("REVOKED: membership 1.2.0"), "{stdout}");
    let (ok, _, stderr) = host.cli(&[
        "registry",
        "pull",
        "--registry",
        "http://127.0.0.1:9",
        "--offline",
        "--trust-root",
        root_file.to_str().unwrap(),
        "membership@1.2.0",
    ]);
    assert!(!ok && stderr.contains("revoked"), "{stderr}");
}

#[test]
fn first_party_modules_are_signed_by_the_embedded_registry_and_pullable() {
    let first = crate::support::Host::start(&["membership"]);
    let modules = first.get("/v1/modules", &first.operator);
    let signer = modules.body[0]["versions"][0]["signer"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        signer.starts_with("ed25519:"),
        "not listed as signed: {modules:?}"
    );
    let key = first.data_dir().join("registry/dev.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Another host pins the first host's root and pulls from its embedded registry.
    let root = first.data_dir().join("registry/store/trust/1.root.json");
    let second = crate::support::Host::start(&[]);
    let (ok, stdout, stderr) = second.cli(&[
        "registry",
        "pull",
        "--registry",
        &first.base,
        "--trust-root",
        root.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("membership 1.2.0") && stdout.contains(&signer),
        "{stdout}"
    );

    // A restart neither re-signs nor duplicates anything.
    let mut first = first;
    first.restart();
    let again = first.get("/v1/modules", &first.operator);
    assert_eq!(again.body[0]["versions"][0]["signer"], signer.as_str());
}

#[test]
fn a_host_pinned_to_the_first_root_follows_two_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys_text = keys.to_str().unwrap();
    for name in ["root1", "root2", "root3", "publisher", "second"] {
        let (ok, _, stderr) = souk(&["keys", "generate", "--out", keys_text, "--name", name]);
        assert!(ok, "{stderr}");
    }
    let key = |name: &str| keys.join(name).to_str().unwrap().to_owned();
    let store = dir.path().join("store");
    let store_text = store.to_str().unwrap();
    let grant = format!("{}=membership", key("publisher.pub"));
    let (ok, _, stderr) = souk(&[
        "registry",
        "init",
        "--dir",
        store_text,
        "--root-key",
        &key("root1.key"),
        "--grant",
        &grant,
    ]);
    assert!(ok, "{stderr}");
    let registry = RegistryProcess::start(&store, &keys.join("root1.key"));
    let pinned = store.join("trust/1.root.json");
    let package = dir.path().join("membership.souk");
    std::fs::write(&package, crate::support::package("membership", |m| m)).unwrap();
    let (ok, _, stderr) = souk(&[
        "publish",
        package.to_str().unwrap(),
        "--registry",
        &registry.url,
        "--trust-root",
        pinned.to_str().unwrap(),
        "--key",
        &key("publisher.key"),
    ]);
    assert!(ok, "{stderr}");

    // A rotation signed only by a key that is not the current root is refused.
    let (ok, _, stderr) = souk(&[
        "registry",
        "rotate",
        "--dir",
        store_text,
        "--root-key",
        &key("root2.key"),
        "--new-root-key",
        &key("root2.key"),
    ]);
    assert!(
        !ok,
        "a rotation without the old root's signature was accepted"
    );
    assert!(!stderr.is_empty());

    // v2: new root key; v3: another root key and a second publisher.
    let (ok, _, stderr) = souk(&[
        "registry",
        "rotate",
        "--dir",
        store_text,
        "--root-key",
        &key("root1.key"),
        "--new-root-key",
        &key("root2.key"),
    ]);
    assert!(ok, "{stderr}");
    let second = format!("{}=membership", key("second.pub"));
    let (ok, stdout, stderr) = souk(&[
        "registry",
        "rotate",
        "--dir",
        store_text,
        "--root-key",
        &key("root2.key"),
        "--new-root-key",
        &key("root3.key"),
        "--grant",
        &second,
    ]);
    assert!(ok && stdout.contains("version 3"), "{stdout}{stderr}");

    // The second publisher, granted only by root 3, publishes 1.2.1.
    let next = dir.path().join("membership-1.2.1.souk");
    std::fs::write(
        &next,
        crate::support::package("membership", |m| {
            m.replace("version: 1.2.0", "version: 1.2.1")
        }),
    )
    .unwrap();
    let (ok, stdout, stderr) = souk(&[
        "publish",
        next.to_str().unwrap(),
        "--registry",
        &registry.url,
        "--trust-root",
        pinned.to_str().unwrap(),
        "--key",
        &key("second.key"),
    ]);
    assert!(ok, "{stdout}{stderr}");

    // A host that pinned root 1 follows 1 -> 2 -> 3 and accepts 1.2.1.
    let host = crate::support::Host::start(&[]);
    let (ok, stdout, stderr) = host.cli(&[
        "registry",
        "pull",
        "--registry",
        &registry.url,
        "--trust-root",
        pinned.to_str().unwrap(),
        "membership",
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("membership 1.2.1"), "{stdout}");
}

// ----- publishing authenticates before it reads -----

/// A registry store with `root` and `publisher` keys, the publisher granted
/// `membership`: (temp dir, keys dir, store dir).
fn registry_store() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys_text = keys.to_str().unwrap();
    for name in ["root", "publisher"] {
        let (ok, _, stderr) = souk(&["keys", "generate", "--out", keys_text, "--name", name]);
        assert!(ok, "{stderr}");
    }
    let store = dir.path().join("store");
    let grant = format!("{}=membership", keys.join("publisher.pub").display());
    let (ok, _, stderr) = souk(&[
        "registry",
        "init",
        "--dir",
        store.to_str().unwrap(),
        "--root-key",
        keys.join("root.key").to_str().unwrap(),
        "--grant",
        &grant,
    ]);
    assert!(ok, "{stderr}");
    (dir, keys, store)
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn entry_header(entry: &souk_module_registry::SignedEntry) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(entry).unwrap())
}

fn publish_entry(
    bytes: &[u8],
    prev: Option<souk_module_registry::EntryHash>,
    key: &souk_module_registry::KeyPair,
) -> souk_module_registry::SignedEntry {
    use souk_module_registry::{ModuleAction, Package, PackageLimits, Publish, SignedEntry};
    let package = Package::read(bytes, PackageLimits::default()).unwrap();
    let m = &package.manifest;
    let action = ModuleAction::Publish(Publish {
        module: m.slug.clone(),
        version: m.version.clone(),
        digest: package.digest,
        dependencies: m
            .dependencies
            .iter()
            .map(|d| (d.slug.clone(), d.requirement.clone()))
            .collect(),
        api: m.api,
        published_at: 1_700_000_000,
    });
    SignedEntry::sign(prev, action, key).unwrap()
}

/// A publish request written by hand over a blocking socket.
struct RawPublish {
    stream: std::net::TcpStream,
}

impl RawPublish {
    fn start(url: &str, entry: Option<&str>, content_length: u64) -> Self {
        use std::io::Write;
        let addr = url.strip_prefix("http://").unwrap();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        // Guards, not timing assertions: a registry that waits for a body
        // it was never sent fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(120)))
            .unwrap();
        stream
            .set_write_timeout(Some(std::time::Duration::from_secs(120)))
            .unwrap();
        let mut head = format!(
            "POST /registry/v1/publish HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {content_length}\r\n"
        );
        if let Some(entry) = entry {
            head.push_str(&format!("souk-entry: {entry}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        RawPublish { stream }
    }

    /// Sends body bytes; false once the registry has closed the connection.
    fn send(&mut self, bytes: &[u8]) -> bool {
        use std::io::Write;
        self.stream.write_all(bytes).is_ok()
    }

    /// The status and body of the answer, or `None` when the connection
    /// closed without one.
    fn answer(mut self) -> Option<(u16, std::collections::HashMap<String, String>, String)> {
        use std::io::Read;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: std::collections::HashMap<String, String> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        let length: usize = headers.get("content-length")?.parse().ok()?;
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Some((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }
}

#[test]
fn a_flood_of_unauthenticated_32_mib_uploads_leaves_the_registry_memory_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let (_dir, keys, store) = registry_store();
    let registry = RegistryProcess::start(&store, &keys.join("root.key"));
    let pid = registry.child.id();
    let http = reqwest::blocking::Client::new();
    let snapshot = http
        .get(format!("{}/registry/v1/snapshot", registry.url))
        .send()
        .unwrap();
    assert_eq!(snapshot.status(), 200);
    let (baseline, hwm_before) = memory_kib(pid);

    // Headers no upload may get past: none, garbage, a stranger's key, the
    // publisher's key with a broken signature, and a module not granted.
    let publisher =
        souk_module_registry::KeyPair::read_private_key(&keys.join("publisher.key")).unwrap();
    let stranger = souk_module_registry::KeyPair::generate();
    let package = crate::support::package("membership", |m| m);
    let mut broken = publish_entry(&package, None, &publisher);
    broken.signature = stranger.sign(b"something else");
    let ungranted = crate::support::package("membership", |m| {
        m.replace("slug: membership", "slug: forum")
    });
    let variants: Arc<Vec<Option<String>>> = Arc::new(vec![
        None,
        Some("bm90IGFuIGVudHJ5".to_owned()),
        Some(entry_header(&publish_entry(&package, None, &stranger))),
        Some(entry_header(&broken)),
        Some(entry_header(&publish_entry(&ungranted, None, &publisher))),
    ]);

    const BODY: u64 = 32 * 1024 * 1024;
    const PARALLEL: usize = 16;
    const ROUNDS: usize = 2;
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let done = Arc::clone(&done);
        let peak = Arc::clone(&peak);
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(memory_kib(pid).0, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    let mut sent_total = 0u64;
    for round in 0..ROUNDS {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|i| {
                let variants = Arc::clone(&variants);
                let url = registry.url.clone();
                std::thread::spawn(move || {
                    let entry = variants[(round * PARALLEL + i) % variants.len()].clone();
                    let mut raw = RawPublish::start(&url, entry.as_deref(), BODY);
                    let chunk = vec![0u8; 64 * 1024];
                    let mut sent = 0u64;
                    while sent < BODY && raw.send(&chunk) {
                        sent += chunk.len() as u64;
                    }
                    (raw.answer().map(|(status, _, body)| (status, body)), sent)
                })
            })
            .collect();
        for worker in workers {
            let (answer, sent) = worker.join().unwrap();
            sent_total += sent;
            statuses.push(answer);
        }
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let (rss_after, hwm_after) = memory_kib(pid);
    let peak = peak.load(Ordering::SeqCst).max(hwm_after);
    let answered: Vec<&(u16, String)> = statuses.iter().flatten().collect();
    println!(
        "unauthenticated flood: {} uploads of 32 MiB ({PARALLEL} at a time), {} answered, \
         clients got {} MiB out in total in {elapsed:?}; registry RSS {} MiB before (peak so far {} MiB), \
         peak during {} MiB, {} MiB after; growth {} MiB",
        PARALLEL * ROUNDS,
        answered.len(),
        sent_total / (1024 * 1024),
        baseline / 1024,
        hwm_before / 1024,
        peak / 1024,
        rss_after / 1024,
        peak.saturating_sub(baseline) / 1024,
    );
    for (status, body) in &answered {
        assert!(
            [400, 401, 403].contains(status),
            "an unauthenticated upload got {status}: {body}"
        );
        assert!(
            body.contains("https://souk.dev/problems/registry/"),
            "{body}"
        );
    }
    assert!(
        peak.saturating_sub(baseline) < 150 * 1024,
        "the registry grew by {} MiB during the flood",
        peak.saturating_sub(baseline) / 1024
    );
    // Nothing was stored or left behind, and the registry still answers.
    assert_eq!(files_in(&store.join("logs")), Vec::<String>::new());
    assert_eq!(files_in(&store.join("blobs/sha256")), Vec::<String>::new());
    assert_eq!(files_in(&store.join("tmp")), Vec::<String>::new());
    let modules: Vec<String> = http
        .get(format!("{}/registry/v1/modules", registry.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(modules.is_empty());
}

#[test]
fn max_uploads_bounds_concurrent_authenticated_publishes_of_the_registry_process() {
    let (_dir, keys, store) = registry_store();
    let registry =
        RegistryProcess::start_with(&store, &keys.join("root.key"), &["--max-uploads", "1"]);
    let publisher =
        souk_module_registry::KeyPair::read_private_key(&keys.join("publisher.key")).unwrap();
    let first = crate::support::package("membership", |m| m);
    let second = crate::support::package("membership", |m| {
        m.replace("version: 1.2.0", "version: 1.2.1")
    });
    let first_entry = entry_header(&publish_entry(&first, None, &publisher));
    let second_entry = entry_header(&publish_entry(&second, None, &publisher));

    // The first publish takes the only slot and stops halfway.
    let mut held = RawPublish::start(&registry.url, Some(&first_entry), first.len() as u64);
    assert!(held.send(&first[..first.len() / 2]));
    let tmp = store.join("tmp");
    let mut waited = 0;
    while files_in(&tmp).len() != 1 {
        waited += 1;
        assert!(
            waited < 6000,
            "the held upload never reached tmp/: {:?}",
            files_in(&tmp)
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // The second is turned away before its body, with Retry-After.
    let mut raw = RawPublish::start(&registry.url, Some(&second_entry), second.len() as u64);
    assert!(raw.send(b"x"));
    let (status, headers, body) = raw.answer().expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("5"));
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(body.contains("too-many-uploads"), "{body}");
    assert!(!body.contains(store.to_str().unwrap()), "{body}");

    // The first completes and is stored.
    assert!(held.send(&first[first.len() / 2..]));
    let (status, _, body) = held.answer().expect("an answer");
    assert_eq!(status, 201, "{body}");
    // The second, signed after the old head, is now refused before its
    // body as stale: nothing half-written anywhere.
    let mut raw = RawPublish::start(&registry.url, Some(&second_entry), second.len() as u64);
    assert!(raw.send(b"x"));
    let (status, _, body) = raw.answer().expect("an answer");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("stale-head"), "{body}");
    assert_eq!(
        files_in(&store.join("logs")),
        vec!["membership.json".to_owned()]
    );
    let digest = souk_module_registry::Digest::of(&first).hex();
    assert_eq!(files_in(&store.join("blobs/sha256")), vec![digest]);
    assert_eq!(files_in(&tmp), Vec::<String>::new());
}
