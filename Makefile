# kubetrain: the two commands the README promises are `make demo` and `make test`.
# Each sets up what it needs itself: a virtualenv in .venv and the local control plane in .cache/.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all venv demo test test-unit lint typecheck generate verify cluster-build cluster-up cluster-down tools helm bench bench-scale clean

all: test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

venv: $(STAMP)

cluster-build:
	hack/cluster.sh build

# Pinned Go tools the tests run (hack/tools/pins.tsv: amazon-ec2-metadata-mock, helm, AWS Node
# Termination Handler, Karpenter's kwok provider), built from their Go modules into .cache/tools.
tools:
	hack/tools.sh

# Helm alone (demo, generate, verify need no other tool).
helm:
	hack/tools.sh helm

cluster-up: $(STAMP) cluster-build
	hack/cluster.sh up

cluster-down:
	hack/cluster.sh down

demo: $(STAMP) cluster-build helm
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" hack/demo.sh

# Unit tests need nothing but the venv; integration and e2e tests start the local control plane
# themselves (tests/conftest.py) and stop it at the end.
test: $(STAMP) cluster-build tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" hack/test.sh

test-unit: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" hack/test.sh tests/unit

lint: $(STAMP)
	$(VENV)/bin/ruff check operator components tests hack
	$(VENV)/bin/ruff format --check operator components tests hack

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Regenerate every generated file (CRD, compiled KFP YAML, the manifests rendered from the Helm
# chart, ...); `make verify` checks for drift. Both need helm (built by `make helm`).
generate: $(STAMP) helm
	PYTHON=$(PY) hack/generate.sh

verify: $(STAMP) helm
	PYTHON=$(PY) hack/generate.sh --check

# Benchmarks (not tests): numbers go to hack/bench/results/*.json.
bench: $(STAMP) cluster-build
	$(PY) hack/bench/checkpoint_throughput.py
	$(PY) hack/bench/spot_drills.py
	$(PY) hack/bench/goodput_sim.py --out hack/bench/results/goodput_sim

# Speed at scale against a bare client, JobSet and the Training Operator (issue 14; its own cluster).
# BENCH_SCALE_ARGS narrows it, e.g. BENCH_SCALE_ARGS='--jobs 10,100 --systems kubetrain,bare'.
bench-scale: $(STAMP) cluster-build
	$(PY) hack/bench/scale.py $(BENCH_SCALE_ARGS)

clean: cluster-down
	rm -rf .cache $(VENV)
