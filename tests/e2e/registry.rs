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
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_souk"))
            .args(["registry", "serve", "--listen", "127.0.0.1:0", "--dir"])
            .arg(store)
            .arg("--snapshot-key")
            .arg(snapshot_key)
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
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let keys_text = keys.to_str().unwrap();
    for name in ["root", "publisher", "stranger"] {
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
    let core = crate::support::raw_package(&manifest.replace("1.1.0", "1.1.1"), b"\0asm\x01\0\0\0");
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
        stdout.contains("membership 1.1.0") && stdout.contains("signed by ed25519:"),
        "{stdout}"
    );
    let token = host.tenant("acme");
    host.install_ok("acme", &token, "membership");
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
        "1.1.0",
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
            "1.1.0",
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
        stdout.contains("REVOKED: membership 1.1.0") && stdout.contains("acme, beta"),
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
    assert!(stdout.contains("REVOKED: membership 1.1.0"), "{stdout}");
    let (ok, _, stderr) = host.cli(&[
        "registry",
        "pull",
        "--registry",
        "http://127.0.0.1:9",
        "--offline",
        "--trust-root",
        root_file.to_str().unwrap(),
        "membership@1.1.0",
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
        stdout.contains("membership 1.1.0") && stdout.contains(&signer),
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

    // The second publisher, granted only by root 3, publishes 1.1.1.
    let next = dir.path().join("membership-1.1.1.souk");
    std::fs::write(
        &next,
        crate::support::package("membership", |m| {
            m.replace("version: 1.1.0", "version: 1.1.1")
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

    // A host that pinned root 1 follows 1 -> 2 -> 3 and accepts 1.1.1.
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
    assert!(stdout.contains("membership 1.1.1"), "{stdout}");
}
