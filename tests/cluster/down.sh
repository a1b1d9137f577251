#!/usr/bin/env bash
# Stops the test control plane started by up.sh from STATE_DIR (SIGTERM, SIGKILL after 10 s) and
# removes its etcd data and kubeconfig. Keeps the binaries cache, the PKI and the logs.
#
#   tests/cluster/down.sh [STATE_DIR]   (default ${WEIR_K8S_STATE:-$HOME/.cache/weir/k8s-state})
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

ST=$(state_dir "${1-}")
if [ ! -d "$ST" ]; then
  log "no state directory $ST: nothing to stop"
  exit 0
fi
exec 9>"$ST/.lock"
flock -w 300 9 || die "another up.sh/down.sh holds $ST/.lock"

if [ -f "$ST/pids" ] || [ -n "$(stray_pids "$ST")" ]; then
  log "stopping the cluster in $ST"
  stop_all "$ST"
else
  log "no cluster running from $ST"
fi
rm -rf "$ST/etcd"
rm -f "$ST/admin.kubeconfig" "$ST/admin.kubeconfig.tmp" "$ST/ports"
log "stopped"
