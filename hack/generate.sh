#!/usr/bin/env bash
# Regenerate every generated file, or with --check fail when a committed one has drifted.
# Each generator is the single source of its files; tests run the same checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
rc=0
# The CRD first: the chart and manifests/base carry copies of it; sync_manifests.py renders the
# chart (helm from hack/tools.sh) into the kustomize bases and the EKS add-on schema.
for gen in hack/gen_crd.py hack/gen_kfp.py hack/sync_manifests.py; do
  "$PY" "$gen" "$@" || rc=1
done
exit "$rc"
