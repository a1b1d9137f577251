#!/usr/bin/env bash
# Builds my-plugin.wasm, a WebAssembly component for Weir's
# {{world}}-plugin world (weir:plugin@0.2.0, wit/), from app.py with
# componentize-py. Uses $COMPONENTIZE_PY, else a componentize-py on PATH,
# else installs the pinned version into .venv/ (once, from PyPI).
set -euo pipefail
cd "$(dirname "$0")"
VERSION=0.25.1
tool=${COMPONENTIZE_PY:-}
if [ -z "$tool" ]; then
    if command -v componentize-py >/dev/null && [ "$(componentize-py --version | awk '{print $2}')" = "$VERSION" ]; then
        tool=componentize-py
    else
        if [ ! -x .venv/bin/componentize-py ]; then
            echo "build.sh: installing componentize-py $VERSION into .venv/" >&2
            python3 -m venv .venv
            .venv/bin/pip install --quiet --disable-pip-version-check "componentize-py==$VERSION"
        fi
        tool=.venv/bin/componentize-py
    fi
fi
"$tool" -d wit -w {{world}}-plugin componentize app -p . -o my-plugin.wasm
echo "built $(pwd)/my-plugin.wasm"
