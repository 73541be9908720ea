//! The hostile-SQL corpus (issue 8, items 1–5): statements an attacker's
//! module sends through the `sql-console` test module to the real host,
//! each followed by a look at what is really in the databases and on disk.
//!
//! Two tenants share one server: `mallory` (the attacker, whose token sends
//! every statement) and `victoria` (the victim, with members, member notes
//! and a note of her own); both have `membership` and `sql-console`.
//! After every statement the oracle checks, with its own read-only
//! connections:
//!
//! - `control.sqlite`: every table's rows and the schema are unchanged (no
//!   token minted, no row added anywhere);
//! - the victim's database: schema, header pragmas and every row unchanged;
//! - the attacker's database: schema and header pragmas unchanged, and every
//!   table but sql-console's own `notes` unchanged (membership's rows, the
//!   host's `_souk_usage_*` tables);
//! - the host's directory: no new file (a database's `-wal`, `-shm` or
//!   `-journal` aside) and none removed; no probe file in the server's
//!   working directory or `/tmp`;
//! - the answer, and whatever the statement wrote into the attacker's own
//!   table, holds no marker of data out of the attacker's scope: the data
//!   directory's path, the victim's tenant id, the victim's rows, names and
//!   schema text from `sqlite_master`, pragma output (unless the statement
//!   itself carried that text);
//! - `/healthz` answers; when it does not, the failure is recorded and the
//!   server restarted on the same data, so the rest of the corpus still runs.
//!
//! On top of that each statement has an [`Expect`]ation about its answer.
//! Each test collects every statement that broke a rule and fails with the
//! list, each line naming the statement.
//!
//! The last tests generate statements from a seeded generator (set
//! `HOSTILE_SQL_SEED` to replay another seed) and check the same oracle, and
//! check that the oracle itself notices a change, a leak and a new file.
//!
//! Every test here runs in one server (see [`session`]): the first test to
//! run starts it, tests take turns, and the last one out stops it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::Host;

/// The attacker tenant: every corpus statement is sent with its token.
const ATTACKER: &str = "mallory";
/// The victim tenant.
const VICTIM: &str = "victoria";
/// sql-console's own table (physical name): the attacker may change it.
const OWN_TABLE: &str = "sql_console__notes";
/// The victim's members: `(number, name, email, notes)`.
const VICTIM_MEMBERS: [(&str, &str, &str, &str); 2] = [
    (
        "V-1",
        "Vesna Q7X-Secret",
        "vesna.q7x@victim.example",
        "victim-member-note-H2P",
    ),
    (
        "V-2",
        "Viktor Z9K-Secret",
        "viktor.z9k@victim.example",
        "victim-member-note-J5R",
    ),
];
/// A row in the victim's own sql-console `notes`.
const VICTIM_NOTE: &str = "victim-console-note-W4J";
/// Text that appears only in out-of-scope places of a tenant database
/// (schema text, a column of an unexported table, pragma output). Names
/// from the attacker's `sqlite_master` are added at start.
const OUT_OF_SCOPE_TEXT: [&str; 6] = [
    "CREATE TABLE",
    "CREATE INDEX",
    "next_value",
    "sqlite_schema",
    "sqlite_temp_schema",
    "THREADSAFE",
];
/// Statement error kinds that mean "refused before it ran".
const REFUSAL_KINDS: [&str; 3] = ["forbidden", "syntax", "ddl-outside-migration"];
/// How long the test waits for the answer to one statement.
const CALL_PATIENCE: Duration = Duration::from_secs(15);
/// How much the server's peak RSS may grow during one bounded statement.
const MAX_PEAK_GROWTH_MIB: u64 = 160;

// ---------------------------------------------------------------------------
// Cases and expectations

/// Which sql-console route a statement goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Query,
    Execute,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Query => "query",
            Route::Execute => "execute",
        }
    }
}

/// What the answer to a statement must be (the oracle's checks apply to
/// every statement on top of this).
#[derive(Debug, Clone)]
enum Expect {
    /// Refused before it ran: 400 with error kind `forbidden`, `syntax` or
    /// `ddl-outside-migration` (never `other`: that means SQLite ran it).
    Refused,
    /// Does not succeed: 400, any error kind (e.g. "no such table" for a
    /// name that resolves inside the module's namespace).
    Fails,
    /// A resource limit stops it: 400 or 504 (or NULL in place of the
    /// oversized value, as printf() answers), and the server's peak RSS
    /// grows by at most [`MAX_PEAK_GROWTH_MIB`].
    Bounded,
    /// Anything clean (200 or 400): only the oracle decides.
    Harmless,
    /// 200, with exactly these rows when given (a control: the corpus is
    /// not passing because everything is refused).
    Succeeds(Option<Value>),
}

/// One statement of the corpus.
#[derive(Debug, Clone)]
struct Case {
    sql: String,
    params: Value,
    route: Route,
    expect: Expect,
    /// Shown instead of the SQL (for huge statements).
    label: Option<String>,
    /// A token the statement tries to mint for the victim: it must not work.
    minted: Option<String>,
    /// Send the statement through `/batch` between two inserts of this
    /// marker into the attacker's own table, in a call that then fails: the
    /// host rolls the call back, so neither insert may survive.
    rollback_probe: Option<String>,
}

impl Case {
    /// A statement sent to `/query` when it reads like a query, else to
    /// `/execute`.
    fn new(sql: impl Into<String>, expect: Expect) -> Case {
        let sql = sql.into();
        let head = sql.trim_start().to_ascii_uppercase();
        let route = if head.starts_with("SELECT")
            || head.starts_with("VALUES")
            || (head.starts_with("WITH")
                && !["UPDATE ", "DELETE ", "INSERT ", "REPLACE "]
                    .iter()
                    .any(|w| head.contains(w)))
        {
            Route::Query
        } else {
            Route::Execute
        };
        Case {
            sql,
            params: json!([]),
            route,
            expect,
            label: None,
            minted: None,
            rollback_probe: None,
        }
    }

    fn route(mut self, route: Route) -> Case {
        self.route = route;
        self
    }

    fn params(mut self, params: Value) -> Case {
        self.params = params;
        self
    }

    fn label(mut self, label: impl Into<String>) -> Case {
        self.label = Some(label.into());
        self
    }

    fn minting(mut self, token: &str) -> Case {
        self.minted = Some(token.to_owned());
        self
    }

    fn rollback_probe(mut self, marker: impl Into<String>) -> Case {
        self.rollback_probe = Some(marker.into());
        self
    }

    /// The same statement through both routes.
    fn both(self) -> [Case; 2] {
        let other = match self.route {
            Route::Query => Route::Execute,
            Route::Execute => Route::Query,
        };
        let second = self.clone().route(other);
        [self, second]
    }

    /// How failures name the statement.
    fn name(&self) -> String {
        if let Some(label) = &self.label {
            return format!("{label} ({} bytes)", self.sql.len());
        }
        shorten(&self.sql, 400)
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return format!("{text:?}");
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &text[..end], text.len())
}

// ---------------------------------------------------------------------------
// The lab: one server, two tenants, the oracle

/// A tenant of the lab.
struct Party {
    slug: &'static str,
    token: String,
    id: String,
}

/// What the oracle compares between statements.
#[derive(Clone, PartialEq)]
struct Snapshot {
    control: Tables,
    victim: Tables,
    /// Everything in the attacker's database but the rows of [`OWN_TABLE`].
    attacker: Tables,
    /// The rows of [`OWN_TABLE`] in the attacker's database.
    own_rows: BTreeSet<String>,
    /// Files under the host's directory, relative to it.
    files: BTreeSet<PathBuf>,
}

/// Table (or `sqlite_master`, or `pragma <name>`) -> sorted rows as text.
type Tables = BTreeMap<String, Vec<String>>;

/// An answer from the host.
struct Reply {
    status: u16,
    text: String,
    json: Value,
}

/// The server, the tenants and the oracle's last view of the world.
struct Lab {
    host: Host,
    attacker: Party,
    victim: Party,
    markers: Vec<String>,
    baseline: Snapshot,
    /// For `/healthz` and minted tokens.
    health: reqwest::blocking::Client,
    /// For corpus statements: no answer within [`CALL_PATIENCE`] counts as
    /// none (the host's own call budget is far shorter).
    calls: reqwest::blocking::Client,
    /// Makes every file and token name in the corpus unique.
    counter: usize,
}

impl Lab {
    fn start() -> Lab {
        let host = Host::start(&["membership", "sql-console"]);
        let attacker_token = host.tenant(ATTACKER);
        let victim_token = host.tenant(VICTIM);
        for (slug, token) in [(ATTACKER, &attacker_token), (VICTIM, &victim_token)] {
            host.install_ok(slug, token, "membership");
            host.install_ok(slug, token, "sql-console");
        }
        for (number, name, email, notes) in VICTIM_MEMBERS {
            let a = host.post(
                &format!("/t/{VICTIM}/m/membership/members"),
                &victim_token,
                json!({"number": number, "name": name, "email": email}),
            );
            assert_eq!(a.status, 201, "victim member: {a:?}");
            let a = host.request(
                "PUT",
                &format!("/t/{VICTIM}/m/membership/members/{number}/notes"),
                Some(&victim_token),
                Some(json!({ "notes": notes }).to_string().into_bytes()),
            );
            assert!(a.status < 300, "victim member notes: {a:?}");
        }
        let a = host.post(
            &format!("/t/{VICTIM}/m/sql-console/execute"),
            &victim_token,
            json!({"sql": "INSERT INTO notes (body) VALUES (?1)", "params": [VICTIM_NOTE]}),
        );
        assert_eq!(a.status, 200, "victim note: {a:?}");
        let a = host.post(
            &format!("/t/{ATTACKER}/m/membership/members"),
            &attacker_token,
            json!({"number": "A-1", "name": "Mallory Own", "email": "m@attacker.example"}),
        );
        assert_eq!(a.status, 201, "attacker member: {a:?}");
        let a = host.post(
            &format!("/t/{ATTACKER}/m/sql-console/execute"),
            &attacker_token,
            json!({"sql": "INSERT INTO notes (body) VALUES ('mallory was here')"}),
        );
        assert_eq!(a.status, 200, "attacker note: {a:?}");
        let attacker = Party {
            slug: ATTACKER,
            token: attacker_token,
            id: host.tenant_id(ATTACKER),
        };
        let victim = Party {
            slug: VICTIM,
            token: victim_token,
            id: host.tenant_id(VICTIM),
        };
        let mut lab = Lab {
            health: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            calls: reqwest::blocking::Client::builder()
                .timeout(CALL_PATIENCE)
                .build()
                .expect("client"),
            markers: Vec::new(),
            baseline: Snapshot {
                control: Tables::new(),
                victim: Tables::new(),
                attacker: Tables::new(),
                own_rows: BTreeSet::new(),
                files: BTreeSet::new(),
            },
            host,
            attacker,
            victim,
            counter: 0,
        };
        lab.markers = lab.leak_markers();
        lab.baseline = lab.snapshot();
        lab
    }

    // -- paths the corpus names --------------------------------------------

    fn data_dir(&self) -> PathBuf {
        self.host.data_dir()
    }

    fn control_path(&self) -> String {
        self.data_dir().join("control.sqlite").display().to_string()
    }

    fn tenant_path(&self, party: &Party) -> PathBuf {
        self.data_dir()
            .join("tenants")
            .join(format!("{}.sqlite", party.id))
    }

    fn victim_path(&self) -> String {
        self.tenant_path(&self.victim).display().to_string()
    }

