//! Test module `bad-migration`: migration `0001_ok` is sound; `0002_broken`
//! creates a table and then inserts into a column that does not exist,
//! which parses but fails when it runs. Installing it must fail and leave
//! no trace: neither table, nor a ledger entry for `0001_ok`.

use souk_sdk::{Migration, Module, Request, Response, Router};

/// A module whose install always fails in its second migration.
struct BadMigration;

impl Module for BadMigration {
    fn migrations() -> Vec<Migration> {
        vec![
            Migration::new(
                "0001_ok",
                "CREATE TABLE ok_items (id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
                "DROP TABLE ok_items",
            ),
            Migration::new(
                "0002_broken",
                "CREATE TABLE broken_items (id INTEGER PRIMARY KEY, label TEXT NOT NULL);
                INSERT INTO broken_items (missing_column) VALUES ('never stored')",
                "DROP TABLE broken_items",
            ),
        ]
    }

    fn handle(request: Request) -> Response {
        // No routes: the module never gets far enough to serve one.
        Router::new().handle(request)
    }
}

souk_sdk::export_module!(BadMigration);
