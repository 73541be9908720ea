//! Test module `deep-recursion`: every request recurses until the stack
//! runs out, so the host's stack limit must turn it into a trap.

use std::hint::black_box;

use souk_sdk::{Module, Request, Response};

/// Recurses on every request.
struct DeepRecursion;

/// Recurses with a 256-byte frame. The work after the call keeps it from
/// being a tail call, `black_box` keeps the frame and the exit test opaque,
/// and `inline(never)` keeps the recursion a real call.
#[inline(never)]
fn descend(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return frame[0];
    }
    descend(black_box(depth + 1)).wrapping_add(frame[31])
}

impl Module for DeepRecursion {
    fn handle(_request: Request) -> Response {
        let depth = descend(0);
        Response::text(200, format!("returned from depth {depth}"))
    }
}

souk_sdk::export_module!(DeepRecursion);
