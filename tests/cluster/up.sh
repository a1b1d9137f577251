#!/usr/bin/env bash
# Starts Weir's test control plane: etcd + kube-apiserver + kube-controller-manager (job, GC,
# namespace controllers) + kube-scheduler + kwok (fake node kwok-node-0, stages from stages.yaml).
#
#   tests/cluster/up.sh [STATE_DIR]     (default ${WEIR_K8S_STATE:-$HOME/.cache/weir/k8s-state})
#
# Prints `export KUBECONFIG=...` and `export WEIR_K8S_KUBECONFIG=...` on stdout (everything else
# goes to stderr), so `eval "$(tests/cluster/up.sh)"` works. Idempotent: a healthy cluster from
# STATE_DIR is left alone; stale processes from STATE_DIR are stopped first.
# Ports are picked on 127.0.0.1 unless set: WEIR_K8S_ETCD_PORT, WEIR_K8S_ETCD_PEER_PORT,
# WEIR_K8S_APISERVER_PORT, WEIR_K8S_KCM_PORT, WEIR_K8S_SCHEDULER_PORT, WEIR_K8S_KWOK_PORT.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

ST=$(state_dir "${1-}")
KC=$ST/admin.kubeconfig
PKI=$ST/pki
NODE=kwok-node-0
CONTROLLERS=job-controller,garbage-collector-controller,pod-garbage-collector-controller,ttl-after-finished-controller,namespace-controller
T0=$SECONDS

mkdir -p "$ST/logs"
exec 9>"$ST/.lock"
flock -w 300 9 || die "another up.sh/down.sh holds $ST/.lock"

print_exports() {
  echo "export KUBECONFIG=$KC"
  echo "export WEIR_K8S_KUBECONFIG=$KC"
}

https_ok() { # URL -> true if GET URL (no client auth, CA not checked) answers "ok"
  [ "$(curl -sk --max-time 5 "$1" 2>/dev/null)" = ok ]
}

node_ready() {
  api GET "/api/v1/nodes/$NODE" 2>/dev/null && [ "$API_STATUS" = 200 ] \
    && grep -q '"type":"Ready","status":"True"' <<<"$API_BODY"
}

healthy() {
  local c
  [ -f "$ST/pids" ] && [ -r "$KC" ] && [ -r "$ST/ports" ] || return 1
  for c in "${WEIR_K8S_COMPONENTS[@]}"; do
    pid_ours "$ST" "$(pid_of "$ST" "$c")" || return 1
  done
  # shellcheck source=/dev/null
  . "$ST/ports"
  api_init "$KC"
  api GET /readyz 2>/dev/null && [ "$API_STATUS" = 200 ] || return 1
  https_ok "https://127.0.0.1:$KCM_PORT/healthz" || return 1
  https_ok "https://127.0.0.1:$SCHEDULER_PORT/healthz" || return 1
  [ "$(curl -s --max-time 5 "http://127.0.0.1:$KWOK_PORT/healthz" 2>/dev/null)" = ok ] || return 1
  node_ready
}

if [ -f "$ST/pids" ] || [ -n "$(stray_pids "$ST")" ]; then
  if healthy; then
    log "a healthy cluster from $ST is already running (apiserver $API_SERVER)"
    print_exports
    exit 0
  fi
  log "stale or unhealthy cluster state in $ST: stopping its processes first"
  stop_all "$ST"
fi

BIN=$("$HERE/build.sh")
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing after build.sh"
done
command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install -y openssl)"
command -v curl >/dev/null || die "curl not found"
command -v setsid >/dev/null || die "setsid not found (util-linux)"

# --- cleanup on failure ------------------------------------------------------------------------
UP_OK=0
on_exit() {
  if [ "$UP_OK" != 1 ]; then
    log "up.sh failed; stopping what it started (logs kept in $ST/logs)"
    stop_all "$ST"
    rm -rf "$ST/etcd"
    rm -f "$KC" "$KC.tmp" "$ST/ports"
  fi
}
trap on_exit EXIT

# fail NAME MESSAGE -> report with the last 50 lines of NAME's log and exit.
fail() {
  echo "weir-k8s: error: $2" >&2
  if [ -f "$ST/logs/$1.log" ]; then
    echo "----- last 50 lines of $ST/logs/$1.log -----" >&2
    tail -n 50 "$ST/logs/$1.log" >&2
    echo "-----" >&2
  fi
  exit 1
}

