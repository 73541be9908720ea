//! Test module `bad-install`: its migration is sound, but its install hook
//! writes a row and then fails. Installing it must fail and roll back the
//! migration and the row.

use souk_sdk::{HookError, Migration, Module, Request, Response, Router, db, params};

/// A module whose install hook always fails.
struct BadInstall;

impl Module for BadInstall {
    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "0001_seeds",
            "CREATE TABLE seeds (id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
            "DROP TABLE seeds",
        )]
    }

    fn install() -> Result<(), HookError> {
        db::execute(
            "INSERT INTO seeds (label) VALUES (?1)",
            params!["written before the failure"],
        )?;
        Err(HookError::new(
            "seed failed: the bad-install test module always refuses to install",
        ))
    }

    fn handle(request: Request) -> Response {
        // No routes: the module is never installed.
        Router::new().handle(request)
    }
}

souk_sdk::export_module!(BadInstall);
