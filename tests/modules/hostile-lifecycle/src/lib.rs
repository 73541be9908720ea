//! Test module `hostile-lifecycle`: one component whose lifecycle misbehaves
//! in the way its slug names, so the host's tests can try every shape that
//! used to make a module impossible to remove, or leave traces of a failed
//! install. Tests make the variants by editing the slug in `module.yaml`
//! (the component reads its slug from the call context):
//!
//! | slug contains | behaviour |
//! | --- | --- |
//! | `refuse-uninstall` | the uninstall hook returns an error |
//! | `trap-uninstall` | the uninstall hook panics (a trap) |
//! | `loop-uninstall` | the uninstall hook loops until its deadline |
//! | `failing-down` | the down SQL of `0001_items` fails when it runs (missing table) |
//! | `foreign-down` | the down SQL of `0001_items` names `membership.members` (refused at install) |
//! | `late-foreign-down` | versions after 1.0.0 add `0002_notes`, whose down SQL names `membership.members` (refused at upgrade) |
//! | `fail-install` | the install hook writes a row, then returns an error |
//! | `loop-install` | the install hook writes a row, then loops until its deadline |
//! | `drift` | versions other than 1.0.0 change the SQL of `0001_items` and add `0002_notes` |
//!
//! Any other slug is well behaved. Every variant has the tables `items` and
//! `item_tags` (a foreign key to `items`) and the index `item_tags_by_tag`;
//! the install hook seeds one item with a tag.
//!
//! Routes: `GET /items` → `{"items": [{"id", "body"}]}`; `POST /items` with
//! a text body stores it → `201 {"id"}`.

use serde_json::json;
use souk_sdk::{HookError, Migration, Module, Request, Response, Router, context, db, params};

const UP: &str = "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE item_tags (
        item_id INTEGER NOT NULL REFERENCES items (id),
        tag TEXT NOT NULL
    );
    CREATE INDEX item_tags_by_tag ON item_tags (tag)";

/// What `drift` versions after 1.0.0 claim `0001_items` always was.
const DRIFTED_UP: &str =
    "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL, extra TEXT);
    CREATE TABLE item_tags (
        item_id INTEGER NOT NULL REFERENCES items (id),
        tag TEXT NOT NULL
    );
    CREATE INDEX item_tags_by_tag ON item_tags (tag)";

const DOWN: &str = "DROP TABLE item_tags; DROP TABLE items";

/// Fails when it runs: the table is in the module's namespace but missing.
const FAILING_DOWN: &str = "DROP TABLE item_tags; DELETE FROM vanished; DROP TABLE items";

/// Names another module's table: the scope refuses it.
const FOREIGN_DOWN: &str = "DROP TABLE item_tags; DELETE FROM membership.members; DROP TABLE items";

const NOTES: Migration = Migration::new(
    "0002_notes",
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    "DROP TABLE notes",
);

/// `0002_notes` of `late-foreign-down` after 1.0.0: its down SQL names
/// another module's table.
const FOREIGN_NOTES: Migration = Migration::new(
    "0002_notes",
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    "DELETE FROM membership.members; DROP TABLE notes",
);

/// The variant this instance is, by its slug.
fn is(shape: &str) -> bool {
    context().module_slug.contains(shape)
}

/// Burns the call's whole budget; the host's deadline stops it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// A module that misbehaves as its slug says.
struct HostileLifecycle;

impl Module for HostileLifecycle {
    fn migrations() -> Vec<Migration> {
        let first_release = context().module_version == "1.0.0";
        let late = is("late-foreign-down");
        let drifted = is("drift") && !first_release;
        let up = if drifted { DRIFTED_UP } else { UP };
        let down = if is("failing-down") {
            FAILING_DOWN
        } else if is("foreign-down") && !late {
            FOREIGN_DOWN
        } else {
            DOWN
        };
        let mut migrations = vec![Migration::new("0001_items", up, down)];
        if drifted {
            migrations.push(NOTES);
        }
        if late && !first_release {
            migrations.push(FOREIGN_NOTES);
        }
        migrations
    }

    fn install() -> Result<(), HookError> {
        let item = db::execute(
            "INSERT INTO items (body) VALUES (?1)",
            params!["seeded by the install hook"],
        )?;
        db::execute(
            "INSERT INTO item_tags (item_id, tag) VALUES (?1, ?2)",
            params![item.last_insert_id.unwrap_or(1), "seed"],
        )?;
        if is("fail-install") {
            return Err(HookError::new(
                "hostile-lifecycle refuses to finish installing",
            ));
        }
        if is("loop-install") {
            spin();
        }
        Ok(())
    }

    fn uninstall() -> Result<(), HookError> {
        if is("refuse-uninstall") {
            return Err(HookError::new("hostile-lifecycle refuses to be removed"));
        }
        if is("trap-uninstall") {
            panic!("hostile-lifecycle traps in its uninstall hook");
        }
        if is("loop-uninstall") {
            spin();
        }
        Ok(())
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/items", list_items)
            .post("/items", add_item)
            .handle(request)
    }
}

fn list_items(_: &Request) -> Response {
    match db::query("SELECT id, body FROM items ORDER BY id", &[]) {
        Ok(rows) => {
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    let id: i64 = row.get("id").unwrap_or_default();
                    let body: String = row.get("body").unwrap_or_default();
                    json!({"id": id, "body": body})
                })
                .collect();
            Response::json(200, &json!({ "items": items }))
        }
        Err(e) => Response::text(500, e.to_string()),
    }
}

fn add_item(request: &Request) -> Response {
    let body = String::from_utf8_lossy(request.body()).into_owned();
    match db::execute("INSERT INTO items (body) VALUES (?1)", params![body]) {
        Ok(changes) => Response::json(201, &json!({ "id": changes.last_insert_id })),
        Err(e) => Response::text(500, e.to_string()),
    }
}

souk_sdk::export_module!(HostileLifecycle);
