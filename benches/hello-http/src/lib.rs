//! The bare-runtime baseline of `scripts/bench`'s goal P1: a wasi:http
//! proxy component that answers every request with `200` and the body
//! `hello`, served by `wasmtime serve`. It does as little as a component
//! can, so the comparison shows what the runtime itself costs per request.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::new();
        // The status of a new response is 200.
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("a new response has a body");
        ResponseOutparam::set(response_out, Ok(response));
        let out = body.write().expect("the body's stream is taken once");
        out.blocking_write_and_flush(b"hello")
            .expect("writing five bytes to the response");
        drop(out);
        OutgoingBody::finish(body, None).expect("finishing the response");
    }
}

wasi::http::proxy::export!(Hello);
