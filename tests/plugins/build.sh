#!/usr/bin/env bash
# Builds the test plugins (guest components for host/src/plugin/tests.rs) and
# prints the directory that holds the .wasm files.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2 >&2
echo "$(pwd)/target/wasm32-wasip2/release"