    /// A fresh name, unique in this run.
    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    /// A fresh file path inside the data directory.
    fn planted_path(&mut self) -> String {
        let name = self.fresh("planted");
        self.data_dir()
            .join(format!("{name}.sqlite"))
            .display()
            .to_string()
    }

    /// A fresh file path beside the data directory (inside the host's
    /// directory, outside `data/`).
    fn outside_path(&mut self) -> String {
        let name = self.fresh("outside");
        self.host
            .dir
            .path()
            .join(format!("{name}.sqlite"))
            .display()
            .to_string()
    }

    /// A relative file name: it would land in the server's working directory.
    fn relative_probe(&self) -> String {
        format!("hostile-sql-probe-{}.sqlite", std::process::id())
    }

    /// A file name in `/tmp`, outside everything the test owns.
    fn tmp_probe(&self) -> String {
        format!("/tmp/hostile-sql-probe-{}.sqlite", std::process::id())
    }

    /// Files a statement must never create outside the host's directory.
    fn probe_files(&self) -> Vec<PathBuf> {
        let cwd = std::env::current_dir().unwrap_or_default();
        vec![
            cwd.join(self.relative_probe()),
            PathBuf::from(self.tmp_probe()),
        ]
    }

    /// A fresh tenant token and the SQL that inserts it for the victim into
    /// the control database attached as `c`.
    fn mint(&mut self) -> (String, String) {
        let id = self.fresh("minted");
        let token = format!("souk_tk_{id}x{}", std::process::id());
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        let sql = format!(
            "INSERT INTO c.tenant_tokens (id, tenant_id, name, token_hash, created_at) \
             VALUES ('{id}', '{}', 'minted', '{hash}', '2026-01-01T00:00:00Z')",
            self.victim.id
        );
        (token, sql)
    }

    /// Puts the attacker's own rows back as the controls expect them
    /// (earlier statements may have changed them; the oracle reported that
    /// then) and takes a fresh baseline.
    ///
    /// # Errors
    /// The call that failed, when the attacker's tenant does not work.
    fn reset_fixtures(&mut self) -> Result<(), String> {
        let members = format!("/t/{ATTACKER}/m/membership/members");
        let list = self.host.get(&members, &self.attacker.token);
        if list.status != 200 {
            return Err(format!("GET {members}: {list:?}"));
        }
        for member in list.body["members"].as_array().cloned().unwrap_or_default() {
            if let Some(number) = member["number"].as_str() {
                self.host
                    .delete(&format!("{members}/{number}"), &self.attacker.token);
            }
        }
        let a = self.host.post(
            &members,
            &self.attacker.token,
            json!({"number": "A-1", "name": "Mallory Own", "email": "m@attacker.example"}),
        );
        if a.status != 201 {
            return Err(format!("POST {members}: {a:?}"));
        }
        for sql in [
            "DELETE FROM notes",
            "INSERT INTO notes (id, body) VALUES (1, 'mallory was here')",
        ] {
            let a = self.host.post(
                &format!("/t/{ATTACKER}/m/sql-console/execute"),
                &self.attacker.token,
                json!({ "sql": sql }),
            );
            if a.status != 200 {
                return Err(format!("{sql}: {a:?}"));
            }
        }
        self.await_events_fanned_out();
        self.baseline = self.snapshot();
        Ok(())
    }

    /// Restarts the server on the same data (clears every pool and cache).
    fn restart(&mut self) {
        self.host.restart();
    }

    /// Whether `party`'s calls still work: more in-scope reads than the
    /// tenant pool has connections, so each pooled connection serves one.
    fn tenant_works(&self, party: &Party) -> Result<(), String> {
        for _ in 0..6 {
            let reply = self.post(
                party,
                "query",
                &json!({"sql": "SELECT count(*) FROM notes"}),
            )?;
            if reply.status != 200 {
                return Err(format!("{} {}", reply.status, shorten(&reply.text, 200)));
            }
        }
        Ok(())
    }

    // -- talking to the host -------------------------------------------------

    fn post(&self, party: &Party, route: &str, body: &Value) -> Result<Reply, String> {
        let res = self
            .calls
            .post(format!(
                "{}/t/{}/m/sql-console/{route}",
                self.host.base, party.slug
            ))
            .bearer_auth(&party.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .map_err(|e| format!("no answer: {e}"))?;
        let status = res.status().as_u16();
        let bytes = res.bytes().map_err(|e| format!("no body: {e}"))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, text, json })
    }

    fn healthy(&self) -> bool {
        self.health
            .get(format!("{}/healthz", self.host.base))
            .send()
            .map(|r| r.status().as_u16() == 200)
            .unwrap_or(false)
    }

    /// A `/proc/<pid>/status` field in KiB.
    fn status_kib(&self, field: &str) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.host.pid())).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Resets the server's peak RSS to its current RSS (Linux `clear_refs`).
    fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.host.pid()), "5").is_ok()
    }

    // -- the oracle ------------------------------------------------------------

    /// Markers of data the attacker may never see.
    fn leak_markers(&self) -> Vec<String> {
        let mut markers: Vec<String> = vec![
            self.host.dir.path().display().to_string(),
            self.victim.id.clone(),
            VICTIM_NOTE.to_owned(),
        ];
        for (_, name, email, notes) in VICTIM_MEMBERS {
            markers.extend([name.to_owned(), email.to_owned(), notes.to_owned()]);
        }
        markers.extend(OUT_OF_SCOPE_TEXT.iter().map(|s| (*s).to_owned()));
        // Names only `sqlite_master` (or a pragma) tells: everything but
        // the two tables the attacker's module may name.
        let db = open_read_only(&self.tenant_path(&self.attacker)).expect("attacker db");
        let names = column(&db, "SELECT name FROM sqlite_master");
        markers.extend(
            names
                .into_iter()
                .filter(|n| n != "membership__members" && n != OWN_TABLE),
        );
        markers
    }

    /// The markers in `text` that neither `statement` carried itself nor
    /// the attacker's own table held before it (what a module stored
    /// earlier is its own to read; storing it was reported then).
    fn leaks(&self, statement: &str, text: &str) -> Vec<String> {
        let statement = statement.to_lowercase();
        let text = text.to_lowercase();
        let own = self
            .baseline
            .own_rows
            .iter()
            .map(|r| r.to_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        self.markers
            .iter()
            .filter(|m| {
                let m = m.to_lowercase();
                text.contains(&m) && !statement.contains(&m) && !own.contains(&m)
            })
            .cloned()
            .collect()
    }

    /// Waits (a bounded while) until the host has fanned out the events
    /// the fixtures' Membership calls emitted (Membership 1.2.0 emits
    /// `member_created` / `member_left`): the host's event worker marks
    /// them in `_souk_events` after the calls, which a baseline taken
    /// earlier would report as a change the next statement made.
    fn await_events_fanned_out(&self) {
        let path = self.tenant_path(&self.attacker);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            let pending = open_read_only(&path).ok().and_then(|db| {
                db.query_row(
                    "SELECT count(*) FROM _souk_events WHERE fanned_out = 0",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .ok()
            });
            if pending == Some(0) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn snapshot(&self) -> Snapshot {
        let attacker_path = self.tenant_path(&self.attacker);
        let mut attacker = read_tables(&attacker_path, &[OWN_TABLE]);
        attacker.remove(OWN_TABLE);
        let own_rows = match open_read_only(&attacker_path) {
            Ok(db) => rows(&db, &format!("SELECT * FROM \"{OWN_TABLE}\""))
                .into_iter()
                .collect(),
            Err(e) => BTreeSet::from([format!("<cannot open: {e}>")]),
        };
        Snapshot {
            control: read_tables(&self.data_dir().join("control.sqlite"), &[]),
            victim: read_tables(&self.tenant_path(&self.victim), &[]),
            attacker,
            own_rows,
            files: list_files(self.host.dir.path()),
        }
    }

    /// What changed from `self.baseline` to `now` that may not change.
    fn differences(&self, now: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (what, before, after) in [
            ("control.sqlite", &self.baseline.control, &now.control),
            ("the victim's database", &self.baseline.victim, &now.victim),
            (
                "the attacker's database (outside sql-console's own table)",
                &self.baseline.attacker,
                &now.attacker,
            ),
        ] {
            if let Some(diff) = diff_tables(before, after) {
                out.push(format!("{what} changed: {diff}"));
            }
        }
        let is_sidecar = |path: &Path, files: &BTreeSet<PathBuf>| {
            let text = path.display().to_string();
            ["-wal", "-shm", "-journal"].iter().any(|suffix| {
                text.strip_suffix(suffix)
                    .is_some_and(|base| files.contains(Path::new(base)))
            })
        };
        let added: Vec<String> = now
            .files
            .difference(&self.baseline.files)
            .filter(|p| !is_sidecar(p, &self.baseline.files))
            .map(|p| p.display().to_string())
            .collect();
        if !added.is_empty() {
            out.push(format!("new files under the host's directory: {added:?}"));
        }
        let removed: Vec<String> = self
            .baseline
            .files
            .difference(&now.files)
            .filter(|p| !is_sidecar(p, &now.files) && !is_sidecar(p, &self.baseline.files))
            .map(|p| p.display().to_string())
            .collect();
        if !removed.is_empty() {
            out.push(format!(
                "files removed from the host's directory: {removed:?}"
            ));
        }
        out
    }

    /// Sends `case` as the attacker, then checks its answer and the oracle.
    /// Returns what went wrong, each line naming the statement.
    fn run(&mut self, class: &str, case: &Case) -> Vec<String> {
        let name = format!(
            "[{class}] {} via /{}",
            case.name(),
            if case.rollback_probe.is_some() {
                "batch"
            } else {
                case.route.path()
            }
        );
        let mut failures = Vec::new();
        let bounded = matches!(case.expect, Expect::Bounded);
        let peak_reset = bounded && self.reset_peak();
        let rss_before = if bounded {
            self.status_kib("VmRSS:")
        } else {
            None
        };
        let started = Instant::now();
        let reply = match &case.rollback_probe {
            None => self.post(
                &self.attacker,
                case.route.path(),
                &json!({"sql": case.sql, "params": case.params}),
            ),
            Some(marker) => self.post(
                &self.attacker,
                "batch",
                &json!({
                    "statements": [
                        {"sql": "INSERT INTO notes (body) VALUES (?1)", "params": [marker]},
                        {"sql": case.sql, "params": case.params, "query": case.route == Route::Query},
                        {"sql": "INSERT INTO notes (body) VALUES (?1)", "params": [format!("{marker}-after")]},
                    ],
                    "fail": true,
                }),
            ),
        };
        let elapsed = started.elapsed();
        match &reply {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok(reply) => {
                let judged = match &case.rollback_probe {
                    None => Some((reply.status, reply.json.clone())),
                    Some(_) => reply.json["results"].get(1).map(|result| {
                        let status = if result.get("error_kind").is_some() {
                            400
                        } else {
                            200
                        };
                        (status, result.clone())
                    }),
                };
                match judged {
                    Some((status, body)) => {
                        if let Some(problem) = judge(&case.expect, status, &body) {
                            failures.push(format!("{name}: {problem}"));
                        }
                    }
                    None => failures.push(format!(
                        "{name}: /batch answered {} without results: {}",
                        reply.status,
                        shorten(&reply.text, 300)
                    )),
                }
                let leaks = self.leaks(&case.sql, &reply.text);
                if !leaks.is_empty() {
                    failures.push(format!(
                        "{name}: the answer shows data out of scope {leaks:?}: {}",
                        shorten(&reply.text, 300)
                    ));
                }
            }
        }
        if bounded {
            let peak = self.status_kib("VmHWM:");
            let growth_mib = match (peak, rss_before) {
                (Some(peak), Some(before)) if peak_reset => peak.saturating_sub(before) / 1024,
                _ => 0,
            };
            eprintln!(
                "hostile_sql [{class}] {}: {} ms, server peak RSS +{growth_mib} MiB{}",
                case.name(),
                elapsed.as_millis(),
                if peak_reset {
                    ""
                } else {
                    " (peak not measured)"
                }
            );
            if growth_mib > MAX_PEAK_GROWTH_MIB {
                failures.push(format!(
                    "{name}: the server's peak RSS grew by {growth_mib} MiB (bound {MAX_PEAK_GROWTH_MIB} MiB)"
                ));
            }
        }
        if !self.healthy() {
            failures.push(format!(
                "{name}: the host stopped answering /healthz; restarted it on the same data"
            ));
            self.restart();
        } else if reply.as_ref().map_or(true, |r| r.status >= 500) {
            // A failed call may leave a pooled connection broken (e.g. a
            // transaction the host can no longer end): both tenants' calls
            // must still work.
            let mut broken = false;
            for party in [&self.attacker, &self.victim] {
                if let Err(e) = self.tenant_works(party) {
                    failures.push(format!(
                        "{name}: afterwards {}'s own calls fail ({e}); restarted the server",
                        party.slug
                    ));
                    broken = true;
                }
            }
            if broken {
                self.restart();
            }
        }
        let now = self.snapshot();
        for difference in self.differences(&now) {
            failures.push(format!("{name}: {difference}"));
        }
        let new_own: Vec<&String> = now.own_rows.difference(&self.baseline.own_rows).collect();
        let written = new_own
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let leaks = self.leaks(&case.sql, &written);
        if !leaks.is_empty() {
            failures.push(format!(
                "{name}: wrote data out of scope into its own table {leaks:?}: {}",
                shorten(&written, 300)
            ));
        }
        if let Some(marker) = &case.rollback_probe
            && let Some(row) = now.own_rows.iter().find(|r| r.contains(marker.as_str()))
        {
            failures.push(format!(
                "{name}: a write of a call the host rolled back survived: {row}"
            ));
        }
        if let Some(token) = &case.minted {
            let res = self
                .health
                .get(format!("{}/v1/tenants/{VICTIM}", self.host.base))
                .bearer_auth(token)
                .send();
            if let Ok(res) = res
                && res.status().as_u16() != 401
            {
                failures.push(format!(
                    "{name}: the token it minted for the victim answers {} instead of 401",
                    res.status()
                ));
            }
        }
        for probe in self.probe_files() {
            if probe.exists() {
                failures.push(format!("{name}: created {}", probe.display()));
                let _ = std::fs::remove_file(&probe);
            }
        }
        self.baseline = now;
        failures
    }
}

/// Whether an answer meets the expectation; `Some(why not)` when it does not.
fn judge(expect: &Expect, status: u16, body: &Value) -> Option<String> {
    let kind = body["error_kind"].as_str().unwrap_or("");
    let shown = || shorten(&body.to_string(), 300);
    match expect {
        Expect::Refused => (status != 400 || !REFUSAL_KINDS.contains(&kind)).then(|| {
            format!(
                "expected a refusal before execution (400, error_kind forbidden, syntax or \
                 ddl-outside-migration), got {status} {}",
                shown()
            )
        }),
        Expect::Fails => (status != 400).then(|| {
            format!(
                "expected the statement to fail (400), got {status} {}",
                shown()
            )
        }),
        Expect::Bounded => {
            // printf() and format() answer NULL when their result would pass
            // SQLITE_LIMIT_LENGTH: the limit took effect without an error.
            let nulled = status == 200
                && body["rows"].as_array().is_some_and(|rows| {
                    !rows.is_empty()
                        && rows.iter().all(|row| {
                            row.as_array()
                                .is_some_and(|values| values.iter().all(Value::is_null))
                        })
                });
            (!nulled && (!matches!(status, 400 | 504) || !body.is_object())).then(|| {
                format!(
                    "expected a clean refusal by a limit (400 or 504 with a JSON body, \
                     or NULL in place of an oversized value), got {status} {}",
                    shown()
                )
            })
        }
        Expect::Harmless => (!matches!(status, 200 | 400)).then(|| {
            format!(
                "expected a clean answer (200 or 400), got {status} {}",
                shown()
            )
        }),
        Expect::Succeeds(rows) => {
            if status != 200 {
                Some(format!(
                    "expected 200 (an allowed statement), got {status} {}",
                    shown()
                ))
            } else if let Some(rows) = rows
                && &body["rows"] != rows
            {
                Some(format!("expected rows {rows}, got {}", shown()))
            } else {
                None
            }
        }
    }
}

fn open_read_only(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.busy_timeout(Duration::from_secs(5))?;
    Ok(db)
}

/// Every row of `sql`, each as text, sorted; an error as one row.
fn rows(db: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let result = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt = db.prepare(sql)?;
        let width = stmt.column_count();
        let mut out = Vec::new();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let values: Vec<rusqlite::types::Value> =
                (0..width).map(|i| row.get(i)).collect::<Result<_, _>>()?;
            out.push(format!("{values:?}"));
        }
        out.sort();
        Ok(out)
    })();
    result.unwrap_or_else(|e| vec![format!("<error: {e}>")])
}

