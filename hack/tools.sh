#!/usr/bin/env bash
# Build the pinned Go tools the tests run into .cache/tools/ (never committed). Idempotent: a tool
# whose stamp matches hack/tools/go.mod + go.sum is skipped, so tests and CI may call this always.
#
#   hack/tools.sh           build every tool (ec2-metadata-mock, the IMDS mock; helm)
#   hack/tools.sh --print   print the tools directory (for PATH=...)
#
# Versions live in hack/tools/go.mod (a module of its own with a committed go.sum), not here:
# `go install pkg@version` probes every prefix of the package path on the module proxy, and a proxy
# that answers 403 (not 404) for those probes makes it fail; `go build` inside a module does not
# probe. amazon-ec2-metadata-mock is pinned to v1.12.0: v1.13.0 is listed but its zip is not
# served by the proxy this project builds against. Its main package is .../cmd (binary renamed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_MOD="$ROOT/hack/tools"
TOOLS_DIR="${KUBETRAIN_TOOLS_DIR:-$ROOT/.cache/tools}"

if [[ "${1:-}" == "--print" ]]; then
  echo "$TOOLS_DIR"
  exit 0
fi

mkdir -p "$TOOLS_DIR"
pin="$(cat "$TOOLS_MOD/go.mod" "$TOOLS_MOD/go.sum" | sha256sum | cut -d' ' -f1)"

# build NAME PACKAGE: go build PACKAGE (as pinned by hack/tools/go.mod) into TOOLS_DIR/NAME.
build() {
  local name="$1" pkg="$2"
  local stamp="$TOOLS_DIR/$name.stamp"
  if [[ -x "$TOOLS_DIR/$name" && -f "$stamp" && "$(cat "$stamp")" == "$pkg $pin" ]]; then
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "hack/tools.sh: 'go' not found on PATH; install Go >= 1.23 to build $name" >&2
    exit 1
  fi
  echo "hack/tools.sh: building $pkg into $TOOLS_DIR/$name" >&2
  (cd "$TOOLS_MOD" && go build -trimpath -o "$TOOLS_DIR/$name.tmp" "$pkg")
  mv -f "$TOOLS_DIR/$name.tmp" "$TOOLS_DIR/$name"
  echo "$pkg $pin" >"$stamp"
}

build ec2-metadata-mock github.com/aws/amazon-ec2-metadata-mock/cmd

# helm (the chart's lint, template and install tests): built from its own Go module at a pinned
# version, outside hack/tools/go.mod (Helm's Kubernetes dependencies would fight the other pins).
# `go install mod/cmd@version` first; where the proxy breaks its module-path probing, download the
# module and `go build` inside it (its own go.mod/go.sum pin the dependencies).
HELM_VERSION=v3.19.2
build_helm() {
  local stamp="$TOOLS_DIR/helm.stamp" want="helm.sh/helm/v3 $HELM_VERSION"
  if [[ -x "$TOOLS_DIR/helm" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  command -v go >/dev/null 2>&1 || { echo "hack/tools.sh: 'go' not found; needed for helm" >&2; exit 1; }
  echo "hack/tools.sh: building helm $HELM_VERSION into $TOOLS_DIR/helm" >&2
  local ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  local tmp
  tmp="$(mktemp -d)"
  if ! GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; then
    local dir
    dir="$(cd "$tmp" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$tmp/helm" ./cmd/helm)
  fi
  mv -f "$tmp/helm" "$TOOLS_DIR/helm"
  rm -rf "$tmp"
  echo "$want" >"$stamp"
}
build_helm
