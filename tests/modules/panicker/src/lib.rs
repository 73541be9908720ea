//! Test module `panicker`: every request panics, which traps the instance;
//! the host must answer with an error and keep serving other calls.

use souk_sdk::{Module, Request, Response};

/// Panics on every request.
struct Panicker;

impl Module for Panicker {
    fn handle(request: Request) -> Response {
        panic!(
            "the panicker test module panics on every request ({} {})",
            request.method(),
            request.path()
        )
    }
}

souk_sdk::export_module!(Panicker);