/// The first column of every row of `sql`, as text.
fn column(db: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let result = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt = db.prepare(sql)?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        names.collect()
    })();
    result.unwrap_or_default()
}

/// A database's schema, header pragmas and every table's rows, in one read
/// transaction; `skip_rows` tables appear without rows.
fn read_tables(path: &Path, skip_rows: &[&str]) -> Tables {
    let mut out = Tables::new();
    let db = match open_read_only(path) {
        Ok(db) => db,
        Err(e) => {
            out.insert("<open>".into(), vec![e.to_string()]);
            return out;
        }
    };
    let _ = db.execute_batch("BEGIN");
    out.insert(
        "sqlite_master".into(),
        rows(
            &db,
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",
        ),
    );
    for pragma in [
        "user_version",
        "application_id",
        "journal_mode",
        "auto_vacuum",
    ] {
        out.insert(
            format!("pragma {pragma}"),
            rows(&db, &format!("PRAGMA {pragma}")),
        );
    }
    for table in column(&db, "SELECT name FROM sqlite_master WHERE type = 'table'") {
        if skip_rows.contains(&table.as_str()) {
            continue;
        }
        let sql = format!("SELECT * FROM \"{}\"", table.replace('"', "\"\""));
        out.insert(table, rows(&db, &sql));
    }
    let _ = db.execute_batch("COMMIT");
    out
}

