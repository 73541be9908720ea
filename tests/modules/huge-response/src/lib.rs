//! Test module `huge-response`: answers with a body of `?bytes=N` bytes
//! (default 50 000 000), to prove the host caps response sizes.

use souk_sdk::{IntoResponse, Module, Request, Response};

/// Body size when the request does not say.
const DEFAULT_BYTES: usize = 50_000_000;

/// Answers with as many bytes as asked for.
struct HugeResponse;

impl Module for HugeResponse {
    fn handle(request: Request) -> Response {
        match request.query_parsed::<usize>("bytes") {
            Ok(bytes) => Response::new(200)
                .with_header("content-type", "application/octet-stream")
                .with_body(vec![b'x'; bytes.unwrap_or(DEFAULT_BYTES)]),
            Err(problem) => problem.into_response(),
        }
    }
}

souk_sdk::export_module!(HugeResponse);
