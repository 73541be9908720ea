//! Picks the module API the component's bindings target, as a `cfg` the
//! crate's code reads:
//!
//! - `souk_api_v0_3`: a wasm32 component for API 0.3.0 (the default);
//! - `souk_api_v0_2`: a wasm32 component for API 0.2.0 (feature `api-0-2`);
//! - neither: a native build (unit tests, lints), where there is no host.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(souk_api_v0_2)");
    println!("cargo::rustc-check-cfg=cfg(souk_api_v0_3)");
    println!("cargo::rerun-if-changed=build.rs");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    let v0_2 = std::env::var_os("CARGO_FEATURE_API_0_2").is_some();
    if wasm && v0_2 {
        println!("cargo::rustc-cfg=souk_api_v0_2");
    } else if wasm {
        println!("cargo::rustc-cfg=souk_api_v0_3");
    }
}