/// `None` when equal, else which entries differ and how (shortened).
fn diff_tables(before: &Tables, after: &Tables) -> Option<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut parts = Vec::new();
    for key in keys {
        let (b, a) = (before.get(key), after.get(key));
        if b == a {
            continue;
        }
        let b: BTreeSet<&String> = b.into_iter().flatten().collect();
        let a: BTreeSet<&String> = a.into_iter().flatten().collect();
        let gone: Vec<&&String> = b.difference(&a).take(2).collect();
        let new: Vec<&&String> = a.difference(&b).take(2).collect();
        parts.push(format!(
            "{key} (gone: {}; new: {})",
            shorten(&format!("{gone:?}"), 200),
            shorten(&format!("{new:?}"), 200)
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Every file under `root`, relative to it.
fn list_files(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                out.insert(relative.to_owned());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// One server for the whole file

static LAB: Mutex<Option<Lab>> = Mutex::new(None);
/// Tests of this file waiting for the lab.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Exclusive use of the shared lab; the last test out stops the server.
struct Session(MutexGuard<'static, Option<Lab>>);

/// Waits for the lab (starting it if no test holds it).
fn session() -> Session {
    WAITING.fetch_add(1, Ordering::SeqCst);
    let mut guard = LAB.lock().unwrap_or_else(PoisonError::into_inner);
    WAITING.fetch_sub(1, Ordering::SeqCst);
    if guard.is_none() {
        *guard = Some(Lab::start());
    }
    Session(guard)
}

impl Session {
    fn lab(&mut self) -> &mut Lab {
        self.0.as_mut().expect("the lab was started")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // No other test of this file is waiting: stop the server now rather
        // than leave it running after the test process exits.
        if WAITING.load(Ordering::SeqCst) == 0 {
            self.0.take();
        }
    }
}

/// Runs the corpus `build` makes and fails with every statement that broke
/// a rule.
fn run_corpus(class: &str, build: impl FnOnce(&mut Lab) -> Vec<Case>) {
    let mut session = session();
    let lab = session.lab();
    let mut failures: Vec<String> = fresh_start(lab, class).into_iter().collect();
    let cases = build(lab);
    let started = Instant::now();
    for case in &cases {
        failures.extend(lab.run(class, case));
    }
    eprintln!(
        "hostile_sql [{class}]: {} statements in {} ms",
        cases.len(),
        started.elapsed().as_millis()
    );
    drop(session);
    report(class, cases.len(), &failures);
}

/// Resets the fixtures (restarting the server when an earlier statement
/// left the attacker's tenant broken, which is then reported).
fn fresh_start(lab: &mut Lab, class: &str) -> Option<String> {
    let e = lab.reset_fixtures().err()?;
    lab.restart();
    if let Err(again) = lab.reset_fixtures() {
        panic!("the attacker's tenant does not work even after a restart: {again}");
    }
    Some(format!(
        "[{class}] before the corpus ran, the attacker's tenant did not work ({}): an \
         earlier statement broke it; restarted the server",
        shorten(&e, 300)
    ))
}

fn report(class: &str, count: usize, failures: &[String]) {
    if failures.is_empty() {
        return;
    }
    let mut text = String::new();
    for failure in failures {
        let _ = writeln!(text, "  - {failure}");
    }
    panic!(
        "{} failure(s) over {count} statements of the {class} corpus; the first: {}\nall:\n{text}",
        failures.len(),
        failures[0]
    );
}

// ---------------------------------------------------------------------------
// The corpus

/// `CAST(1 AS x('<payload>'))`: sqlparser keeps a quoted type modifier as
/// text and prints it without its quotes, so `payload` reaches SQLite as
/// SQL, past the rewriter.
fn smuggle(payload: &str) -> String {
    format!("CAST(1 AS x('{}'))", payload.replace('\'', "''"))
}

/// Statements that carry a smuggled payload: `(prefix, closers, suffix)`:
/// the printed text is `prefix CAST(1 AS x(1<closers>; <evil> --)) suffix`,
/// `closers` ending the statement the carrier opened.
const CARRIERS: [(&str, &str, &str); 10] = [
    ("SELECT ", "))", ""),
    ("INSERT INTO notes (body) VALUES (", ")))", ")"),
    ("UPDATE notes SET body = ", ")) WHERE 0", " WHERE 0"),
    ("DELETE FROM notes WHERE id = ", ")) AND 0", ""),
    ("SELECT * FROM notes WHERE id IN (SELECT ", ")))", ")"),
    (
        "WITH t AS (SELECT ",
        ")) AS a) SELECT a FROM t",
        " AS a) SELECT a FROM t",
    ),
    ("SELECT body FROM notes ORDER BY ", "))", ""),
    (
        "INSERT INTO notes (body) VALUES ('carrier') RETURNING ",
        "))",
        "",
    ),
    (
        "SELECT row_number() OVER (ORDER BY ",
        "))) FROM notes",
        ") FROM notes",
    ),
    ("SELECT body FROM notes WHERE body = ", ")) OR 1", " OR 1"),
];

/// A carrier with `evil` smuggled into it.
fn carried(carrier: (&str, &str, &str), evil: &str) -> String {
    let (prefix, closers, suffix) = carrier;
    format!(
        "{prefix}{}{suffix}",
        smuggle(&format!("1{closers}; {evil} --"))
    )
}

/// What an attacker smuggles: reads out of scope, writes and DDL in the
/// tenant database, and escapes out of it (ATTACH, VACUUM INTO); with the
/// token each minting one tries.
fn smuggled_statements(lab: &mut Lab) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = [
        "SELECT name, sql FROM sqlite_master",
        "SELECT name, sql FROM sqlite_temp_master",
        "SELECT prefix, next_value FROM membership__member_numbering",
        "SELECT * FROM _souk_usage_counters",
        "SELECT file FROM pragma_database_list",
        "SELECT name FROM pragma_table_list",
        "INSERT INTO _souk_usage_counters (module, key, used) VALUES ('membership', 'max_members', -1000)",
        "UPDATE membership__members SET name = 'pwned'",
        "DELETE FROM membership__members",
        "DROP INDEX membership__members_by_status",
        "PRAGMA user_version = 77",
    ]
    .into_iter()
    .map(|s| (s.to_owned(), None))
    .collect();
    let table = lab.fresh("pwned");
    out.push((format!("CREATE TABLE {table} (a)"), None));
    let view = lab.fresh("pwned");
    out.push((
        format!("CREATE VIEW {view} AS SELECT name FROM sqlite_master"),
        None,
    ));
    // Triggers fire once, at once (a `WHEN` on a fresh value), so the
    // damage shows at this statement and not at a later one that happens
    // to use the same pooled connection.
    for temp in ["", "TEMP "] {
        let trigger = lab.fresh("pwned");
        out.push((
            format!(
                "CREATE {temp}TRIGGER {trigger} AFTER INSERT ON {OWN_TABLE} \
                 WHEN NEW.body = '{trigger}' BEGIN \
                 UPDATE membership__members SET name = 'pwned by a trigger'; END; \
                 INSERT INTO {OWN_TABLE} (body) VALUES ('{trigger}')"
            ),
            None,
        ));
    }
    let column = lab.fresh("pwned");
    out.push((
        format!("ALTER TABLE membership__members ADD COLUMN {column}"),
        None,
    ));
    let (token, mint) = lab.mint();
    out.push((
        format!(
            "COMMIT; ATTACH DATABASE '{}' AS c; {mint}; DETACH DATABASE c; BEGIN",
            lab.control_path()
        ),
        Some(token),
    ));
    out.push((
        format!(
            "COMMIT; ATTACH DATABASE '{}' AS v; UPDATE v.membership__members SET name = 'pwned'; \
             DETACH DATABASE v; BEGIN",
            lab.victim_path()
        ),
        None,
    ));
    out.push((
        format!(
            "COMMIT; ATTACH DATABASE '{}' AS v; SELECT name, email, notes FROM v.membership__members; \
             DETACH DATABASE v; BEGIN",
            lab.victim_path()
        ),
        None,
    ));
    let planted = lab.planted_path();
    out.push((
        format!(
            "COMMIT; ATTACH DATABASE '{planted}' AS p; CREATE TABLE p.t (a); DETACH DATABASE p; BEGIN"
        ),
        None,
    ));
    let outside = lab.outside_path();
    out.push((
        format!(
            "COMMIT; ATTACH DATABASE '{outside}' AS p; CREATE TABLE p.t (a); DETACH DATABASE p; BEGIN"
        ),
        None,
    ));
    out.push((
        format!(
            "COMMIT; ATTACH DATABASE '{}' AS p; CREATE TABLE p.t (a); DETACH DATABASE p; BEGIN",
            lab.relative_probe()
        ),
        None,
    ));
    let planted = lab.planted_path();
    out.push((format!("COMMIT; VACUUM INTO '{planted}'; BEGIN"), None));
    out.push((
        format!("COMMIT; VACUUM INTO '{}'; BEGIN", lab.tmp_probe()),
        None,
    ));
    out
}

#[test]
fn printer_sensitive_constructs_cannot_smuggle_statements() {
    run_corpus("printer", |lab| {
        let mut cases = Vec::new();
        // Controls first (the smuggled statements below may delete the
        // attacker's member): odd quoting of in-scope names is allowed and
        // answers the right rows.
        let own = json!([["mallory was here"]]);
        for sql in [
            "SELECT body FROM notes ORDER BY id LIMIT 1",
            "SELECT \"body\" FROM \"notes\" ORDER BY id LIMIT 1",
            "SELECT `body` FROM `notes` ORDER BY id LIMIT 1",
            "SELECT [body] FROM [notes] ORDER BY id LIMIT 1",
            "SELECT body FROM NOTES ORDER BY id LIMIT 1",
            "SELECT /* a comment */ body -- and another\nFROM notes ORDER BY id LIMIT 1",
            "SELECT ((((body)))) FROM notes ORDER BY ((id)) LIMIT ((1))",
            "SELECT body FROM notes WHERE body LIKE 'mallory%' ESCAPE '!' ORDER BY id LIMIT 1",
            "SELECT body FROM notes WHERE body = 'MALLORY WAS HERE' COLLATE NOCASE ORDER BY id LIMIT 1",
        ] {
            cases.push(Case::new(sql, Expect::Succeeds(Some(own.clone()))));
        }
        cases.push(Case::new(
            "SELECT \"name\" FROM \"membership\".\"members\"",
            Expect::Succeeds(Some(json!([["Mallory Own"]]))),
        ));
        cases.push(Case::new(
            "SELECT [name] FROM [membership].[members]",
            Expect::Succeeds(Some(json!([["Mallory Own"]]))),
        ));
        // The issue's own example and its single-statement variants.
        for read in [
            "name FROM sqlite_master",
            "sql FROM sqlite_master",
            "name FROM sqlite_schema",
            "name FROM main.sqlite_master",
            "prefix || next_value FROM membership__member_numbering",
            "name FROM pragma_table_list",
            "file FROM pragma_database_list",
            "name FROM pragma_table_info('membership__member_numbering')",
            "group_concat(name) FROM dbstat",
        ] {
            cases.extend(
                Case::new(
                    format!("SELECT CAST(1 AS x('1)) AS a, {read} --'))"),
                    Expect::Harmless,
                )
                .both(),
            );
            cases.push(Case::new(
                format!("SELECT CAST(1 AS x(1, '1)) AS a, {read} --'))"),
                Expect::Harmless,
            ));
            cases.push(Case::new(
                format!("SELECT CAST(1 AS \"x\"('1)) AS a, {read} --'))"),
                Expect::Harmless,
            ));
        }
        // Every smuggled statement in the plainest carriers, both routes.
        for (evil, minted) in smuggled_statements(lab) {
            for carrier in [CARRIERS[0], CARRIERS[1]] {
                for case in Case::new(carried(carrier, &evil), Expect::Harmless).both() {
                    cases.push(match &minted {
                        Some(token) => case.minting(token),
                        None => case,
                    });
                }
            }
        }
        // A few in every carrier.
        for carrier in CARRIERS {
            let (token, mint) = lab.mint();
            for (evil, minted) in [
                ("SELECT name, sql FROM sqlite_master".to_owned(), None),
                ("DELETE FROM membership__members".to_owned(), None),
                (
                    format!(
                        "COMMIT; ATTACH DATABASE '{}' AS c; {mint}; DETACH DATABASE c; BEGIN",
                        lab.control_path()
                    ),
                    Some(token),
                ),
            ] {
                let case = Case::new(carried(carrier, &evil), Expect::Harmless);
                cases.push(match &minted {
                    Some(token) => case.minting(token),
                    None => case,
                });
            }
        }
        // Other quoted modifiers: SQLite cannot parse the printed form, but
        // they must still come back clean.
        for sql in [
            "SELECT CAST(1 AS x(\"1\"\")) AS a, name FROM sqlite_master --\"))",
            "SELECT CAST(1 AS x(`1``)) AS a, name FROM sqlite_master --`))",
            "SELECT CAST(1 AS x([1)) AS a, name FROM sqlite_master --]))",
            "SELECT CAST(1 AS x('a', 'b'))",
            "SELECT CAST(1 AS x('))'))",
            "SELECT CAST(1 AS x(''''))",
            "SELECT CAST(1 AS a.b('1'))",
            "SELECT TRY_CAST(1 AS x('1)); DELETE FROM membership__members --'))",
            "SELECT 1::x('1)); DELETE FROM membership__members --')",
            "SELECT CAST(body AS x('1)) FROM sqlite_master --')) FROM notes",
        ] {
            cases.push(Case::new(sql, Expect::Harmless));
        }
        // Printer-sensitive constructs: whatever they print as, they stay in
        // scope and come back clean.
        for sql in [
            "SELECT body AS \"a\"\"b\", body AS [c\"d], body AS `e``f` FROM notes",
            "SELECT '--' AS \"--\", '/*' AS \"*/\" FROM notes",
            "SELECT \"a--b\" FROM notes",
            "SELECT * FROM \"no\"\"tes\"",
            "SELECT * FROM 'notes'",
            "SELECT 'notes'.body FROM notes",
            "SELECT body FROM notes WHERE body = '--' -- a real comment",
            "SELECT body FROM notes /* unterminated",
            "SELECT 1 /* nested /* inner */ , name FROM sqlite_master */",
            "SELECT 1 /* /* */ , (SELECT group_concat(name) FROM sqlite_master) -- */",
            "SELECT 1--1",
            "SELECT 1-- -1\n, name FROM sqlite_master",
            "SELECT 1 - -1, 1--\n-1",
            "SELECT * FROM ((notes))",
            "SELECT * FROM (notes AS n)",
            "SELECT X'414243', x'00', X''",
            "SELECT 0x10 + 1, 0xffffffffffffffff, 0x",
            "SELECT 1e999, -9223372036854775808, 9223372036854775808, .5e-3, 1_000",
            "SELECT N'x', E'\\x41', B'0101', U&'x'",
            "SELECT $$a$$",
            "SELECT '''' || '''', 'it''s'",
            "SELECT ?1, ?, :a, @b, $c",
            "SELECT ?999999",
            "SELECT body FROM notes ORDER BY body COLLATE \"binary\"",
            "SELECT body FROM notes ORDER BY body COLLATE [rtrim]",
            "SELECT body FROM notes ORDER BY body COLLATE nonexistent",
            "SELECT body FROM notes WHERE body LIKE '%!%%' ESCAPE '!'",
            "SELECT body FROM notes WHERE body LIKE 'x' ESCAPE ''''",
            "SELECT body FROM notes WHERE body LIKE 'x' ESCAPE 'ab'",
            "SELECT body FROM notes WHERE body MATCH 'x'",
            "SELECT body FROM notes WHERE body REGEXP 'x'",
            "SELECT body FROM notes WHERE body NOT GLOB '[a-z]*'",
            "SELECT body FROM notes WHERE body GLOB 'mall*'",
            "SELECT body FROM notes WHERE body MATCH (SELECT name FROM sqlite_master)",
            "SELECT 1 MATCH",
            "SELECT 1 REGEXP",
            "SELECT * FROM notes WHERE body MATCH ;",
            "SELECT 1 MATCH 2 MATCH 3 REGEXP 4",
            "SELECT row_number() OVER w FROM notes WINDOW w AS (ORDER BY id)",
            "SELECT sum(id) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM notes",
            "SELECT sum(id) OVER (ORDER BY id GROUPS BETWEEN 1 PRECEDING AND 1 FOLLOWING EXCLUDE TIES) FROM notes",
            "SELECT count(*) FILTER (WHERE id > 0) OVER () FROM notes",
            "SELECT lag(body, 1, (SELECT name FROM sqlite_master)) OVER () FROM notes",
            "SELECT * FROM notes INDEXED BY sqlite_autoindex_membership__members_1",
            "SELECT * FROM membership.members INDEXED BY members_by_status",
            "SELECT * FROM membership.members INDEXED BY membership__members_by_status",
            "SELECT * FROM notes NOT INDEXED",
            "DELETE FROM notes INDEXED BY x WHERE 0",
            "UPDATE notes NOT INDEXED SET body = body WHERE 0",
            "SELECT * FROM json_each('[1,2]')",
            "SELECT * FROM notes, json_each('[1]')",
            "SELECT * FROM json_tree('{\"a\":1}')",
            "SELECT value FROM json_each((SELECT json_group_array(name) FROM sqlite_master))",
            "SELECT * FROM generate_series(1, 3)",
            "SELECT * FROM fts5vocab('x', 'row')",
            "SELECT * FROM LATERAL pragma_table_list",
            "SELECT * FROM TABLE(pragma_table_list)",
            "SELECT * FROM UNNEST(ARRAY[1])",
            "SELECT CAST(body AS \"TEXT\"), CAST(1 AS VARCHAR(10)), CAST(1 AS x(1, 2)), CAST('1' AS [int]) FROM notes",
            "SELECT '{\"a\":1}' -> '$.a', '{\"a\":1}' ->> '$.a'",
            "SELECT body FROM notes WHERE body IS NOT DISTINCT FROM 'x' OR body NOTNULL OR body ISNULL",
            "SELECT body FROM notes WHERE id IN () OR id BETWEEN 1 AND 2 LIMIT 1, 2",
            "SELECT 'x''; DELETE FROM notes; --'",
            "SELECT char(0) || 'x', 'a' 'b'",
            "VALUES (1), (2)",
            "SELECT 1 FROM notes AS x(a)",
        ] {
            cases.push(Case::new(sql, Expect::Harmless));
        }
        cases
    });
}

/// Out-of-scope tables, by their real (physical) names.
const OUT_OF_SCOPE_TABLES: [&str; 13] = [
    "sqlite_master",
    "sqlite_schema",
    "sqlite_temp_master",
    "sqlite_temp_schema",
    "sqlite_sequence",
    "sqlite_stat1",
    "sqlite_stat4",
    "sqlite_dbpage",
    "_souk_usage_counters",
    "_souk_usage_keys",
    "_souk_usage_events",
    "membership__members",
    "membership__member_numbering",
];

/// Every way to write a reference to `table`.
fn spellings(table: &str) -> Vec<String> {
    let upper = table.to_ascii_uppercase();
    let mixed: String = table
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    vec![
        table.to_owned(),
        format!("\"{table}\""),
        format!("[{table}]"),
        format!("`{table}`"),
        upper,
        mixed,
        format!("main.{table}"),
        format!("\"main\".\"{table}\""),
        format!("main.\"{table}\""),
        format!("[main].[{table}]"),
        format!("`main`.`{table}`"),
        format!("MAIN.{table}"),
        format!("temp.{table}"),
        format!("\"temp\".{table}"),
        format!("sql_console.{table}"),
        format!("\"sql-console\".{table}"),
        format!("membership.{table}"),
        format!("x.main.{table}"),
        format!("'{table}'"),
    ]
}

#[test]
fn every_way_to_name_a_table_out_of_scope_fails() {
    run_corpus("table-names", |_| {
        let mut cases = Vec::new();
        for table in OUT_OF_SCOPE_TABLES {
            for name in spellings(table) {
                cases.push(Case::new(format!("SELECT * FROM {name}"), Expect::Fails));
            }
            for shape in [
                "SELECT (SELECT count(*) FROM {})",
                "SELECT n.body FROM notes n JOIN {} ON 1",
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM {})",
                "SELECT * FROM notes, (SELECT * FROM {}) s",
            ] {
                cases.push(Case::new(shape.replace("{}", table), Expect::Fails));
            }
        }
        // Another module's unexported table, and a dependency's export by
        // its physical name.
        for name in [
            "membership.member_numbering",
            "MEMBERSHIP.MEMBER_NUMBERING",
            "\"membership\".\"member_numbering\"",
            "[membership].[member_numbering]",
            "`membership`.`member_numbering`",
            "membership.\"member_numbering\"",
            "main.membership__member_numbering",
            "membership.sqlite_master",
            "membership.members_by_status",
            "membership.\"members\" AS m, membership.member_numbering",
            "main.membership__members",
        ] {
            cases.push(Case::new(format!("SELECT * FROM {name}"), Expect::Fails));
        }
        // The attacker's own table by its physical name: its own data, so
        // harmless either way.
        for name in [
            "sql_console__notes",
            "\"sql_console__notes\"",
            "main.sql_console__notes",
            "sql_console.sql_console__notes",
        ] {
            cases.push(Case::new(format!("SELECT * FROM {name}"), Expect::Harmless));
        }
        // In-scope spellings: allowed, and only the attacker's own rows.
        for name in [
            "membership.members",
            "\"membership\".\"members\"",
            "MEMBERSHIP.MEMBERS",
            "[membership].[members]",
            "`membership`.`members`",
            "membership.\"members\"",
        ] {
            cases.push(Case::new(
                format!("SELECT name FROM {name} ORDER BY name"),
                Expect::Succeeds(Some(json!([["Mallory Own"]]))),
            ));
        }
        for name in [
            "sql_console.notes",
            "\"sql-console\".notes",
            "SQL_CONSOLE.NOTES",
        ] {
            cases.push(Case::new(
                format!("SELECT body FROM {name} ORDER BY id LIMIT 1"),
                Expect::Succeeds(Some(json!([["mallory was here"]]))),
            ));
        }
        // Writes through every spelling of a table the module may not write.
        for (target, column) in [
            ("membership.members", "name"),
            ("\"membership\".\"members\"", "name"),
            ("MEMBERSHIP.members", "name"),
            ("[membership].[members]", "name"),
            ("`membership`.`members`", "name"),
            ("membership__members", "name"),
            ("\"membership__members\"", "name"),
            ("main.membership__members", "name"),
            ("main.\"membership__members\"", "name"),
            ("membership.member_numbering", "prefix"),
            ("membership__member_numbering", "prefix"),
            ("_souk_usage_counters", "used"),
            ("main._souk_usage_counters", "used"),
            ("\"_souk_usage_events\"", "amount"),
            ("sqlite_master", "sql"),
            ("main.sqlite_master", "sql"),
            ("sqlite_sequence", "seq"),
            ("sqlite_stat1", "stat"),
            ("sqlite_dbpage", "data"),
        ] {
            cases.push(Case::new(
                format!("UPDATE {target} SET {column} = 'pwned'"),
                Expect::Fails,
            ));
            cases.push(Case::new(format!("DELETE FROM {target}"), Expect::Fails));
            cases.push(Case::new(
                format!("INSERT INTO {target} DEFAULT VALUES"),
                Expect::Fails,
            ));
            cases.push(Case::new(
                format!("INSERT INTO {target} ({column}) VALUES ('pwned')"),
                Expect::Fails,
            ));
        }
        cases
    });
}

/// Table-valued pragma functions, as a module would name them in `FROM`.
const PRAGMA_FUNCTIONS: [&str; 30] = [
    "pragma_table_list",
    "pragma_table_info('membership__member_numbering')",
    "pragma_table_xinfo('membership__members')",
    "pragma_index_list('membership__members')",
    "pragma_index_info('membership__members_by_status')",
    "pragma_index_xinfo('membership__members_by_status')",
    "pragma_foreign_key_list('membership__members')",
    "pragma_foreign_key_check",
    "pragma_database_list",
    "pragma_function_list",
    "pragma_module_list",
    "pragma_pragma_list",
    "pragma_compile_options",
    "pragma_collation_list",
    "pragma_integrity_check",
    "pragma_quick_check",
    "pragma_user_version",
    "pragma_application_id",
    "pragma_page_count",
    "pragma_page_size",
    "pragma_freelist_count",
    "pragma_journal_mode",
    "pragma_encoding",
    "pragma_data_version",
    "pragma_schema_version",
    "pragma_foreign_keys",
    "pragma_trusted_schema",
    "pragma_table_info('membership__members', 'main')",
    "dbstat",
    "dbstat('main')",
];

#[test]
fn pragmas_attach_detach_and_vacuum_are_refused() {
    run_corpus("pragmas", |lab| {
        let mut cases = Vec::new();
        for function in PRAGMA_FUNCTIONS {
            cases.push(Case::new(
                format!("SELECT * FROM {function}"),
                Expect::Fails,
            ));
            let quoted = match function.split_once('(') {
                Some((name, args)) => format!("\"{name}\"({args}"),
                None => format!("\"{function}\""),
            };
            cases.push(Case::new(format!("SELECT * FROM {quoted}"), Expect::Fails));
            cases.push(Case::new(
                format!("SELECT * FROM main.{function}"),
                Expect::Fails,
            ));
            cases.push(Case::new(
                format!("SELECT * FROM {}", function.to_ascii_uppercase()),
                Expect::Fails,
            ));
            cases.push(Case::new(
                format!("SELECT (SELECT count(*) FROM {function})"),
                Expect::Fails,
            ));
        }
        // Sensitive input to table-valued JSON functions: the sub-select is
        // out of scope, so the statement fails.
        for sql in [
            "SELECT value FROM json_each((SELECT json_group_array(name) FROM sqlite_master))",
            "SELECT value FROM json_tree((SELECT json_group_array(sql) FROM sqlite_schema))",
            "SELECT value FROM json_each((SELECT json_group_array(prefix) FROM membership__member_numbering))",
            "SELECT * FROM json_each((SELECT json_group_array(file) FROM pragma_database_list))",
        ] {
            cases.push(Case::new(sql, Expect::Fails));
        }
        for statement in [
            "PRAGMA table_list",
            "PRAGMA table_info(notes)",
            "PRAGMA table_info('membership__member_numbering')",
            "PRAGMA database_list",
            "PRAGMA compile_options",
            "PRAGMA user_version = 77",
            "PRAGMA main.user_version = 77",
            "PRAGMA \"user_version\" = 78",
            "PRAGMA application_id = 5",
            "PRAGMA journal_mode = DELETE",
            "PRAGMA writable_schema = ON",
            "PRAGMA foreign_keys = OFF",
            "PRAGMA query_only = 1",
            "PRAGMA trusted_schema = 1",
            "PRAGMA cell_size_check = 1",
            "PRAGMA integrity_check",
            "PRAGMA wal_checkpoint(TRUNCATE)",
            "PRAGMA secure_delete = 0",
            "PRAGMA temp_store_directory = '/tmp'",
            "PRAGMA max_page_count = 1",
            "PRAGMA schema_version = 1",
            "PRAGMA key = 'x'",
            "pragma table_list",
            "  PRAGMA /* comment */ table_list",
        ] {
            cases.push(Case::new(statement, Expect::Refused).route(Route::Execute));
            cases.push(Case::new(statement, Expect::Refused).route(Route::Query));
        }
        let control = lab.control_path();
        let victim = lab.victim_path();
        let planted = lab.planted_path();
        let outside = lab.outside_path();
        let relative = lab.relative_probe();
        let tmp = lab.tmp_probe();
        let vacuum_target = lab.planted_path();
        for statement in [
            format!("ATTACH DATABASE '{control}' AS c"),
            format!("ATTACH '{control}' AS c"),
            format!("attach database '{control}' as \"c\""),
            format!("ATTACH DATABASE '{victim}' AS v"),
            format!("ATTACH DATABASE '{planted}' AS n"),
            format!("ATTACH DATABASE '{outside}' AS n"),
            format!("ATTACH DATABASE 'file:{planted}?mode=rwc' AS u"),
            format!("ATTACH DATABASE '{relative}' AS r"),
            format!("ATTACH DATABASE '{tmp}' AS r"),
            format!("ATTACH DATABASE '{control}' || '' AS c"),
            format!("ATTACH DATABASE (SELECT '{control}') AS c"),
            "ATTACH DATABASE ':memory:' AS m".to_owned(),
            "ATTACH DATABASE '' AS e".to_owned(),
            "DETACH DATABASE main".to_owned(),
            "DETACH temp".to_owned(),
            "DETACH DATABASE c".to_owned(),
            "VACUUM".to_owned(),
            "VACUUM main".to_owned(),
            format!("VACUUM INTO '{vacuum_target}'"),
            format!("VACUUM main INTO '{tmp}'"),
            "REINDEX".to_owned(),
            "REINDEX notes".to_owned(),
            "ANALYZE".to_owned(),
            "ANALYZE sqlite_master".to_owned(),
            "ANALYZE notes".to_owned(),
        ] {
            cases.push(Case::new(statement, Expect::Refused));
        }
        // A path passed as a parameter.
        cases.push(Case::new("ATTACH DATABASE ?1 AS c", Expect::Refused).params(json!([control])));
        cases
            .push(Case::new("VACUUM INTO ?1", Expect::Refused).params(json!([lab.planted_path()])));
        cases
    });
}

/// Names a CTE can shadow, and how `FROM` reaches the real thing.
const SHADOWED: [(&str, &str); 7] = [
    ("pragma_table_list", "pragma_table_list"),
    (
        "pragma_table_info",
        "pragma_table_info('membership__member_numbering')",
    ),
    ("pragma_database_list", "pragma_database_list"),
    (
        "pragma_index_list",
        "pragma_index_list('membership__members')",
    ),
    ("pragma_function_list", "pragma_function_list"),
    ("pragma_compile_options", "pragma_compile_options"),
    ("dbstat", "dbstat"),
];

#[test]
fn ctes_cannot_shadow_their_way_out_of_scope() {
    run_corpus("ctes", |_| {
        let mut cases = Vec::new();
        for (name, real) in SHADOWED {
            let shadow = format!("WITH {name} AS (SELECT 1) SELECT 1");
            for sql in [
                format!("SELECT * FROM {real} WHERE EXISTS ({shadow})"),
                format!(
                    "SELECT * FROM {real} WHERE 1 IN (WITH {name} AS (SELECT 1) SELECT * FROM {name})"
                ),
                format!("SELECT ({shadow}), * FROM {real}"),
                format!("SELECT * FROM (WITH {name} AS (SELECT 1) SELECT 1) s, {real}"),
                format!("WITH x AS (SELECT * FROM {real}) SELECT * FROM x WHERE EXISTS ({shadow})"),
                format!(
                    "SELECT * FROM notes WHERE EXISTS ({shadow}) AND EXISTS (SELECT * FROM {real})"
                ),
                format!(
                    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r \
                     WHERE EXISTS ({shadow}) LIMIT 3) SELECT * FROM r, {real}"
                ),
                format!(
                    "SELECT 1 FROM (WITH {name} AS (SELECT 1) SELECT * FROM {name}) UNION ALL SELECT 1 FROM {real}"
                ),
                format!("SELECT * FROM {real} WHERE EXISTS (SELECT 1 WHERE EXISTS ({shadow}))"),
                format!(
                    "SELECT * FROM {real} WHERE EXISTS (WITH {} AS (SELECT 1) SELECT 1)",
                    name.to_ascii_uppercase()
                ),
                format!(
                    "SELECT * FROM {real} WHERE EXISTS (WITH \"{name}\" AS (SELECT 1) SELECT 1)"
                ),
                format!("SELECT * FROM {real} WHERE EXISTS (WITH `{name}` AS (SELECT 1) SELECT 1)"),
                format!("SELECT * FROM {real} WHERE EXISTS (WITH [{name}] AS (SELECT 1) SELECT 1)"),
                format!("SELECT * FROM {real} JOIN membership.members m ON EXISTS ({shadow})"),
            ] {
                cases.push(Case::new(sql, Expect::Fails));
            }
            // Out-of-scope reads written into the module's own table, to be
            // read back later.
            for sql in [
                format!(
                    "INSERT INTO notes (body) SELECT group_concat(name) FROM {real} WHERE EXISTS ({shadow})"
                ),
                format!(
                    "UPDATE notes SET body = (SELECT group_concat(name) FROM {real}) WHERE EXISTS ({shadow})"
                ),
                format!(
                    "DELETE FROM notes WHERE body IN (SELECT name FROM {real}) AND EXISTS ({shadow})"
                ),
                format!(
                    "INSERT INTO notes (body) VALUES ('r') RETURNING \
                     (SELECT group_concat(name) FROM {real} WHERE EXISTS ({shadow}))"
                ),
                format!(
                    "INSERT INTO notes (id, body) VALUES (1, 'u') ON CONFLICT (id) DO UPDATE SET \
                     body = (SELECT group_concat(name) FROM {real} WHERE EXISTS ({shadow}))"
                ),
            ] {
                cases.push(Case::new(sql, Expect::Fails));
            }
            // A CTE of that name in the same scope is the module's own:
            // harmless.
            for sql in [
                format!("WITH {name} AS (SELECT 1 AS name) SELECT * FROM {name}"),
                format!(
                    "WITH RECURSIVE {name}(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM {name} LIMIT 3) \
                     SELECT * FROM {name}"
                ),
                format!(
                    "WITH a AS (SELECT * FROM {name}), {name} AS (SELECT 1 AS name) SELECT * FROM a"
                ),
            ] {
                cases.push(Case::new(sql, Expect::Harmless));
            }
        }
        // System and other modules' names as CTE names.
        for name in [
            "sqlite_master",
            "\"sqlite_master\"",
            "SQLITE_SCHEMA",
            "membership__members",
            "_souk_usage_counters",
            "\"main\"",
        ] {
            cases.push(Case::new(
                format!(
                    "SELECT * FROM sqlite_master WHERE EXISTS (WITH {name} AS (SELECT 1) SELECT 1)"
                ),
                Expect::Fails,
            ));
            cases.push(Case::new(
                format!("WITH {name} AS (SELECT 1) SELECT * FROM {name}"),
                Expect::Harmless,
            ));
        }
        // A CTE cannot stand in for a dependency's export.
        cases.push(Case::new(
            "SELECT * FROM membership__member_numbering WHERE EXISTS \
             (WITH membership__member_numbering AS (SELECT 1) SELECT 1)",
            Expect::Fails,
        ));
        cases.push(Case::new(
            "WITH members AS (SELECT * FROM membership__member_numbering) SELECT * FROM members",
            Expect::Fails,
        ));
        cases
    });
}

#[test]
fn writes_to_a_dependencys_tables_fail_however_they_are_phrased() {
    run_corpus("dependency-writes", |_| {
        let mut cases = Vec::new();
        let insert = "INSERT INTO membership.members (number, name, joined_on) \
                      VALUES ('X-1', 'pwned', '2026-01-01')";
        for prefix in [
            "WITH t AS (SELECT 1) ",
            "WITH RECURSIVE t(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM t LIMIT 2) ",
            "WITH t AS (SELECT 1), u AS (SELECT * FROM membership.members) ",
            "WITH members AS (SELECT 1) ",
            "WITH m AS (SELECT * FROM membership.members) ",
            "",
        ] {
            for statement in [
                "UPDATE membership.members SET name = 'pwned'".to_owned(),
                "UPDATE membership.members AS m SET name = 'pwned' WHERE m.id > 0".to_owned(),
                "UPDATE OR REPLACE membership.members SET name = 'pwned'".to_owned(),
                "UPDATE membership.members SET name = 'pwned' RETURNING *".to_owned(),
                "UPDATE membership.members SET name = n.body FROM notes n".to_owned(),
                "DELETE FROM membership.members".to_owned(),
                "DELETE FROM membership.members WHERE id IN (SELECT id FROM membership.members)"
                    .to_owned(),
                "DELETE FROM membership.members RETURNING *".to_owned(),
                insert.to_owned(),
                format!("{insert} RETURNING *"),
                insert.replace("INSERT INTO", "INSERT OR REPLACE INTO"),
                insert.replace("INSERT INTO", "REPLACE INTO"),
                insert.replace("INSERT INTO", "INSERT OR IGNORE INTO"),
                "INSERT INTO membership.members (id, number, name, joined_on) \
                 SELECT id, number, 'pwned', joined_on FROM membership.members \
                 ON CONFLICT (id) DO UPDATE SET name = 'pwned'"
                    .to_owned(),
                "INSERT INTO membership.members (number, name, joined_on) VALUES ('A-1', 'x', 'y') \
                 ON CONFLICT (number) DO UPDATE SET name = 'pwned' RETURNING *"
                    .to_owned(),
                "INSERT INTO membership.members DEFAULT VALUES".to_owned(),
                "INSERT INTO membership.members SELECT * FROM membership.members".to_owned(),
            ] {
                for case in Case::new(format!("{prefix}{statement}"), Expect::Fails).both() {
                    cases.push(case);
                }
            }
        }
        // Own writes that read the dependency: allowed, harmless.
        for sql in [
            "WITH t AS (SELECT 1) UPDATE notes SET body = body WHERE 0",
            "INSERT INTO notes (body) SELECT name FROM membership.members WHERE 0",
            "UPDATE notes SET body = body FROM membership.members m WHERE 0",
            "INSERT INTO notes (id, body) VALUES (1, 'u') ON CONFLICT (id) DO UPDATE SET body = body",
            "INSERT INTO notes (body) VALUES ('r') RETURNING id > 0",
        ] {
            cases.push(Case::new(sql, Expect::Harmless));
        }
        cases
    });
}

#[test]
fn ddl_and_transaction_control_are_refused_at_run_time() {
    run_corpus("ddl-and-transactions", |lab| {
        let mut cases = Vec::new();
        for statement in [
            "CREATE TRIGGER t AFTER INSERT ON notes BEGIN DELETE FROM membership.members; END",
            "CREATE TEMP TRIGGER t AFTER INSERT ON notes BEGIN DELETE FROM notes; END",
            "CREATE TRIGGER IF NOT EXISTS t BEFORE DELETE ON notes BEGIN SELECT 1; END",
            "CREATE TEMP TABLE x (a)",
            "CREATE TEMPORARY TABLE x AS SELECT * FROM membership.members",
            "CREATE TABLE x AS SELECT * FROM membership.members",
            "CREATE TABLE temp.x (a)",
            "CREATE TABLE x (a)",
            "CREATE TABLE IF NOT EXISTS notes (a)",
            "CREATE VIEW v AS SELECT 1",
            "CREATE TEMP VIEW v AS SELECT name FROM sqlite_master",
            "CREATE VIEW v AS SELECT * FROM membership.members",
            "CREATE VIRTUAL TABLE v USING fts5(a)",
            "CREATE VIRTUAL TABLE temp.v USING dbstat",
            "CREATE INDEX i ON notes (body)",
            "CREATE UNIQUE INDEX i ON notes (body)",
            "CREATE INDEX i ON notes (body) WHERE body IN (SELECT name FROM sqlite_master)",
            "DROP TABLE notes",
            "DROP TABLE IF EXISTS membership.members",
            "DROP TABLE membership__members",
            "DROP VIEW v",
            "DROP TRIGGER t",
            "DROP INDEX membership.members_by_status",
            "DROP INDEX membership__members_by_status",
            "ALTER TABLE notes RENAME TO x",
            "ALTER TABLE notes ADD COLUMN x",
            "ALTER TABLE notes RENAME COLUMN body TO b",
            "ALTER TABLE notes DROP COLUMN body",
            "ALTER TABLE membership.members DROP COLUMN notes",
            "ALTER TABLE membership.members ADD COLUMN pwned",
        ] {
            cases.push(Case::new(statement, Expect::Refused).route(Route::Execute));
            cases.push(Case::new(statement, Expect::Refused).route(Route::Query));
        }
        let transactions = [
            "BEGIN",
            "BEGIN IMMEDIATE",
            "BEGIN EXCLUSIVE TRANSACTION",
            "BEGIN DEFERRED",
            "COMMIT",
            "COMMIT TRANSACTION",
            "END",
            "END TRANSACTION",
            "ROLLBACK",
            "SAVEPOINT s",
            "RELEASE s",
            "RELEASE SAVEPOINT s",
            "ROLLBACK TO s",
            "ROLLBACK TRANSACTION TO SAVEPOINT s",
            "START TRANSACTION",
        ];
        for statement in transactions {
            cases.push(Case::new(statement, Expect::Refused).route(Route::Execute));
            cases.push(Case::new(statement, Expect::Refused).route(Route::Query));
        }
        // Inside a call the host then rolls back: no write may survive.
        for statement in transactions {
            let marker = lab.fresh("txn-probe");
            cases.push(
                Case::new(statement, Expect::Refused)
                    .route(Route::Execute)
                    .rollback_probe(marker),
            );
        }
        for (statement, route) in [
            ("SELECT CAST(1 AS x('1)); COMMIT; BEGIN --'))", Route::Query),
            ("SELECT CAST(1 AS x('1)); COMMIT --'))", Route::Query),
            (
                "INSERT INTO notes (body) VALUES (CAST(1 AS x('1))); COMMIT; BEGIN --')))",
                Route::Execute,
            ),
            (
                "SELECT CAST(1 AS x('1)); RELEASE s; SAVEPOINT s --'))",
                Route::Query,
            ),
        ] {
            let marker = lab.fresh("txn-probe");
            cases.push(
                Case::new(statement, Expect::Harmless)
                    .route(route)
                    .rollback_probe(marker),
            );
        }
        cases
    });
}

#[test]
fn multi_statement_text_and_dangerous_functions_are_refused() {
    run_corpus("multi-statement-and-functions", |lab| {
        let mut cases = Vec::new();
        let control = lab.control_path();
        for statement in [
            "SELECT 1; DELETE FROM notes".to_owned(),
            "SELECT 1;DELETE FROM membership.members".to_owned(),
            "SELECT 1 ; SELECT 2".to_owned(),
            "DELETE FROM notes WHERE 0; DELETE FROM membership.members".to_owned(),
            "SELECT 1; PRAGMA user_version = 77".to_owned(),
            "SELECT 1; BEGIN".to_owned(),
            format!("SELECT 1; ATTACH DATABASE '{control}' AS c"),
            "SELECT 1;\nCREATE TABLE x (a)".to_owned(),
            "SELECT 1; /* comment */ SELECT 2".to_owned(),
            "; SELECT 1; DELETE FROM notes".to_owned(),
        ] {
            for case in Case::new(statement, Expect::Refused).both() {
                cases.push(case);
            }
        }
        // A lone statement with an empty tail.
        for statement in [
            "SELECT 1;",
            "SELECT 1 ;;",
            "SELECT 1; -- done",
            "SELECT 1; /* done */",
        ] {
            cases.push(Case::new(statement, Expect::Harmless));
        }
        let planted = lab.planted_path();
        let tmp = lab.tmp_probe();
        for statement in [
            "SELECT load_extension('/tmp/evil.so')".to_owned(),
            "SELECT load_extension('libc.so.6', 'system')".to_owned(),
            "SELECT LOAD_EXTENSION('x')".to_owned(),
            "SELECT \"load_extension\"('x')".to_owned(),
            "SELECT readfile('/etc/passwd')".to_owned(),
            format!("SELECT readfile('{control}')"),
            format!("SELECT writefile('{planted}', 'x')"),
            format!("SELECT writefile('{tmp}', 'x')"),
            "SELECT edit('x')".to_owned(),
            "SELECT fts3_tokenizer('simple')".to_owned(),
            "SELECT fts3_tokenizer('pwned', X'0000000000000000')".to_owned(),
            "SELECT sqlite_compileoption_get(0)".to_owned(),
            "SELECT sqlite_compileoption_used('THREADSAFE')".to_owned(),
            "SELECT zipfile('x')".to_owned(),
            "SELECT shell_exec('id')".to_owned(),
            "SELECT * FROM notes WHERE load_extension('x') IS NULL".to_owned(),
            "INSERT INTO notes (body) VALUES (load_extension('x'))".to_owned(),
            "SELECT (SELECT load_extension('x'))".to_owned(),
        ] {
            cases.push(Case::new(statement, Expect::Fails));
        }
        cases
    });
}

/// `1+1+...+1` with `terms` terms.
fn sum_of_ones(terms: usize) -> String {
    let mut sql = String::from("SELECT 1");
    for _ in 1..terms {
        sql.push_str("+1");
    }
    sql
}

/// `open` × depth, `inner`, `close` × depth.
fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn huge_and_deep_statements_are_refused_cleanly() {
    run_corpus("limits", |_| {
        let mut cases = Vec::new();
        for statement in [
            "SELECT length(randomblob(500000000))",
            "SELECT randomblob(500000000)",
            "SELECT length(zeroblob(250000000) || 'x')",
            "SELECT zeroblob(250000000)",
            "SELECT length(zeroblob(2000000000))",
            "SELECT length(hex(zeroblob(100000000)))",
            "SELECT length(printf('%.*c', 500000000, 'x'))",
            "SELECT printf('%.*c', 500000000, 'x')",
            "SELECT length(format('%250000000d', 1))",
            "SELECT length(replace(hex(zeroblob(10000)), '0', hex(zeroblob(10000))))",
            "SELECT length(replace(replace(hex(zeroblob(1000)), '0', hex(zeroblob(1000))), '0', hex(zeroblob(1000))))",
            "SELECT length(upper(printf('%.*c', 150000000, 'x')))",
            "WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r LIMIT 29) SELECT max(length(s)) FROM r",
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 120) \
             SELECT length(group_concat(hex(randomblob(1000000)))) FROM c",
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 120) \
             SELECT length(json_group_array(hex(randomblob(1000000)))) FROM c",
            "INSERT INTO notes (body) VALUES (hex(randomblob(100000000)))",
            "INSERT INTO notes (body) SELECT printf('%.*c', 200000000, 'x')",
        ] {
            cases.push(Case::new(statement, Expect::Bounded));
        }
        // Huge and deep expressions, well inside and around the 64 KiB cap.
        let deep: Vec<(String, String)> = vec![
            ("1+1+...+1, 5000 terms".into(), sum_of_ones(5_000)),
            ("1+1+...+1, 20000 terms".into(), sum_of_ones(20_000)),
            ("1+1+...+1, 50000 terms".into(), sum_of_ones(50_000)),
            (
                "10000 nested parentheses".into(),
                format!("SELECT {}", nested("(", "1", ")", 10_000)),
            ),
            (
                "3000 nested parentheses".into(),
                format!("SELECT {}", nested("(", "1", ")", 3_000)),
            ),
            (
                "2000 nested CASE".into(),
                format!("SELECT {}", nested("CASE WHEN 1 THEN ", "1", " END", 2_000)),
            ),
            (
                "1000 nested sub-selects".into(),
                format!("SELECT {}", nested("(SELECT ", "1", ")", 1_000)),
            ),
            (
                "5000 NOTs".into(),
                format!("SELECT {}1", "NOT ".repeat(5_000)),
            ),
            (
                "10000 unary minuses".into(),
                format!("SELECT {}1", "- ".repeat(10_000)),
            ),
            (
                "3000 nested function calls".into(),
                format!("SELECT {}", nested("abs(", "1", ")", 3_000)),
            ),
            (
                "2000 nested IN".into(),
                format!("SELECT {}", nested("1 IN (", "1", ")", 2_000)),
            ),
            (
                "3000 UNION ALL".into(),
                format!("SELECT 1{}", " UNION ALL SELECT 1".repeat(3_000)),
            ),
            (
                "5000 ANDs".into(),
                format!("SELECT 1 WHERE 1{}", " AND 1".repeat(5_000)),
            ),
            (
                "5000 ORs".into(),
                format!("SELECT 1 WHERE 0{}", " OR 0".repeat(5_000)),
            ),
            (
                "5000 concatenations".into(),
                format!("SELECT 'a'{}", " || 'a'".repeat(5_000)),
            ),
            (
                "500 nested CTEs".into(),
                format!(
                    "SELECT * FROM {}",
                    nested("(WITH t AS (SELECT 1) SELECT * FROM ", "t", ")", 500)
                ),
            ),
            (
                "1000 nested sub-queries in FROM".into(),
                format!(
                    "SELECT * FROM {}",
                    nested("(SELECT * FROM ", "notes", ")", 1_000)
                ),
            ),
            (
                "2000 joins".into(),
                format!("SELECT 1 FROM notes{}", " JOIN notes ON 1".repeat(2_000)),
            ),
            (
                "10000-deep JSON".into(),
                format!("SELECT json('{}')", nested("[", "1", "]", 10_000)),
            ),
            (
                "2500 columns".into(),
                format!("SELECT 1{}", ", 1".repeat(2_500)),
            ),
            (
                "a 65537-byte statement".into(),
                format!("SELECT 1 /*{}*/", "x".repeat(65_537 - 13)),
            ),
            (
                // 20 deep parses at once; 50 deep kept the call (and the
                // tenant's write lock) busy for over a minute.
                "50 nested CAST".into(),
                format!("SELECT {}", nested("CAST(", "1", " AS INTEGER)", 50)),
            ),
            (
                "1000 nested window ORDER BY".into(),
                format!(
                    "SELECT {} FROM notes",
                    nested("sum(", "1", ") OVER ()", 1_000)
                ),
            ),
        ];
        for (label, sql) in deep {
            cases.push(Case::new(sql, Expect::Bounded).label(label));
        }
        cases
    });
}

