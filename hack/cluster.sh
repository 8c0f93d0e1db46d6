#!/usr/bin/env bash
# A real Kubernetes control plane as local processes: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler (built from the official Go modules in hack/cluster/) and kwok simulating EKS nodes.
#
#   hack/cluster.sh build    build the binaries once per pinned version (reused afterwards)
#   hack/cluster.sh up       start everything (idempotent; after a crash it restarts only what died,
#                            on the same ports with the same etcd data)
#   hack/cluster.sh down     stop everything and discard the cluster; no process is left behind
#   hack/cluster.sh status   say what runs
#   hack/cluster.sh env      print `export KUBECONFIG=... PATH=...` (eval "$(hack/cluster.sh env)")
#
# KUBETRAIN_CLUSTER_DIR selects the state directory (default .cache/cluster/run), so tests can run a
# cluster of their own next to the one `make demo` started.
# KUBETRAIN_CLUSTER_GANG=native makes a new cluster serve native gang scheduling (Kubernetes'
# alpha scheduling.k8s.io/v1alpha2 PodGroups, feature gates GenericWorkload and GangScheduling on
# the API server, scheduler and controller manager); it is fixed when the cluster is created.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC="$ROOT/hack/cluster"
K8S_VERSION=v1.36.3
KWOK_VERSION=v0.8.0
# Binaries are keyed by everything that decides them, so a pin change rebuilds and nothing else does.
BIN_KEY=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC"/cmd/*/main.go <(echo "$KWOK_VERSION $(go env GOVERSION 2>/dev/null)") | sha256sum | cut -c1-12)
BIN="$ROOT/.cache/cluster/bin-$BIN_KEY"
RUN=${KUBETRAIN_CLUSTER_DIR:-$ROOT/.cache/cluster/run}
RUN=$(mkdir -p "$RUN" && cd "$RUN" && pwd)
PY=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3)}
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
GANG=${KUBETRAIN_CLUSTER_GANG:-}
[[ -z "$GANG" || "$GANG" == native ]] ||
  { printf '[cluster] error: KUBETRAIN_CLUSTER_GANG=%s: use "native" or leave it unset\n' "$GANG" >&2; exit 2; }

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

