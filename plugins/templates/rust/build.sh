#!/usr/bin/env bash
# Builds my-plugin.wasm, a WebAssembly component for Weir's
# {{world}}-plugin world, with the toolchain of rust-toolchain.toml.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/my_plugin.wasm" my-plugin.wasm
echo "built $(pwd)/my-plugin.wasm"