// ---------------------------------------------------------------------------
// Generated statements

/// A small xorshift generator: the same seed gives the same statements.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// How a generated source is reached.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The module's own table, or a dependency's export.
    InScope,
    /// Out of scope unless a CTE of `name` is visible (unqualified names only).
    OutOfScope,
    /// A table-valued function on literal input: no data behind it.
    Neutral,
}

/// `(SQL in FROM, the bare name a CTE would shadow, reach)`.
const SOURCES: [(&str, &str, Reach); 26] = [
    ("notes", "notes", Reach::InScope),
    ("\"notes\"", "notes", Reach::InScope),
    ("[notes]", "notes", Reach::InScope),
    ("NOTES", "notes", Reach::InScope),
    ("sql_console.notes", "", Reach::InScope),
    ("membership.members", "", Reach::InScope),
    ("\"membership\".\"members\"", "", Reach::InScope),
    ("MEMBERSHIP.members", "", Reach::InScope),
    ("sqlite_master", "sqlite_master", Reach::OutOfScope),
    ("sqlite_schema", "sqlite_schema", Reach::OutOfScope),
    ("main.sqlite_master", "", Reach::OutOfScope),
    (
        "\"sqlite_temp_master\"",
        "sqlite_temp_master",
        Reach::OutOfScope,
    ),
    ("[sqlite_sequence]", "sqlite_sequence", Reach::OutOfScope),
    ("membership.member_numbering", "", Reach::OutOfScope),
    (
        "membership__members",
        "membership__members",
        Reach::OutOfScope,
    ),
    (
        "\"membership__member_numbering\"",
        "membership__member_numbering",
        Reach::OutOfScope,
    ),
    (
        "_souk_usage_counters",
        "_souk_usage_counters",
        Reach::OutOfScope,
    ),
    ("main.notes", "", Reach::OutOfScope),
    ("temp.notes", "", Reach::OutOfScope),
    ("pragma_table_list", "pragma_table_list", Reach::OutOfScope),
    (
        "pragma_table_info('membership__member_numbering')",
        "pragma_table_info",
        Reach::OutOfScope,
    ),
    (
        "pragma_database_list",
        "pragma_database_list",
        Reach::OutOfScope,
    ),
    (
        "pragma_index_list('membership__members')",
        "pragma_index_list",
        Reach::OutOfScope,
    ),
    ("dbstat", "dbstat", Reach::OutOfScope),
    ("json_each('[\"a\",\"b\"]')", "json_each", Reach::Neutral),
    ("json_tree('{\"k\":1}')", "json_tree", Reach::Neutral),
];

