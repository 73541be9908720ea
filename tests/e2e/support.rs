//! The test harness: starts the real `souk` binary on loopback with its own
//! data directory, talks to it over HTTP, and stops it on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

/// A module the tests can make available: (manifest path, component file).
pub fn module_files(name: &str) -> (PathBuf, PathBuf) {
    let root = workspace_root();
    let (manifest, crate_file) = match name {
        "membership" => ("plugins/membership/module.yaml", "souk_membership"),
        "forum" => ("plugins/forum/module.yaml", "souk_forum"),
        "membership-1.0" => (
            "tests/modules/membership-v1_0/module.yaml",
            "souk_test_membership_v1_0",
        ),
        "digital-card" => ("plugins/digital-card/module.yaml", "souk_digital_card"),
        "digital-card-1.0" => (
            "tests/modules/digital-card-v1_0/module.yaml",
            "souk_test_digital_card_v1_0",
        ),
        "membership-1.1" => (
            "tests/modules/membership-v1_1/module.yaml",
            "souk_test_membership_v1_1",
        ),
        other => {
            let dir = format!("tests/modules/{other}/module.yaml");
            let file = format!("souk_test_{}", other.replace('-', "_"));
            return (root.join(dir), wasm_dir().join(format!("{file}.wasm")));
        }
    };
    (
        root.join(manifest),
        wasm_dir().join(format!("{crate_file}.wasm")),
    )
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host has a parent")
        .to_owned()
}

/// The test plan catalogs (tests/e2e/plans), as a CLI argument.
pub fn plans_dir() -> String {
    let dir = workspace_root().join("tests/e2e/plans");
    dir.to_str().expect("utf-8 path").to_owned()
}

fn wasm_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("wasm32-wasip2/release")
}

/// Package bytes for a test module, from its manifest (optionally edited).
pub fn package(name: &str, edit_manifest: impl FnOnce(String) -> String) -> Vec<u8> {
    let (manifest, component) = module_files(name);
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let wasm = std::fs::read(&component).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/build-modules first",
            component.display()
        )
    });
    raw_package(&edit_manifest(text), &wasm)
}

/// Package bytes built without any validation, so tests can hand the host
/// packages that the `souk module pack` command would refuse to make.
pub fn raw_package(manifest: &str, component: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("module.yaml", manifest.as_bytes()),
        ("module.wasm", component),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, bytes)
            .expect("tar entry");
    }
    builder.into_inner().expect("tar")
}

/// A running host.
pub struct Host {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub base: String,
    /// The module origin (`souk: module pages on ...`), or what that line
    /// said instead of an origin.
    pub module_base: String,
    pub client: Client,
    pub operator: String,
    extra_args: Vec<String>,
    /// Whether the server's log (text format) is captured into `log`.
    capture_log: bool,
    log: Option<Mutex<mpsc::Receiver<String>>>,
}

/// An HTTP answer: status and JSON body (or `Value::Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn detail(&self) -> String {
        self.body["detail"].as_str().unwrap_or_default().to_owned()
    }
}

impl Host {
    /// Starts a host with the given modules bundled.
    pub fn start(modules: &[&str]) -> Host {
        Host::start_with(modules, &[])
    }

    /// Starts a host with extra global CLI arguments (limits).
    pub fn start_with(modules: &[&str], args: &[&str]) -> Host {
        Host::start_as(modules, args, false)
    }

    /// Starts a host whose log (text format) is captured line by line;
    /// [`Host::stop_for_log`] returns it.
    pub fn start_logged(modules: &[&str], args: &[&str]) -> Host {
        Host::start_as(modules, args, true)
    }

