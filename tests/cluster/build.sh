#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok) from the Go module proxy, caching the binaries by version
# under ~/.cache/weir/k8s/<version>/bin. A second call with the same versions is a no-op.
set -euo pipefail
KV=${WEIR_K8S_VERSION:-1.35.4}
EV=${WEIR_ETCD_VERSION:-3.6.16}
KWOKV=${WEIR_KWOK_VERSION:-0.8.0}
SV=v0.${KV#1.}
OUT=${WEIR_K8S_BIN:-$HOME/.cache/weir/k8s/v$KV-etcd$EV-kwok$KWOKV/bin}
mkdir -p "$OUT"
if [ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/kube-controller-manager" ] && [ -x "$OUT/kube-scheduler" ] \
   && [ -x "$OUT/etcd" ] && [ -x "$OUT/kwok" ]; then
  echo "$OUT"; exit 0
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

if [ ! -x "$OUT/etcd" ]; then
  mkdir -p "$W/etcd" && cd "$W/etcd"
  go mod init local/etcdbuild >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@v$EV" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3 >&2
fi

if [ ! -x "$OUT/kwok" ]; then
  GOBIN="$OUT" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOKV" >&2
fi

if [ ! -x "$OUT/kube-apiserver" ] || [ ! -x "$OUT/kube-controller-manager" ] || [ ! -x "$OUT/kube-scheduler" ]; then
  mkdir -p "$W/k8s" && cd "$W/k8s"
  printf 'module local/k8sbin\n\ngo 1.26\n' > go.mod
  GOMOD=$(go mod download -json "k8s.io/kubernetes@v$KV" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$GOMOD"); do
    go mod edit -replace="$m=$m@$SV"
  done
  grep -E '^godebug ' "$GOMOD" >> go.mod || true
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$KV" \
               "k8s.io/kubernetes/cmd/kube-controller-manager@v$KV" \
               "k8s.io/kubernetes/cmd/kube-scheduler@v$KV" >&2
  MIN=${KV#1.}; MIN=${MIN%%.*}
  V=k8s.io/component-base/version
  LDF="-s -w -X $V.gitVersion=v$KV -X $V.gitMajor=1 -X $V.gitMinor=$MIN -X $V.gitTreeState=clean \
 -X $V.buildDate=1970-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=v$KV"
  CGO_ENABLED=0 go build -trimpath -ldflags "$LDF" -o "$OUT/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler >&2
fi
echo "$OUT"