/// Names generated CTEs take: shadows of real objects and plain names.
const CTE_NAMES: [&str; 9] = [
    "pragma_table_list",
    "pragma_table_info",
    "pragma_database_list",
    "pragma_index_list",
    "dbstat",
    "json_each",
    "notes",
    "recent",
    "members",
];

/// Predicates that do not reach any table.
const PLAIN_PREDICATES: [&str; 8] = [
    "1",
    "0",
    "CAST(1 AS x(1)) = 1",
    "'a' = 'A' COLLATE NOCASE",
    "'ab' GLOB 'a*'",
    "'a%' LIKE 'a!%' ESCAPE '!'",
    "X'00' IS NOT NULL",
    "0x10 /* c */ > 1 -- c\n",
];

/// Generates statements; each says whether it reaches out of scope.
struct Generator {
    rng: Rng,
}

impl Generator {
    /// A source in `FROM` and whether it reaches out of scope, given the
    /// CTE names visible there.
    fn source(&mut self, visible: &BTreeSet<&str>) -> (String, bool) {
        let (sql, name, reach) = *self.rng.pick(&SOURCES);
        let shadowed = !name.is_empty() && visible.contains(name);
        let alias = format!(" s{}", self.rng.below(100));
        (
            format!("{sql}{alias}"),
            reach == Reach::OutOfScope && !shadowed,
        )
    }

