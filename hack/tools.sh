#!/usr/bin/env bash
# Build the pinned Go tools the tests run into .cache/tools/ (never committed). Idempotent: a tool
# whose stamp matches hack/tools/go.mod + go.sum is skipped, so tests and CI may call this always.
#
#   hack/tools.sh           build every tool (today: ec2-metadata-mock, the IMDS mock)
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
