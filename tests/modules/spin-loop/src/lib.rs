//! Test module `spin-loop`: every request spins forever without calling the
//! host, so only the host's call timeout (epoch interruption) can end it.

use souk_sdk::{Module, Request, Response};

/// Spins on every request.
struct SpinLoop;

impl Module for SpinLoop {
    fn handle(_request: Request) -> Response {
        let mut turns: u64 = 0;
        loop {
            // `black_box` keeps the loop body opaque to the optimiser.
            turns = std::hint::black_box(turns.wrapping_add(1));
        }
    }
}

souk_sdk::export_module!(SpinLoop);
