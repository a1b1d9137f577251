//! Records the commit the benchmarks were built from, and whether the tree
//! had uncommitted changes then, so a result names the code it measured even
//! when the binary is run later from another checkout (`main.rs`,
//! `machine`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn main() {
    // Again when HEAD moves, the index changes, or any source the binary
    // is built from changes (the benchmarks link the host).
    for path in [
        "../.git/HEAD",
        "../.git/index",
        "../host",
        "src",
        "../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .map(|s| if s.is_empty() { "false" } else { "true" })
        .unwrap_or("");
    println!("cargo:rustc-env=WEIR_BENCH_BUILT_FROM={commit}");
    println!("cargo:rustc-env=WEIR_BENCH_BUILT_DIRTY={dirty}");
}