build() {
  if [[ -x "$BIN/kwok" && -x "$BIN/kube-apiserver" && -x "$BIN/kubectl" ]]; then
    return 0
  fi
  command -v go >/dev/null || die "Go is needed to build the control plane (https://go.dev/dl/)"
  log "building Kubernetes $K8S_VERSION components and kwok $KWOK_VERSION into ${BIN#"$ROOT"/} (first time only; ~10 min on 2 cores)"
  local t0=$SECONDS tmp="$BIN.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  local ldf="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION")"
  done
  (cd "$SRC" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly \
     go build -trimpath -ldflags "$ldf" -o "$tmp/" ./cmd/...)
  (cd /tmp && GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$tmp" \
     go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  rm -rf "$BIN" && mv "$tmp" "$BIN"
  # Older builds are dead weight (hundreds of MB each).
  find "$ROOT/.cache/cluster" -maxdepth 1 -name 'bin-*' ! -name "bin-$BIN_KEY" -exec rm -rf {} +
  log "built in $((SECONDS - t0))s"
}

pid_of() { cat "$RUN/pids/$1" 2>/dev/null || true; }
alive() {  # a zombie (killed, not yet reaped) or a recycled pid is not alive
  local pid; pid=$(pid_of "$1")
  [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
  [[ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$RUN/"
}

free_ports() {
  "$PY" - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

port_free() {  # port_free PORT: nothing listens on 127.0.0.1:PORT
  "$PY" - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

start() {  # start NAME ARGS...: own session (so down can kill the whole group), log to logs/NAME.log
  local name=$1; shift
  setsid "$@" >>"$RUN/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/pids/$name"
}

wait_until() {  # wait_until SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "$what did not become ready within ${limit}s; log tail:"
      tail -n 30 "$RUN/logs/${what%% *}.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

kc() { "$BIN/kubectl" --kubeconfig "$RUN/kubeconfig" "$@"; }

healthy() {
  [[ -f "$RUN/kubeconfig" ]] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  kc get --raw /readyz >/dev/null 2>&1
}

# A run that was started and never brought down: its ports, credentials, serving cert and etcd
# data are all still there, so whatever died can come back as it was.
recoverable() {
  [[ -f "$RUN/ports" && -f "$RUN/kubeconfig" && -f "$RUN/pki/tokens.csv" && -d "$RUN/etcd" ]] ||
    return 1
  local key
  for key in etcd peer apiserver kcm scheduler; do [[ -n "$(port_of "$key")" ]] || return 1; done
}

down() {
  local c pid
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c=${COMPONENTS[i]}
    pid=$(pid_of "$c")
    [[ -n "$pid" ]] && kill -TERM -- "-$pid" 2>/dev/null || true
  done
  # Anything still running that belongs to this state dir (a crashed run may have lost pid files).
  local deadline=$((SECONDS + 10))
  while pgrep -f -- "$RUN/" >/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  pkill -KILL -f -- "$RUN/" 2>/dev/null || true
  while pgrep -f -- "$RUN/" >/dev/null; do sleep 0.1; done
  rm -rf "$RUN/pids" "$RUN/etcd" "$RUN/kubeconfig" "$RUN/ports" "$RUN/gang"
}

up() {
  build
  if [[ -n "$GANG" && "$(gang_of_run)" != "$GANG" ]] && { healthy || recoverable; }; then
    die "the cluster in ${RUN#"$ROOT"/} was created without KUBETRAIN_CLUSTER_GANG=$GANG (fixed at creation); 'hack/cluster.sh down' then 'up' creates one with it"
  fi
  if healthy; then
    apply_nodes  # the pool file may have changed since this cluster started
    log "already up (KUBECONFIG=$RUN/kubeconfig)"
    return 0
  fi
  local t0=$SECONDS
  if recoverable; then
    # After a crash (a component killed, the machine's processes gone): restart only what died,
    # on the same ports, with the same etcd data, token and serving cert, so running clients
    # (an operator, kubectl, a test) carry on where they were.
    log "recovering the cluster in ${RUN#"$ROOT"/}: restarting what is not running"
  else
    down  # state from a run that never finished starting: clear it
    init_run
  fi
  start_missing
  apply_nodes
  wait_until 60 kube-controller-manager kc get serviceaccount default -n default
  log "up in $((SECONDS - t0))s: $(kc get nodes --no-headers | wc -l) nodes; KUBECONFIG=$RUN/kubeconfig"
}

init_run() {  # fresh ports, token and kubeconfig for a new cluster
  mkdir -p "$RUN/pids" "$RUN/logs" "$RUN/pki"
  rm -f "$RUN"/logs/*.log
  local etcd peer api kcm sched
  read -r etcd peer api kcm sched < <(free_ports 5)
  echo "etcd=$etcd peer=$peer apiserver=$api kcm=$kcm scheduler=$sched" >"$RUN/ports"
  echo "$GANG" >"$RUN/gang"  # a recovered component comes back with the features it had

  [[ -f "$RUN/pki/sa.key" ]] || openssl genrsa -out "$RUN/pki/sa.key" 2048 2>/dev/null
  local token
  token=$("$PY" -c 'import secrets; print(secrets.token_hex(24))')
  echo "$token,admin,admin,\"system:masters\"" >"$RUN/pki/tokens.csv"
  cat >"$RUN/kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: kubetrain-local
  cluster: {server: "https://127.0.0.1:$api", certificate-authority: "$RUN/pki/apiserver.crt"}
users:
- name: admin
  user: {token: "$token"}
contexts:
- name: kubetrain-local
  context: {cluster: kubetrain-local, user: admin}
current-context: kubetrain-local
KCFG
  chmod 600 "$RUN/kubeconfig" "$RUN/pki/tokens.csv"
  # The apiserver signs its own serving cert (for 127.0.0.1 and localhost) into --cert-dir; a new
  # cluster gets a new one. A restarted apiserver of the same cluster keeps it (running clients
  # trust it).
  rm -f "$RUN/pki/apiserver.crt" "$RUN/pki/apiserver.key"
  mkdir -p "$RUN/etcd"
}

port_of() { tr ' ' '\n' <"$RUN/ports" | sed -n "s/^$1=//p"; }
gang_of_run() { cat "$RUN/gang" 2>/dev/null || true; }

start_missing() {  # start every component that is not running, in dependency order
  mkdir -p "$RUN/pids" "$RUN/logs"
  local ETCD PEER API KCM SCHED c p
  ETCD=$(port_of etcd) PEER=$(port_of peer) API=$(port_of apiserver)
  KCM=$(port_of kcm) SCHED=$(port_of scheduler)
  local -A ports=([etcd]="$ETCD $PEER" [kube-apiserver]=$API [kube-controller-manager]=$KCM
                  [kube-scheduler]=$SCHED [kwok]="")
  # Native gang scheduling: the PodGroup API (off by default while alpha) on the API server; the
  # gates on every component (the scheduler adds its GangScheduling plugin to the default profile,
  # the controller manager runs the PodGroupProtection controller that lifts the finalizer the
  # API server puts on every PodGroup).
  local -a gates=() api_extra=()
  if [[ "$(gang_of_run)" == native ]]; then
    gates=(--feature-gates=GenericWorkload=true,GangScheduling=true)
    api_extra=(--runtime-config=scheduling.k8s.io/v1alpha2=true)
  fi
  for c in "${COMPONENTS[@]}"; do
    alive "$c" && continue
    for p in ${ports[$c]}; do
      port_free "$p" || die "$c cannot come back on port $p: another process holds it; 'hack/cluster.sh down' then 'up' starts a new cluster"
    done
  done

  if ! alive etcd; then
    start etcd "$BIN/etcd" --name=node0 --data-dir="$RUN/etcd" \
      --listen-client-urls="http://127.0.0.1:$ETCD" --advertise-client-urls="http://127.0.0.1:$ETCD" \
      --listen-peer-urls="http://127.0.0.1:$PEER" --initial-advertise-peer-urls="http://127.0.0.1:$PEER" \
      --initial-cluster="node0=http://127.0.0.1:$PEER" --unsafe-no-fsync=true --log-level=warn \
      --quota-backend-bytes=4294967296
  fi
  wait_until 30 etcd curl -fsS "http://127.0.0.1:$ETCD/health"

  if ! alive kube-apiserver; then
    start kube-apiserver "$BIN/kube-apiserver" \
      --etcd-servers="http://127.0.0.1:$ETCD" --etcd-prefix=/registry \
      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API" \
      --cert-dir="$RUN/pki" --token-auth-file="$RUN/pki/tokens.csv" \
      --authorization-mode=Node,RBAC \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$RUN/pki/sa.key" --service-account-signing-key-file="$RUN/pki/sa.key" \
      --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
      --default-not-ready-toleration-seconds=5 --default-unreachable-toleration-seconds=5 \
      --profiling=false --event-ttl=2h "${gates[@]}" "${api_extra[@]}"
  fi
  wait_until 60 "kube-apiserver" kc get --raw /readyz

  if ! alive kube-controller-manager; then
    start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$RUN/kubeconfig" \
      --leader-elect=false --bind-address=127.0.0.1 --secure-port="$KCM" \
      --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
      --service-account-private-key-file="$RUN/pki/sa.key" --root-ca-file="$RUN/pki/apiserver.crt" \
      --use-service-account-credentials=false \
      --node-monitor-period=1s --node-monitor-grace-period=20s --profiling=false "${gates[@]}"
  fi
  if ! alive kube-scheduler; then
    start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$RUN/kubeconfig" \
      --leader-elect=false --bind-address=127.0.0.1 --secure-port="$SCHED" \
      --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics,/configz \
      --profiling=false "${gates[@]}"  # /configz: the effective profiles, read by tests
  fi
  if ! alive kwok; then
    start kwok "$BIN/kwok" --kubeconfig="$RUN/kubeconfig" --config="$SRC/stages.yaml" \
      --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
      --node-lease-duration-seconds=20 --cidr=10.0.0.0/16 --node-ip=10.0.0.1
  fi
  wait_until 60 kube-controller-manager curl -kfsS "https://127.0.0.1:$KCM/healthz"
  wait_until 60 kube-scheduler curl -kfsS "https://127.0.0.1:$SCHED/healthz"
}

apply_nodes() {
  KUBECONFIG="$RUN/kubeconfig" "$PY" "$SRC/nodes.py" apply --kubectl "$BIN/kubectl"
  wait_until 60 kwok kc wait --for=condition=Ready node --all --timeout=2s
}

status() {
  local c
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then echo "$c: running (pid $(pid_of "$c"))"; else echo "$c: stopped"; fi
  done
  if [[ -n "$(gang_of_run)" ]]; then echo "gang scheduling: $(gang_of_run) (PodGroups served)"; fi
  if healthy; then echo "api: ready ($(cat "$RUN/ports"))"; else echo "api: not ready"; return 1; fi
}

env_() {
  echo "export KUBECONFIG=$RUN/kubeconfig"
  echo "export PATH=$BIN:\$PATH"
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_ ;;
  bin) echo "$BIN" ;;
  *) echo "usage: $0 build|up|down|status|env|bin" >&2; exit 2 ;;
esac
