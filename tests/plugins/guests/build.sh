#!/usr/bin/env bash
# Builds the Python and JavaScript test plugins of this folder as WebAssembly
# components with pinned toolchains, installing the toolchains first if they
# are missing (from PyPI and npm, into ~/.cache/weir/guest/<tool>-<version>,
# or $WEIR_CACHE/guest/...). Prints the directory of the built .wasm files.
#
#   python-hostile.wasm  componentize-py, from python/hostile/app.py
#   js-hostile.wasm      componentize-js, from js/hostile.js
#   python-<example>.wasm, js-<example>.wasm  the example policies written in
#       Python and JavaScript (weir:plugin@0.2.0), from
#       plugins/examples/<example>/{python/app.py,js/plugin.js}; they use
#       the SDKs in plugins/sdk/python and plugins/sdk/js
#
#   toolchains.env       where the pinned toolchains are (COMPONENTIZE_PY, the
#       componentize-py executable; COMPONENTIZE_JS_BIN, the directory of
#       componentize-js), for tests that build plugins themselves
#       (tests/tests/plugin_new.rs)
#
# A component is rebuilt only when its source or the WIT is newer than it.
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
wit=$(cd ../../../wit/v0.1.0 && pwd)
wit2=$(cd ../../../wit/v0.2.0 && pwd)
examples=$(cd ../../../plugins/examples && pwd)
sdk_python=$(cd ../../../plugins/sdk/python && pwd)
sdk_js=$(cd ../../../plugins/sdk/js && pwd)

COMPONENTIZE_PY=0.25.1
COMPONENTIZE_JS=0.23.0
cache=${WEIR_CACHE:-$HOME/.cache/weir}/guest
py=$cache/componentize-py-$COMPONENTIZE_PY
js=$cache/componentize-js-$COMPONENTIZE_JS

if [ ! -x "$py/bin/componentize-py" ]; then
    echo "guests/build.sh: installing componentize-py $COMPONENTIZE_PY into $py" >&2
    rm -rf "$py"
    python3 -m venv "$py" >&2
    "$py/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY" >&2
fi
if [ ! -x "$js/node_modules/.bin/componentize-js" ]; then
    echo "guests/build.sh: installing componentize-js $COMPONENTIZE_JS into $js" >&2
    rm -rf "$js"
    mkdir -p "$js"
    echo '{"private": true}' > "$js/package.json"
    (cd "$js" && npm install --silent --no-audit --no-fund --save-exact \
        "@bytecodealliance/componentize-js@$COMPONENTIZE_JS") >&2
fi

mkdir -p dist
printf 'COMPONENTIZE_PY=%s\nCOMPONENTIZE_JS_BIN=%s\n' "$py/bin/componentize-py" "$js/node_modules/.bin" > dist/toolchains.env
stale() { # stale OUTPUT INPUT...: OUTPUT is missing or older than an input
    local out=$1; shift
    [ -f "$out" ] || return 0
    [ -n "$(find "$@" -newer "$out" -print -quit)" ]
}

if stale dist/python-hostile.wasm python/hostile/app.py "$wit"; then
    (cd python/hostile && nice -n 10 "$py/bin/componentize-py" -d "$wit" -w admission-plugin \
        componentize app -o "$here/dist/python-hostile.wasm") >&2
fi
# Every WASI feature off: the component then imports only weir:plugin/*
# (by default it would import wasi:http, which Weir does not give plugins).
if stale dist/js-hostile.wasm js/hostile.js "$wit"; then
    nice -n 10 "$js/node_modules/.bin/componentize-js" js/hostile.js -w "$wit" -n admission-plugin \
        -d stdio random clocks http fetch-event -o dist/js-hostile.wasm >&2
fi
for example in approved-registries:admission-plugin gpu-node-selector:mutator-plugin; do
    name=${example%%:*}
    world=${example#*:}
    if stale "dist/python-$name.wasm" "$examples/$name/python/app.py" "$sdk_python/weir_plugin" "$wit2"; then
        (cd "$examples/$name/python" && nice -n 10 "$py/bin/componentize-py" -d "$wit2" -w "$world" \
            componentize app -p . -p "$sdk_python" -o "$here/dist/python-$name.wasm") >&2
    fi
    if stale "dist/js-$name.wasm" "$examples/$name/js/plugin.js" "$sdk_js/weir-plugin.js" "$wit2"; then
        # Run from plugins/: componentize-js reads a module's imports from
        # under its working directory, and the examples import ../../../sdk/js.
        (cd "$examples/.." && nice -n 10 "$js/node_modules/.bin/componentize-js" \
            "examples/$name/js/plugin.js" -w "$wit2" -n "$world" \
            -d stdio random clocks http fetch-event -o "$here/dist/js-$name.wasm") >&2
    fi
done
echo "$here/dist"