    fn start_as(modules: &[&str], args: &[&str], capture_log: bool) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let mods = dir.path().join("modules");
        std::fs::create_dir_all(&mods).expect("modules dir");
        for name in modules {
            std::fs::write(mods.join(format!("{name}.souk")), package(name, |m| m))
                .expect("write package");
        }
        let mut host = Host {
            dir,
            child: None,
            base: String::new(),
            module_base: String::new(),
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            operator: String::new(),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            capture_log,
            log: None,
        };
        host.spawn();
        host
    }

    /// Starts a host on the test plans with a manual clock at `clock`, and
    /// `args` besides.
    pub fn start_on_plans(modules: &[&str], clock: &str, args: &[&str]) -> Host {
        let plans = plans_dir();
        let mut all = vec!["--plans", plans.as_str(), "--manual-clock", clock];
        all.extend_from_slice(args);
        Host::start_with(modules, &all)
    }

    /// The process id of the running `souk serve`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("host is running").id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs the `souk` CLI against this host's data directory.
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_souk"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--modules-dir")
            .arg(self.dir.path().join("modules"))
            .args(args)
            .output()
            .expect("run souk");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_souk"));
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--modules-dir")
            .arg(self.dir.path().join("modules"))
            .args(if self.extra_args.iter().any(|a| a == "--max-instances") {
                &[][..]
            } else {
                &["--max-instances", "32"][..]
            })
            .args(&self.extra_args)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if self.capture_log {
            command
                .args(["--log-format", "text"])
                .env("NO_COLOR", "1")
                .stderr(Stdio::piped());
        }
        let mut child = command.spawn().expect("spawn souk");
        if let Some(stderr) = child.stderr.take() {
            let (line_tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = line_tx.send(line);
                }
            });
            self.log = Some(Mutex::new(lines));
        }
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut module_base = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(origin) = line.strip_prefix("souk: module pages on ") {
                    module_base = origin.to_owned();
                }
                if let Some(addr) = line.strip_prefix("souk: listening on ") {
                    let _ = tx.send((addr.to_owned(), module_base.clone()));
                }
            }
        });
        let (base, module_base) = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(bases) => bases,
            Err(_) => {
                let _ = child.kill();
                panic!("souk serve exited or did not start within 120 s (its stderr is above)");
            }
        };
        self.module_base = module_base;
        self.child = Some(child);
        self.base = base;
        self.operator = std::fs::read_to_string(self.data_dir().join("operator-token"))
            .expect("operator token")
            .trim()
            .to_owned();
    }

    /// Stops the host (SIGKILL: the harshest restart) and starts it again on
    /// the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Restarts with different extra global CLI arguments.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// Stops a host started with [`Host::start_logged`] and returns every
    /// line it logged.
    pub fn stop_for_log(mut self) -> Vec<String> {
        self.stop();
        let lines = self.log.take().expect("started with start_logged");
        let lines = lines.into_inner().expect("log lines");
        let mut out = Vec::new();
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
            out.push(line);
        }
        out
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let res = req.send().expect("request sent");
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = res.bytes().expect("body").to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            content_type,
            bytes,
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Answer {
        self.request("GET", path, Some(token), None)
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(
            "POST",
            path,
            Some(token),
            Some(body.to_string().into_bytes()),
        )
    }

    pub fn delete(&self, path: &str, token: &str) -> Answer {
        self.request("DELETE", path, Some(token), None)
    }

    /// Runs the maintenance step now (as the operator); its report.
    pub fn run_maintenance(&self) -> Value {
        let a = self.post("/v1/maintenance/run", &self.operator, json!({}));
        assert_eq!(a.status, 200, "{a:?}");
        a.body
    }

    /// Moves the manual clock (`--manual-clock`) forward by `seconds`.
    pub fn advance_clock(&self, seconds: i64) {
        let a = self.post(
            "/v1/clock",
            &self.operator,
            json!({ "advance_seconds": seconds }),
        );
        assert_eq!(a.status, 200, "{a:?}");
    }

    /// The tenant's invoices, newest first.
    pub fn invoices(&self, tenant: &str, token: &str) -> Vec<Value> {
        let a = self.get(&format!("/v1/tenants/{tenant}/invoices"), token);
        assert_eq!(a.status, 200, "{a:?}");
        a.body["invoices"].as_array().unwrap().clone()
    }

    /// Creates a tenant and a token for it; returns the token.
    pub fn tenant(&self, slug: &str) -> String {
        let a = self.post(
            "/v1/tenants",
            &self.operator,
            serde_json::json!({"slug": slug, "name": slug}),
        );
        assert_eq!(a.status, 201, "create tenant: {a:?}");
        let a = self.post(
            &format!("/v1/tenants/{slug}/tokens"),
            &self.operator,
            serde_json::json!({"name": "admin"}),
        );
        assert_eq!(a.status, 201, "create token: {a:?}");
        a.body["token"].as_str().expect("token").to_owned()
    }

    /// Creates a tenant and a token for it and installs `module` for it;
    /// returns the token.
    pub fn tenant_with(&self, slug: &str, module: &str) -> String {
        let token = self.tenant(slug);
        self.install_ok(slug, &token, module);
        token
    }

    pub fn install(&self, tenant: &str, token: &str, module: &str) -> Answer {
        self.post(
            &format!("/v1/tenants/{tenant}/modules"),
            token,
            serde_json::json!({"module": module}),
        )
    }

    pub fn install_ok(&self, tenant: &str, token: &str, module: &str) {
        let a = self.install(tenant, token, module);
        assert_eq!(a.status, 201, "install {module}: {a:?}");
    }

    /// Uploads a package as the operator.
    pub fn add_package(&self, bytes: Vec<u8>) -> Answer {
        let res = self
            .client
            .post(format!("{}/v1/modules", self.base))
            .bearer_auth(&self.operator)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .expect("upload");
        let status = res.status().as_u16();
        let bytes = res.bytes().expect("body").to_vec();
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            content_type: String::new(),
            bytes,
        }
    }

    /// The tenant's id (what names its files), asked of the operator API.
    pub fn tenant_id(&self, tenant: &str) -> String {
        let a = self.get(&format!("/v1/tenants/{tenant}"), &self.operator);
        a.body["id"].as_str().expect("tenant id").to_owned()
    }

    /// Where the tenant's database file is.
    pub fn tenant_db_path(&self, tenant: &str) -> PathBuf {
        let id = self.tenant_id(tenant);
        self.data_dir().join("tenants").join(format!("{id}.sqlite"))
    }

    /// The tenant's database file, opened read-only.
    pub fn tenant_db(&self, tenant: &str) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.tenant_db_path(tenant),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open tenant db")
    }

    /// Table names in the tenant database (modules' tables; the host's own
    /// `_souk_*` usage tables left out).
    pub fn tenant_tables(&self, tenant: &str) -> Vec<String> {
        let db = self.tenant_db(tenant);
        let mut stmt = db
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE '\\_souk\\_%' ESCAPE '\\' ORDER BY name",
            )
            .expect("prepare");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}
