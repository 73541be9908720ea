//! Test module `memory-bomb`: every request allocates 1 MiB chunks and
//! writes to each of their pages until the host's memory cap stops it (the
//! failed allocation aborts, which traps).

use souk_sdk::{Module, Request, Response};

/// Bytes per allocation.
const CHUNK_BYTES: usize = 1 << 20;
/// One WebAssembly page; writing one byte per page touches all of them.
const PAGE_BYTES: usize = 64 * 1024;

/// Hoards memory on every request.
struct MemoryBomb;

impl Module for MemoryBomb {
    fn handle(_request: Request) -> Response {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0_u8; CHUNK_BYTES];
            chunk
                .iter_mut()
                .step_by(PAGE_BYTES)
                .for_each(|byte| *byte = 0xA5);
            // `black_box` keeps the writes and the hoard from being optimised away.
            hoard.push(std::hint::black_box(chunk));
            std::hint::black_box(&hoard);
        }
    }
}

souk_sdk::export_module!(MemoryBomb);
