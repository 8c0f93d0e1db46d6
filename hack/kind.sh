#!/usr/bin/env bash
# A kind cluster shaped like the local one, for users who have Docker: one worker per node in
# hack/cluster/nodepools.yaml (or KIND_WORKERS of them), labelled, tainted and given extended
# resources by the same hack/cluster/nodes.py the local kwok cluster uses.
#
#   hack/kind.sh up | down
#
# Only `kind create cluster` itself is untested in this project's CI (no Docker engine there); the
# node shaping that follows is the code the local cluster runs on every test.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=${KIND_CLUSTER_NAME:-kubetrain}
PY=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3)}

die() { printf '[kind] error: %s\n' "$*" >&2; exit 1; }

up() {
  command -v kind >/dev/null || die "kind is not installed: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  command -v kubectl >/dev/null || die "kubectl is not on PATH (hack/cluster.sh build puts one in \$(hack/cluster.sh bin))"
  docker info >/dev/null 2>&1 || die "no Docker engine answers; kind needs one (use hack/cluster.sh without Docker)"
  local workers=${KIND_WORKERS:-$("$PY" "$ROOT/hack/cluster/nodes.py" render | grep -c '^kind: Node')}
  if ! kind get clusters 2>/dev/null | grep -qx "$NAME"; then
    {
      echo "kind: Cluster"
      echo "apiVersion: kind.x-k8s.io/v1alpha4"
      echo "nodes:"
      echo "- role: control-plane"
      for ((i = 0; i < workers; i++)); do echo "- role: worker"; done
    } | kind create cluster --name "$NAME" --config=-
  fi
  kubectl config use-context "kind-$NAME" >/dev/null
  "$PY" "$ROOT/hack/cluster/nodes.py" apply --kind --kubectl kubectl
  kubectl get nodes -L node.kubernetes.io/instance-type,topology.kubernetes.io/zone
}

down() { kind delete cluster --name "$NAME"; }

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
