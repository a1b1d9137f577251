#!/usr/bin/env bash
# Builds Weir's example plugins as WebAssembly
# components, copies the examples to dist/<name>.wasm and prints the dist
# directory. The host's tests call this script.
set -euo pipefail
cd "$(dirname "$0")"

examples=(gpu-node-selector team-resources approved-registries team-quota tag-router)

rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2 >&2

# Two shared cores: build at low priority, one cargo at a time.
nice -n 10 cargo build --release --target wasm32-wasip2 >&2

out=target/wasm32-wasip2/release
is_component() {
    # A component's preamble: "\0asm", version 0x0d, layer 1.
    [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "0061736d0d000100" ]
}

mkdir -p dist
for name in "${examples[@]}"; do
    wasm="$out/weir_plugin_${name//-/_}.wasm"
    is_component "$wasm" || { echo "build.sh: $wasm is not a WebAssembly component" >&2; exit 1; }
    cp "$wasm" "dist/$name.wasm"
done

echo "$(pwd)/dist"