    /// A predicate, possibly with a sub-query or a shadowing CTE in an
    /// inner scope (which changes nothing about what the outer scope sees).
    fn predicate(&mut self, depth: usize, visible: &BTreeSet<&str>) -> (String, bool) {
        match self.rng.below(5) {
            0 | 1 => ((*self.rng.pick(&PLAIN_PREDICATES)).to_owned(), false),
            2 => {
                let name = self.rng.pick(&CTE_NAMES);
                (
                    format!("EXISTS (WITH {name} AS (SELECT 1) SELECT 1)"),
                    false,
                )
            }
            _ if depth < 2 => {
                let (inner, out) = self.select(depth + 1, visible);
                if self.rng.chance(50) {
                    (format!("EXISTS ({inner})"), out)
                } else {
                    (format!("1 IN (SELECT 1 FROM ({inner}))"), out)
                }
            }
            _ => ("1".to_owned(), false),
        }
    }

    /// A query and whether it reaches out of scope.
    fn select(&mut self, depth: usize, visible: &BTreeSet<&str>) -> (String, bool) {
        let mut visible = visible.clone();
        let mut sql = String::new();
        if self.rng.chance(30) {
            // A CTE in this scope: what it shadows here is its own.
            let name = *self.rng.pick(&CTE_NAMES);
            let body = if self.rng.chance(50) {
                "SELECT 1 AS name"
            } else {
                "SELECT body AS name FROM notes"
            };
            let _ = write!(sql, "WITH {name} AS ({body}) ");
            visible.insert(name);
        }
        let (from, mut out) = self.source(&visible);
        let columns = *self.rng.pick(&["*", "1", "count(*)", "typeof(1)"]);
        let _ = write!(sql, "SELECT {columns} FROM {from}");
        for _ in 0..self.rng.below(3) {
            let (join, join_out) = self.source(&visible);
            out |= join_out;
            let kind = *self
                .rng
                .pick(&[" JOIN ", " LEFT JOIN ", ", ", " CROSS JOIN "]);
            let _ = write!(sql, "{kind}{join}");
            if kind.contains("JOIN") && kind != " CROSS JOIN " {
                sql.push_str(" ON 1");
            }
        }
        if self.rng.chance(70) {
            let (predicate, predicate_out) = self.predicate(depth, &visible);
            out |= predicate_out;
            let _ = write!(sql, " WHERE {predicate}");
        }
        if self.rng.chance(30) {
            sql.push_str(" LIMIT 5");
        }
        (sql, out)
    }

