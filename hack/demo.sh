#!/usr/bin/env bash
# `make demo`: the local EKS-like cluster with its simulated GPU and Trainium nodes.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
hack/cluster.sh up
eval "$(hack/cluster.sh env)"

say "Simulated EKS nodes and their accelerators"
kubectl get nodes -o custom-columns='NAME:.metadata.name,INSTANCE:.metadata.labels.node\.kubernetes\.io/instance-type,ZONE:.metadata.labels.topology\.kubernetes\.io/zone,CAPACITY:.metadata.labels.karpenter\.sh/capacity-type,MNG-CAPACITY:.metadata.labels.eks\.amazonaws\.com/capacityType,GPU:.status.allocatable.nvidia\.com/gpu,NEURON:.status.allocatable.aws\.amazon\.com/neuron,EFA:.status.allocatable.vpc\.amazonaws\.com/efa,CPU:.status.allocatable.cpu,MEMORY:.status.allocatable.memory'

say "The cluster keeps running. Use it with:"
echo '  eval "$(hack/cluster.sh env)"   # KUBECONFIG and kubectl'
echo '  hack/cluster.sh down            # stop it'
