//! Writes `$OUT_DIR/generate.rs`: the `__weir_generate!` macro that the
//! `export_*!` macros expand to. It calls `wit_bindgen::generate!` with the
//! *absolute* path of the `weir:plugin@0.2.0` WIT package, so a plugin crate
//! (wherever it lives) needs neither its own copy of the WIT nor a relative
//! path to it: the bindings are generated inside the plugin crate (one world
//! per plugin), from the copy of the package inside this crate (`wit/`, the
//! released contract byte for byte: a host test pins both digests), so the
//! SDK needs nothing outside itself.
//!
//! `WEIR_WIT_DIR` overrides the location.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=WEIR_WIT_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let wit = match env::var_os("WEIR_WIT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir.join("wit"),
    };
    let wit = wit.canonicalize().unwrap_or_else(|e| {
        panic!(
            "weir-plugin-sdk: cannot find the weir:plugin@0.2.0 WIT package at {} ({e}); \
             it ships inside the SDK crate (wit/), or set WEIR_WIT_DIR",
            wit.display()
        )
    });
    if !wit.join("plugin.wit").is_file() {
        panic!("weir-plugin-sdk: {} has no plugin.wit", wit.display());
    }
    println!("cargo:rerun-if-changed={}", wit.display());
    let Some(path) = wit.to_str() else {
        panic!(
            "weir-plugin-sdk: the WIT path {} is not UTF-8",
            wit.display()
        );
    };
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("generate.rs");
    let code = format!(
        r#"/// Generates the bindings of one `weir:plugin@0.2.0` world in the calling
/// crate. Internal: use `export_router!`, `export_admission!` or `export_mutator!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_generate {{
    ($world:tt) => {{
        $crate::__private::wit_bindgen::generate!({{
            path: {path:?},
            world: $world,
            runtime_path: "::weir_plugin_sdk::__private::wit_bindgen::rt",
        }});
    }};
}}
"#
    );
    fs::write(&out, code)
        .unwrap_or_else(|e| panic!("weir-plugin-sdk: cannot write {}: {e}", out.display()));
}
