#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v4) from the Go module proxy, caching the binary by
# version under ~/.cache/weir/helm/v<version>/bin, and prints the binary's path
# on stdout (the build's output goes to stderr). A second call with the same
# version returns at once. .ci/run exports the path as WEIR_HELM for
# tests/tests/deploy.rs and runs `helm lint` / `helm template` on deploy/helm/weir.
set -euo pipefail
# WEIR_HELM_VERSION: another 4.x release (the module path below is helm.sh/helm/v4).
HV=${WEIR_HELM_VERSION:-4.3.2}
OUT=$HOME/.cache/weir/helm/v$HV/bin
if [ -x "$OUT/helm" ]; then
  echo "$OUT/helm"; exit 0
fi
mkdir -p "$OUT"
# helm's go.mod has no replace directives, so `go install module@version`
# builds it as released (its own go.sum pins every dependency). The -X flags
# are what helm's Makefile sets for a tagged build, so `helm version` names it.
V=helm.sh/helm/v4/internal/version
GOBIN="$OUT" CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X $V.version=v$HV -X $V.metadata= -X $V.gitTreeState=clean" \
  "helm.sh/helm/v4/cmd/helm@v$HV" >&2
"$OUT/helm" version --short >&2
echo "$OUT/helm"
