//! Host-side bindings, one module per released WIT API version.
//!
//! Each version of `wit/since_v*/` gets its own `bindgen!` here, and the
//! runtime links every one of them into its one `Linker` (their interfaces
//! have distinct versioned names, e.g. `souk:module/db@0.1.0` and
//! `souk:module/db@0.2.0`). When a new API version is released, add a module
//! here and convert its types; never change an existing one, so modules
//! built against an older API keep linking.
//!
//! The host interfaces that several versions share (`db`, `log`,
//! `context`) are implemented once, over each version's generated types, by
//! a macro next to their logic.

/// API 0.1.0 (`wit/since_v0.1.0`).
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "module",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// API 0.2.0 (`wit/since_v0.2.0`): 0.1.0 plus `entitlements`.
pub mod v0_2_0 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.2.0",
        world: "module",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}
