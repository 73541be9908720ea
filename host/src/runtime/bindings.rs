//! Host-side bindings, one module per released WIT API version.
//!
//! Each version of `wit/since_v*/` gets its own `bindgen!` here. When a new
//! API version is released, add a module beside `v0_1_0` and convert its
//! types; never change an existing one, so modules built against an older
//! API keep linking.

/// API 0.1.0 (`wit/since_v0.1.0`).
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "module",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}
