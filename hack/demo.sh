#!/usr/bin/env bash
# `make demo`: a TrainingJob's life on the local EKS-like cluster.
#
#  1. the control plane with simulated p5 / p4d / trn1 / g5 nodes (hack/cluster.sh)
#  2. `helm install` of the chart (CRDs, RBAC, Deployment), and the operator run with the chart's
#     ServiceAccount token (kwok simulates the Deployment's pod, so the process runs here)
#  3. the p5 spot example (manifests/examples/p5-fsdp-spot.yaml): 4 pods, one zone, EFA, FSx
#  4. one rank fails: the whole gang is replaced by attempt 2
#  5. every rank succeeds: the job is Succeeded
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NS=${DEMO_NAMESPACE:-kubetrain-demo}
JOB=llama-fsdp
LOGS=$ROOT/.cache/demo
mkdir -p "$LOGS"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "timed out after ${limit}s waiting for $what; operator log: $LOGS/operator.log" >&2
      tail -n 20 "$LOGS/operator.log" >&2
      exit 1
    fi
    sleep 0.5
  done
}
phase_is() { [[ "$(kubectl get tj "$JOB" -n "$NS" -o jsonpath='{.status.phase}')" == "$1" ]]; }
attempt_running() {
  local n
  n=$(kubectl get pods -n "$NS" -l "kubetrain.dev/job=$JOB,kubetrain.dev/attempt=$1" \
        -o jsonpath='{range .items[?(@.status.phase=="Running")]}x{end}')
  [[ ${#n} -eq 4 ]]
}
show_pods() {
  kubectl get pods -n "$NS" -l "kubetrain.dev/job=$JOB" -o custom-columns='POD:.metadata.name,ATTEMPT:.metadata.labels.kubetrain\.dev/attempt,PHASE:.status.phase,NODE:.spec.nodeName,ZONE:.metadata.labels.topology\.kubernetes\.io/zone,GPUS:.spec.containers[0].resources.limits.nvidia\.com/gpu,EFA:.spec.containers[0].resources.limits.vpc\.amazonaws\.com/efa'
}

say "1. Local control plane with simulated EKS nodes"
hack/cluster.sh up
eval "$(hack/cluster.sh env)"
kubectl get nodes -o custom-columns='NAME:.metadata.name,INSTANCE:.metadata.labels.node\.kubernetes\.io/instance-type,ZONE:.metadata.labels.topology\.kubernetes\.io/zone,SPOT:.metadata.labels.karpenter\.sh/capacity-type,GPU:.status.allocatable.nvidia\.com/gpu,NEURON:.status.allocatable.aws\.amazon\.com/neuron,EFA:.status.allocatable.vpc\.amazonaws\.com/efa'

say "2. helm install kubetrain (namespace kubetrain-system, watching $NS), then the operator as its ServiceAccount"
HELM=$(hack/tools.sh --print)/helm
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
"$HELM" upgrade --install kubetrain manifests/charts/kubetrain -n kubetrain-system --create-namespace \
  --set "watchNamespaces={$NS}" --set image.repository=kubetrain-operator
kubectl wait --for=condition=Established crd/trainingjobs.kubetrain.dev --timeout=60s
kubectl get -n kubetrain-system deploy,sa,pdb,svc -l app.kubernetes.io/part-of=kubetrain
# The simulated nodes cannot run the image, so the operator runs here, authenticated exactly as the
# Deployment's pod would be: a token of the chart's ServiceAccount, the chart's RBAC and nothing more.
TOKEN=$(kubectl create token kubetrain-operator -n kubetrain-system --duration=2h)
OPERATOR_KUBECONFIG=$LOGS/operator.kubeconfig
kubectl config view --raw --minify >"$OPERATOR_KUBECONFIG"
KUBECONFIG=$OPERATOR_KUBECONFIG kubectl config set-credentials kubetrain-operator --token="$TOKEN" >/dev/null
KUBECONFIG=$OPERATOR_KUBECONFIG kubectl config set-context --current --user=kubetrain-operator >/dev/null
METRICS_PORT=${DEMO_METRICS_PORT:-18081}
KUBECONFIG=$OPERATOR_KUBECONFIG python -m kubetrain --namespace "$NS" --peering=kubetrain \
  --metrics-address "127.0.0.1:$METRICS_PORT" >"$LOGS/operator.log" 2>&1 &
OPERATOR=$!
trap 'kill $OPERATOR 2>/dev/null || true' EXIT
echo "operator running (pid $OPERATOR, log $LOGS/operator.log, metrics http://127.0.0.1:$METRICS_PORT/metrics)"
ready() { curl -fsS "http://127.0.0.1:$METRICS_PORT/readyz"; }
wait_for 60 "operator ready (/readyz)" ready
# A previous demo's job goes first (its finalizer needs the operator running).
kubectl delete tj --all -n "$NS" --timeout=60s

say "3. What the example expects from the cluster: a PriorityClass and an FSx claim"
sed "s/NAMESPACE/$NS/g" <<'YAML' | kubectl apply -f -
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: training-high}
value: 100000
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: fsx-pv-NAMESPACE}
spec:
  capacity: {storage: 1200Gi}
  accessModes: [ReadWriteMany]
  storageClassName: ""
  claimRef: {namespace: NAMESPACE, name: fsx-pvc}
  csi: {driver: fsx.csi.aws.com, volumeHandle: fs-0aaaabbbbccccdddd, volumeAttributes: {dnsname: fs-0aaaabbbbccccdddd.fsx.us-west-2.amazonaws.com, mountname: fsx}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: fsx-pvc, namespace: NAMESPACE}
spec: {accessModes: [ReadWriteMany], storageClassName: "", volumeName: fsx-pv-NAMESPACE, resources: {requests: {storage: 1200Gi}}}
YAML

say "4. kubectl apply -f manifests/examples/p5-fsdp-spot.yaml"
kubectl apply -n "$NS" -f manifests/examples/p5-fsdp-spot.yaml
wait_for 90 "attempt 1 running" attempt_running 1
wait_for 30 "phase Running" phase_is Running
kubectl get tj -n "$NS"
show_pods
echo
echo "rank 0's container (generated):"
kubectl get pod "$JOB-1-0" -n "$NS" -o jsonpath='  command: {.spec.containers[0].command}{"\n"}  limits:  {.spec.containers[0].resources.limits}{"\n"}  tolerations: {.spec.tolerations[*].key}{"\n"}'
kubectl get pod "$JOB-1-0" -n "$NS" -o jsonpath='{range .spec.containers[0].env[?(@.value)]}  {.name}={.value}{"\n"}{end}' | grep -E 'MASTER_ADDR|WORLD_SIZE|NNODES|FI_|NCCL|KUBETRAIN_' || true

say "5. Rank 2 crashes (exit code 1): the whole gang restarts as attempt 2"
kubectl annotate pod "$JOB-1-2" -n "$NS" --overwrite sim.test/exit-code=1 sim.test/outcome=Failed
wait_for 120 "attempt 2 running" attempt_running 2
wait_for 30 "phase Running" phase_is Running
kubectl get tj -n "$NS"
show_pods
UID_=$(kubectl get tj "$JOB" -n "$NS" -o jsonpath='{.metadata.uid}')
kubectl get events -n "$NS" --field-selector "involvedObject.uid=$UID_" --sort-by=.metadata.resourceVersion \
  -o custom-columns='REASON:.reason,MESSAGE:.message' | tail -n 8

say "6. Every rank finishes: the job succeeds"
for rank in 0 1 2 3; do
  kubectl annotate pod "$JOB-2-$rank" -n "$NS" --overwrite sim.test/outcome=Succeeded >/dev/null
done
wait_for 60 "phase Succeeded" phase_is Succeeded
kubectl get tj -n "$NS"
kubectl get tj "$JOB" -n "$NS" -o jsonpath='{range .status.conditions[*]}  {.type}={.status} ({.reason}): {.message}{"\n"}{end}'

say "7. What the operator's metrics say"
curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^kubetrain_(jobs\{|attempts_started_total|restarts_total|jobs_finished_total)' || true
if grep -q 'HTTP 403\|Forbidden' "$LOGS/operator.log"; then
  echo "the operator hit a permission error with the chart's RBAC (see $LOGS/operator.log)" >&2
  exit 1
fi
echo "no permission errors in the operator log: the chart's RBAC was enough"

say "Done. The cluster keeps running:"
echo '  eval "$(hack/cluster.sh env)"; kubectl get tj -A     # look around'
echo '  hack/cluster.sh down                                  # stop it'