# --- PKI (reused across runs; regenerated if anything is missing) -----------------------------
pki_files=(ca.crt ca.key apiserver.crt apiserver.key admin.crt admin.key sa.key sa.pub)
pki_complete() { local f; for f in "${pki_files[@]}"; do [ -s "$PKI/$f" ] || return 1; done; }
if ! pki_complete || ! openssl x509 -checkend 86400 -noout -in "$PKI/apiserver.crt" >/dev/null 2>&1; then
  log "generating PKI in $PKI"
  rm -rf "$PKI" && mkdir -p "$PKI"
  (
    cd "$PKI"
    exec >>"$ST/logs/pki.log" 2>&1
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=weir-test-ca \
      -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout apiserver.key -out apiserver.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > srv.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile srv.ext -out apiserver.crt
    openssl req -newkey rsa:2048 -nodes -subj '/O=system:masters/CN=weir-admin' -keyout admin.key -out admin.csr
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > cli.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile cli.ext -out admin.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
    rm -f ./*.csr ./*.ext ca.srl
    chmod 600 ./*.key
  ) || fail pki "PKI generation with openssl failed"
fi

# --- ports ---------------------------------------------------------------------------------------
USED_PORTS=" "
# pick_port VAR ENVVAR -> VAR=$ENVVAR if set, else a free 127.0.0.1 port below the ephemeral range.
pick_port() {
  local var=$1 env=$2 p i
  p=${!env:-}
  if [ -z "$p" ]; then
    for ((i = 0; i < 500; i++)); do
      p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
      case $USED_PORTS in *" $p "*) continue ;; esac
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || break
    done
    [ "$i" -lt 500 ] || die "no free port found on 127.0.0.1"
  fi
  case $USED_PORTS in *" $p "*) die "port $p assigned twice (check WEIR_K8S_*_PORT)" ;; esac
  USED_PORTS+="$p "
  printf -v "$var" '%s' "$p"
}
pick_port ETCD_PORT WEIR_K8S_ETCD_PORT
pick_port ETCD_PEER_PORT WEIR_K8S_ETCD_PEER_PORT
pick_port APISERVER_PORT WEIR_K8S_APISERVER_PORT
pick_port KCM_PORT WEIR_K8S_KCM_PORT
pick_port SCHEDULER_PORT WEIR_K8S_SCHEDULER_PORT
pick_port KWOK_PORT WEIR_K8S_KWOK_PORT
cat > "$ST/ports" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
KWOK_PORT=$KWOK_PORT
EOF

# --- process helpers -----------------------------------------------------------------------------
rm -f "$ST/pids" "$KC"
# spawn NAME BINARY ARGS... -> start in its own session, log to logs/NAME.log, record the pid.
spawn() {
  local name=$1 pid; shift
  setsid "$@" </dev/null >"$ST/logs/$name.log" 2>&1 9>&- &
  pid=$!
  echo "$name $pid" >> "$ST/pids"
  eval "PID_${name//-/_}=$pid"
}

# child_alive PID -> true while our own child PID runs (not a zombie). Not pid_ours: right
# after the fork, before setsid execs, the child's command line is still this script's,
# which names STATE without the trailing slash pid_ours looks for.
child_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# wait_until NAME TIMEOUT_S WHAT COMMAND... -> poll COMMAND every 0.25 s.
wait_until() {
  local name=$1 timeout=$2 what=$3 pidvar deadline; shift 3
  pidvar=PID_${name//-/_}
  deadline=$((SECONDS + timeout))
  until "$@"; do
    child_alive "${!pidvar}" || fail "$name" "$name exited while waiting for $what"
    [ "$SECONDS" -lt "$deadline" ] || fail "$name" "timed out after ${timeout}s waiting for $what"
    sleep 0.25
  done
  log "$what: ok ($((SECONDS - T0))s)"
}

# --- etcd ----------------------------------------------------------------------------------------
rm -rf "$ST/etcd"
spawn etcd "$BIN/etcd" --name=weir --data-dir="$ST/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="weir=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state=new \
  --unsafe-no-fsync=true
etcd_ok() { curl -s --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; }
wait_until etcd 30 "etcd /health" etcd_ok

# --- kube-apiserver ------------------------------------------------------------------------------
spawn kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --service-account-issuer="https://127.0.0.1:$APISERVER_PORT" \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=RBAC \
  --disable-admission-plugins=ServiceAccount,TaintNodesByCondition \
  --allow-privileged=true \
  --endpoint-reconciler-type=none

cat > "$KC.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weir-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: weir-admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: weir-test
  context:
    cluster: weir-test
    user: weir-admin
    namespace: default
current-context: weir-test
EOF
api_init "$KC.tmp"
apiserver_ready() { api GET /readyz 2>/dev/null && [ "$API_STATUS" = 200 ]; }
wait_until kube-apiserver 90 "kube-apiserver /readyz" apiserver_ready
mv "$KC.tmp" "$KC"
api_init "$KC"

# --- kube-controller-manager, kube-scheduler, kwok ----------------------------------------------
spawn kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$KC" --authentication-kubeconfig="$KC" --authorization-kubeconfig="$KC" \
  --authentication-skip-lookup=true \
  --controllers="$CONTROLLERS" \
  --leader-elect=false --use-service-account-credentials=false \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$ST/kcm-certs"
spawn kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig="$KC" --authentication-kubeconfig="$KC" --authorization-kubeconfig="$KC" \
  --authentication-skip-lookup=true \
  --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$ST/scheduler-certs"
spawn kwok "$BIN/kwok" \
  --kubeconfig="$KC" --config="$HERE/stages.yaml" \
  --manage-all-nodes=true \
  --cidr=10.244.0.0/24 --node-ip=10.244.0.1 \
  --server-address="127.0.0.1:$KWOK_PORT"

kcm_ok() { https_ok "https://127.0.0.1:$KCM_PORT/healthz"; }
sched_ok() { https_ok "https://127.0.0.1:$SCHEDULER_PORT/healthz"; }
kwok_ok() { [ "$(curl -s --max-time 2 "http://127.0.0.1:$KWOK_PORT/healthz" 2>/dev/null)" = ok ]; }
wait_until kube-controller-manager 60 "kube-controller-manager /healthz" kcm_ok
wait_until kube-scheduler 60 "kube-scheduler /healthz" sched_ok
wait_until kwok 60 "kwok /healthz" kwok_ok

# --- the fake node -------------------------------------------------------------------------------
# No taints (TaintNodesByCondition admission is off and no node-lifecycle-controller runs), so
# pods schedule without tolerations. The apiserver drops .status on create: it is patched below.
NODE_STATUS='{"status":{"allocatable":{"cpu":"32","memory":"256Gi","pods":"110"},
 "capacity":{"cpu":"32","memory":"256Gi","pods":"110"}}}'
NODE_JSON='{"apiVersion":"v1","kind":"Node","metadata":{"name":"'$NODE'",
 "annotations":{"node.alpha.kubernetes.io/ttl":"0","kwok.x-k8s.io/node":"fake"},
 "labels":{"kubernetes.io/hostname":"'$NODE'","kubernetes.io/os":"linux","kubernetes.io/arch":"amd64","type":"kwok"}},
 '${NODE_STATUS:1}
if command -v kubectl >/dev/null && [ "${WEIR_K8S_NO_KUBECTL:-0}" != 1 ]; then
  kubectl --kubeconfig="$KC" apply -f - <<<"$NODE_JSON" >>"$ST/logs/node.log" 2>&1 \
    || fail node "kubectl apply of node $NODE failed"
else
  api POST /api/v1/nodes "$NODE_JSON" || fail node "POST /api/v1/nodes failed"
  case $API_STATUS in
    201 | 409) ;;
    *) echo "$API_BODY" >>"$ST/logs/node.log"; fail node "creating node $NODE: HTTP $API_STATUS" ;;
  esac
fi
if ! api PATCH "/api/v1/nodes/$NODE/status" "$NODE_STATUS" application/merge-patch+json \
   || [ "$API_STATUS" != 200 ]; then
  echo "$API_BODY" >>"$ST/logs/node.log"
  fail node "patching node $NODE status: HTTP $API_STATUS"
fi
wait_until kwok 60 "node $NODE Ready (kwok)" node_ready

UP_OK=1
log "cluster ready in $((SECONDS - T0))s: apiserver https://127.0.0.1:$APISERVER_PORT, state $ST"
print_exports
