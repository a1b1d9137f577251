# shellcheck shell=bash
# Shared helpers for up.sh / down.sh / smoke.sh. Source it; it does not run anything.

# Components in start order; stopped in reverse order.
WEIR_K8S_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

die() { echo "weir-k8s: error: $*" >&2; exit 1; }
log() { echo "weir-k8s: $*" >&2; }

# state_dir [ARG] -> absolute state directory path (not created).
state_dir() {
  local d=${1:-${WEIR_K8S_STATE:-$HOME/.cache/weir/k8s-state}}
  case $d in /*) ;; *) d=$PWD/$d ;; esac
  printf '%s\n' "${d%/}"
}

# pid_of STATE NAME -> pid recorded in STATE/pids for NAME (empty if none).
pid_of() {
  [ -f "$1/pids" ] || return 0
  awk -v n="$2" '$1 == n {print $2}' "$1/pids"
}

# pid_ours STATE PID -> true if PID is alive and its command line mentions STATE
# (every component gets a flag pointing into STATE, so a recycled pid is not mistaken for ours).
pid_ours() {
  local pid=$2 cmd
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  # No pipe into `grep -q`: grep exits at the first match, the writer can get
  # SIGPIPE, and under `set -o pipefail` a live component looked dead.
  cmd=$(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline") || return 1
  [[ $cmd == *"$1/"* ]]
}

# stray_pids STATE -> pids of any running component binary whose command line points into STATE
# (catches processes whose pid never made it into STATE/pids, e.g. after a killed up.sh).
stray_pids() {
  local st=$1 p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case ${exe##*/} in etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kwok) ;; *) continue ;; esac
    pid_ours "$st" "${p#/proc/}" && echo "${p#/proc/}"
  done
  return 0
}

# stop_pids STATE PID... -> SIGTERM all, wait up to 10 s, SIGKILL whatever is left.
stop_pids() {
  local st=$1 pid deadline left killed=0; shift
  for pid in "$@"; do
    if pid_ours "$st" "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  deadline=$((SECONDS + 10))
  while :; do
    left=()
    for pid in "$@"; do
      if pid_ours "$st" "$pid"; then left+=("$pid"); fi
    done
    [ ${#left[@]} -gt 0 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ "$killed" = 1 ] || log "pids ${left[*]} ignored SIGTERM for 10 s; sending SIGKILL"
      kill -KILL "${left[@]}" 2>/dev/null || true
      killed=1
    fi
    sleep 0.1
  done
}

is_zombie() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" = Z ]
}

# stop_all STATE -> stop the recorded components and any stray ones (clients first, then
# kube-apiserver, then etcd), and wait for them to be reaped.
stop_all() {
  local st=$1 c pid exe deadline all=() pids=()
  local -A p=()
  for c in "${WEIR_K8S_COMPONENTS[@]}"; do p[$c]=$(pid_of "$st" "$c"); done
  for pid in $(stray_pids "$st"); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    c=${exe##*/}
    case " ${p[$c]} " in *" $pid "*) ;; *) log "stray $c process $pid from $st"; p[$c]+=" $pid" ;; esac
  done
  # shellcheck disable=SC2086  # p[...] are space-separated pid lists
  {
    stop_pids "$st" ${p[kwok]} ${p[kube-scheduler]} ${p[kube-controller-manager]}
    stop_pids "$st" ${p[kube-apiserver]}
    stop_pids "$st" ${p[etcd]}
  }
  for c in "${WEIR_K8S_COMPONENTS[@]}"; do read -ra pids <<<"${p[$c]}"; all+=("${pids[@]}"); done
  # An exited process stays a zombie until its parent (init, once up.sh has exited) reaps it;
  # wait up to 5 s for that so that `pgrep` shows nothing once down.sh returns.
  deadline=$((SECONDS + 5))
  for pid in "${all[@]}"; do
    while [ "$SECONDS" -lt "$deadline" ] && is_zombie "$pid"; do sleep 0.1; done
  done
  rm -f "$st/pids"
}

# kubeconfig_field KUBECONFIG KEY -> value of the first "KEY: value" line (our own kubeconfig shape).
kubeconfig_field() {
  sed -n "s/^[[:space:]-]*$2:[[:space:]]*//p" "$1" | head -n 1
}

# api_init KUBECONFIG -> sets API_SERVER and API_CURL (curl argv with the admin client cert).
api_init() {
  local kc=$1
  [ -r "$kc" ] || die "kubeconfig $kc not found (is the cluster up? run tests/cluster/up.sh)"
  API_SERVER=$(kubeconfig_field "$kc" server)
  # A non-curl user agent: kube-apiserver pretty-prints JSON for curl, and the callers grep compact JSON.
  API_CURL=(curl -sS --max-time 15 -A weir-k8s-harness
    --cacert "$(kubeconfig_field "$kc" certificate-authority)"
    --cert "$(kubeconfig_field "$kc" client-certificate)"
    --key "$(kubeconfig_field "$kc" client-key)")
}

# api METHOD PATH [BODY [CONTENT_TYPE]] -> sets API_BODY (response body) and API_STATUS (HTTP status code);
# returns non-zero only on transport errors (connection refused, TLS, timeout).
# shellcheck disable=SC2034  # API_BODY / API_STATUS are read by the sourcing scripts
api() {
  local method=$1 path=$2 body=${3-} ct=${4:-application/json} out
  local args=(-X "$method" -H 'Accept: application/json' -w '\n%{http_code}')
  if [ -n "$body" ]; then
    args+=(-H "Content-Type: $ct" --data-binary "$body")
  fi
  API_BODY='' API_STATUS=000
  out=$("${API_CURL[@]}" "${args[@]}" "$API_SERVER$path") || return 1
  API_STATUS=${out##*$'\n'}
  API_BODY=${out%$'\n'*}
}