    /// A write and whether it reaches out of scope (a write to anything but
    /// the module's own table does).
    fn write(&mut self) -> (String, bool) {
        let targets = [
            ("notes", "body", false),
            ("\"notes\"", "body", false),
            ("membership.members", "name", true),
            ("\"membership\".\"members\"", "name", true),
            ("membership__members", "name", true),
            ("_souk_usage_counters", "used", true),
            ("main.notes", "body", true),
            ("sqlite_master", "sql", true),
        ];
        let (target, column, mut out) = *self.rng.pick(&targets);
        let mut sql = String::new();
        if self.rng.chance(40) {
            let name = self.rng.pick(&CTE_NAMES);
            let _ = write!(sql, "WITH {name} AS (SELECT 1) ");
        }
        let none = BTreeSet::new();
        let predicate = |generator: &mut Generator, out: &mut bool| {
            let (predicate, predicate_out) = generator.predicate(1, &none);
            *out |= predicate_out;
            predicate
        };
        match self.rng.below(5) {
            0 => {
                let _ = write!(sql, "INSERT INTO {target} ({column}) VALUES ('generated')");
            }
            1 => {
                let (source, source_out) = self.source(&none);
                out |= source_out;
                let predicate = predicate(self, &mut out);
                let _ = write!(
                    sql,
                    "INSERT INTO {target} ({column}) SELECT 'generated' FROM {source} WHERE {predicate} LIMIT 1"
                );
            }
            2 => {
                let predicate = predicate(self, &mut out);
                let _ = write!(
                    sql,
                    "UPDATE {target} SET {column} = {column} WHERE {predicate}"
                );
            }
            3 => {
                let predicate = predicate(self, &mut out);
                // Deletes nothing, but not by a constant: SQLite drops an
                // `AND 0` operand while parsing, so an out-of-scope table in
                // it would never be looked at and the statement rightly runs.
                let _ = write!(
                    sql,
                    "DELETE FROM {target} WHERE {predicate} AND typeof({column}) = 'never'"
                );
            }
            _ => {
                let verb = *self.rng.pick(&[
                    "INSERT OR REPLACE INTO",
                    "REPLACE INTO",
                    "INSERT OR IGNORE INTO",
                ]);
                let _ = write!(
                    sql,
                    "{verb} {target} ({column}) VALUES ('generated') RETURNING *"
                );
            }
        }
        (sql, out)
    }

    fn case(&mut self) -> Case {
        let roll = self.rng.below(10);
        let (sql, out) = match roll {
            0..=5 => self.select(0, &BTreeSet::new()),
            6..=8 => self.write(),
            _ => {
                // The printer's blind spot with a generated payload: the
                // rewriter sees no table at all.
                let (inner, _) = self.select(1, &BTreeSet::new());
                (
                    format!(
                        "SELECT CAST(1 AS x('1)) AS a, * FROM ({}) --'))",
                        inner.replace('\'', "''")
                    ),
                    false,
                )
            }
        };
        let expect = if out { Expect::Fails } else { Expect::Harmless };
        let mut case = Case::new(sql, expect);
        if (6..=8).contains(&roll) && self.rng.chance(50) {
            case = case.route(Route::Query);
        }
        case
    }
}

/// How many statements the generator sends.
const GENERATED: usize = 400;

#[test]
fn generated_statements_stay_in_scope() {
    let seed = std::env::var("HOSTILE_SQL_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x5eed_cafe_f00d_d00d)
        .max(1);
    let class = format!("generated, HOSTILE_SQL_SEED={seed}");
    run_corpus(&class, |_| {
        let mut generator = Generator { rng: Rng(seed) };
        (0..GENERATED).map(|_| generator.case()).collect()
    });
}

// ---------------------------------------------------------------------------
// The oracle can fail

#[test]
fn the_oracle_notices_changes_leaks_and_new_files() {
    let mut session = session();
    let lab = session.lab();
    if let Some(broken) = fresh_start(lab, "oracle") {
        eprintln!("{broken}");
    }
    // A change in the victim's database (made by the victim, through its
    // own module) is seen.
    let a = lab.host.post(
        &format!("/t/{VICTIM}/m/membership/members"),
        &lab.victim.token,
        json!({"number": "V-9", "name": "Oracle Check", "email": "o@victim.example"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let now = lab.snapshot();
    let differences = lab.differences(&now);
    assert!(
        differences
            .iter()
            .any(|d| d.contains("the victim's database changed") && d.contains("Oracle Check")),
        "{differences:?}"
    );
    lab.baseline = now;
    // A new file in the data directory is seen; its -wal beside a known
    // database is not.
    let planted = lab.data_dir().join("oracle-check.sqlite");
    std::fs::write(&planted, b"x").expect("write");
    let now = lab.snapshot();
    let differences = lab.differences(&now);
    std::fs::remove_file(&planted).expect("remove");
    assert!(
        differences
            .iter()
            .any(|d| d.contains("oracle-check.sqlite")),
        "{differences:?}"
    );
    lab.baseline = lab.snapshot();
    // Markers: out-of-scope text is a leak unless the statement carried it.
    for marker in [
        "membership__member_numbering",
        "_souk_usage_counters",
        "sqlite_autoindex_membership__members_1",
        "Vesna Q7X-Secret",
    ] {
        assert_eq!(
            lab.leaks("SELECT 1", &format!("{{\"rows\": [[\"{marker}\"]]}}")),
            vec![marker.to_owned()],
            "{marker} should count as a leak"
        );
        assert!(
            lab.leaks(&format!("SELECT * FROM {marker}"), marker)
                .is_empty()
        );
    }
    let victim_id = lab.victim.id.clone();
    assert!(
        !lab.leaks("SELECT 1", &format!("no such file: {victim_id}.sqlite"))
            .is_empty()
    );
    let data_dir = lab.data_dir().display().to_string();
    assert!(!lab.leaks("SELECT 1", &data_dir).is_empty());
    // In-scope rows are not leaks, and a control statement passes the
    // whole oracle.
    let failures = lab.run(
        "oracle",
        &Case::new(
            "SELECT name FROM membership.members",
            Expect::Succeeds(Some(json!([["Mallory Own"]]))),
        ),
    );
    assert!(failures.is_empty(), "{failures:?}");
    // A statement that answers 200 fails an expectation of refusal.
    let failures = lab.run("oracle", &Case::new("SELECT 1", Expect::Refused));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("\"SELECT 1\""), "{failures:?}");
}
