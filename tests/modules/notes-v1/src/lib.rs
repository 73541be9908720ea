//! Test module `notes`, built in two releases from this one file for
//! upgrade tests:
//!
//! - 1.0.0 (crate `souk-test-notes-v1`): migration `0001_notes`.
//! - 2.0.0 (crate `souk-test-notes-v2`, feature `tags`): adds migration
//!   `0002_tags`, tags on notes, and an upgrade hook that records the
//!   version it upgraded from in `upgrades`.
//!
//! Routes: `GET /notes`, `POST /notes` (`{"body": "...", "tags": [...]}`;
//! `tags` only in 2.0.0), `GET /upgrades` (rows written by upgrade hooks)
//! and `GET /whoami` (the call context and the headers the module was
//! given, so tests can check the caller arrives and no token does).

use serde::{Deserialize, Serialize};
use serde_json::json;
#[cfg(feature = "tags")]
use souk_sdk::HookError;
use souk_sdk::db::{self, DecodeError, FromRow, Row};
use souk_sdk::{Migration, Module, Problem, Request, Response, Router, context, params};

/// Notes, and the upgrades that reached this module.
const NOTES: Migration = Migration::new(
    "0001_notes",
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE upgrades (
        id INTEGER PRIMARY KEY,
        from_version TEXT NOT NULL,
        to_version TEXT NOT NULL
    )",
    "DROP TABLE upgrades;
    DROP TABLE notes",
);

/// Tags on notes (2.0.0).
#[cfg(feature = "tags")]
const TAGS: Migration = Migration::new(
    "0002_tags",
    "CREATE TABLE note_tags (
        note_id INTEGER NOT NULL REFERENCES notes (id),
        tag TEXT NOT NULL,
        PRIMARY KEY (note_id, tag)
    )",
    "DROP TABLE note_tags",
);

/// The notes test module.
struct Notes;

impl Module for Notes {
    fn migrations() -> Vec<Migration> {
        #[cfg_attr(not(feature = "tags"), allow(unused_mut))]
        let mut migrations = vec![NOTES];
        #[cfg(feature = "tags")]
        migrations.push(TAGS);
        migrations
    }

    #[cfg(feature = "tags")]
    fn upgrade(from: &str) -> Result<(), HookError> {
        db::execute(
            "INSERT INTO upgrades (from_version, to_version) VALUES (?1, ?2)",
            params![from, env!("CARGO_PKG_VERSION")],
        )?;
        Ok(())
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/notes", list_notes)
            .post("/notes", create_note)
            .get("/upgrades", list_upgrades)
            .get("/whoami", whoami)
            .handle(request)
    }
}

/// A note as returned by the API.
#[derive(Debug, Serialize)]
struct Note {
    id: i64,
    body: String,
    #[cfg(feature = "tags")]
    tags: Vec<String>,
}

impl FromRow for Note {
    fn from_row(row: &Row<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            id: row.get("id")?,
            body: row.get("body")?,
            #[cfg(feature = "tags")]
            tags: Vec::new(),
        })
    }
}

/// The body of `POST /notes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNote {
    body: String,
    #[cfg(feature = "tags")]
    #[serde(default)]
    tags: Vec<String>,
}

/// `GET /notes`: every note, oldest first.
fn list_notes(_request: &Request) -> Result<Response, Problem> {
    #[cfg_attr(not(feature = "tags"), allow(unused_mut))]
    let mut notes: Vec<Note> = db::query_as("SELECT id, body FROM notes ORDER BY id", params![])?;
    #[cfg(feature = "tags")]
    {
        let tags: Vec<(i64, String)> =
            db::query_as("SELECT note_id, tag FROM note_tags ORDER BY tag", params![])?;
        for note in &mut notes {
            note.tags = tags
                .iter()
                .filter(|(note_id, _)| *note_id == note.id)
                .map(|(_, tag)| tag.clone())
                .collect();
        }
    }
    Ok(Response::json(200, &json!({ "notes": notes })))
}

/// `POST /notes`: 201 with the new note.
fn create_note(request: &Request) -> Result<Response, Problem> {
    #[cfg_attr(not(feature = "tags"), allow(unused_mut))]
    let mut new_note = request.json::<NewNote>()?;
    if new_note.body.trim().is_empty() {
        return Err(Problem::unprocessable("`body` must not be empty"));
    }
    let changes = db::execute(
        "INSERT INTO notes (body) VALUES (?1)",
        params![&new_note.body],
    )?;
    let id = changes
        .last_insert_id
        .ok_or_else(|| Problem::internal("the host reported no id for the inserted note"))?;
    #[cfg(feature = "tags")]
    {
        new_note.tags.sort();
        new_note.tags.dedup();
        for tag in &new_note.tags {
            db::execute(
                "INSERT INTO note_tags (note_id, tag) VALUES (?1, ?2)",
                params![id, tag],
            )?;
        }
    }
    let note = Note {
        id,
        body: new_note.body,
        #[cfg(feature = "tags")]
        tags: new_note.tags,
    };
    Ok(Response::json(201, &note))
}

/// `GET /upgrades`: what upgrade hooks recorded, oldest first.
fn list_upgrades(_request: &Request) -> Result<Response, Problem> {
    let upgrades: Vec<(String, String)> = db::query_as(
        "SELECT from_version, to_version FROM upgrades ORDER BY id",
        params![],
    )?;
    let upgrades: Vec<_> = upgrades
        .into_iter()
        .map(|(from, to)| json!({ "from_version": from, "to_version": to }))
        .collect();
    Ok(Response::json(200, &json!({ "upgrades": upgrades })))
}

/// `GET /whoami`: the call context and every header the module received.
fn whoami(request: &Request) -> Response {
    Response::json(
        200,
        &json!({ "context": context(), "headers": request.headers() }),
    )
}

souk_sdk::export_module!(Notes);
