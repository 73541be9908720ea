//! Host-side bindings, one module per released WIT API version.
//!
//! Each version of `wit/since_v*/` gets its own `bindgen!` here. The
//! capabilities ([`crate::capabilities`]) implement and link the imports of
//! every version (their interfaces have distinct versioned names, e.g.
//! `souk:module/db@0.1.0` and `souk:module/db@0.2.0`), and the runtime calls
//! the `guest` export through them. This module sits below both, so neither
//! imports the other for the bindings. When a new API version is released,
//! add a module here and convert its types in each capability; never change
//! an existing one, so modules built against an older API keep linking.

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

/// API 0.3.0 (`wit/since_v0.3.0`): 0.2.0 plus the precise caller, replay
/// flags, `files`, `events`, `notify`, `jobs`, and the `run-job` and
/// `on-event` exports.
pub mod v0_3_0 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.3.0",
        world: "module",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}
