#!/usr/bin/env bash
# Smoke test of a running test control plane (start it with up.sh first). curl only, no kubectl.
#
#   tests/cluster/smoke.sh [STATE_DIR]   (default ${WEIR_K8S_STATE:-$HOME/.cache/weir/k8s-state})
#
# In a fresh namespace smoke-<random> it creates three batch/v1 Jobs and waits (60 s each) for:
#   ok      (no annotation)                    -> Job condition Complete=True
#   fail    (weir.dev/test-outcome: fail,      -> Job condition Failed=True, reason BackoffLimitExceeded,
#            backoffLimit 0)                      pod container terminated exit code 1 reason Error
#   unsched (nodeSelector no node has)         -> pod Pending with PodScheduled=False
# then deletes the namespace and waits for it to be gone (namespace + garbage collection).
# JSON is matched with grep on the apiserver's compact output (Go field order: "type" then "status").
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

ST=$(state_dir "${1-}")
api_init "$ST/admin.kubeconfig"
TIMEOUT=${WEIR_K8S_SMOKE_TIMEOUT:-60}
NS=smoke-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
T0=$SECONDS
CREATED_NS=0
DONE=0

cleanup() {
  if [ "$CREATED_NS" = 1 ] && [ "$DONE" != 1 ]; then
    echo "----- diagnostics: jobs and pods in $NS -----" >&2
    if api GET "/apis/batch/v1/namespaces/$NS/jobs" 2>/dev/null; then echo "$API_BODY" >&2; fi
    if api GET "/api/v1/namespaces/$NS/pods" 2>/dev/null; then echo "$API_BODY" >&2; fi
    echo "-----" >&2
    api DELETE "/api/v1/namespaces/$NS" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

must() { # WHAT EXPECTED_STATUS... -- check the last api call
  local what=$1 s; shift
  for s in "$@"; do [ "$API_STATUS" = "$s" ] && return 0; done
  die "$what: HTTP $API_STATUS: $API_BODY"
}

# wait_for WHAT COMMAND... -> poll every 0.5 s for up to $TIMEOUT s.
wait_for() {
  local what=$1 start=$SECONDS; shift
  until "$@"; do
    [ $((SECONDS - start)) -lt "$TIMEOUT" ] || die "timed out after ${TIMEOUT}s waiting for $what"
    sleep 0.5
  done
  log "smoke: $what ($((SECONDS - start))s)"
}

job_json() { # NAME ANNOTATIONS_JSON NODESELECTOR_JSON
  cat <<EOF
{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"$1"},
 "spec":{"backoffLimit":0,"template":{"metadata":{"annotations":$2},
  "spec":{"restartPolicy":"Never","nodeSelector":$3,
   "containers":[{"name":"main","image":"weir.invalid/smoke:0","command":["true"]}]}}}}
EOF
}

api GET /readyz || die "apiserver $API_SERVER unreachable (is the cluster up?)"
must "apiserver /readyz" 200

api POST /api/v1/namespaces '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"'"$NS"'"}}'
must "create namespace $NS" 201
CREATED_NS=1
log "smoke: namespace $NS"

api POST "/apis/batch/v1/namespaces/$NS/jobs" "$(job_json ok '{}' '{}')"
must "create job ok" 201
api POST "/apis/batch/v1/namespaces/$NS/jobs" "$(job_json fail '{"weir.dev/test-outcome":"fail"}' '{}')"
must "create job fail" 201
api POST "/apis/batch/v1/namespaces/$NS/jobs" "$(job_json unsched '{}' '{"weir.dev/no-such-node":"true"}')"
must "create job unsched" 201

job_has() { # NAME REGEX
  api GET "/apis/batch/v1/namespaces/$NS/jobs/$1" && [ "$API_STATUS" = 200 ] && grep -Eq "$2" <<<"$API_BODY"
}
pods_have() { # JOB_NAME REGEX...
  local re
  api GET "/api/v1/namespaces/$NS/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3D$1" \
    && [ "$API_STATUS" = 200 ] || return 1
  for re in "${@:2}"; do grep -Eq "$re" <<<"$API_BODY" || return 1; done
}

wait_for "job ok: Complete=True" \
  job_has ok '"type":"Complete","status":"True"'
wait_for "job ok: pod Succeeded" \
  pods_have ok '"phase":"Succeeded"'
wait_for "job fail: Failed=True reason BackoffLimitExceeded" \
  job_has fail '\{"type":"Failed","status":"True",[^}]*"reason":"BackoffLimitExceeded"'
wait_for "job fail: pod Failed, exit code 1, reason Error" \
  pods_have fail '"phase":"Failed"' '"terminated":\{"exitCode":1,"reason":"Error"'
wait_for "job unsched: pod Pending with PodScheduled=False" \
  pods_have unsched '"phase":"Pending"' '\{"type":"PodScheduled",[^}]*"status":"False"'

api DELETE "/api/v1/namespaces/$NS"
must "delete namespace $NS" 200 202
ns_gone() { api GET "/api/v1/namespaces/$NS" && [ "$API_STATUS" = 404 ]; }
wait_for "namespace $NS deleted" ns_gone
DONE=1
log "smoke: PASS in $((SECONDS - T0))s"
