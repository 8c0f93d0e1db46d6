#!/usr/bin/env bash
# Build the pinned Go tools the tests run into .cache/tools/ (never committed). Idempotent and
# cache-friendly: a tool whose stamp matches its line in hack/tools/pins.tsv (and the Go version) is
# skipped, so tests and CI may call this always; a changed line rebuilds that tool only.
#
#   hack/tools.sh                 build every tool in hack/tools/pins.tsv
#   hack/tools.sh NAME...         build these tools only (also the benchmarks' hack/tools/bench-pins.tsv)
#   hack/tools.sh --print         print the tools directory (for PATH=...)
#   hack/tools.sh --module NAME   print the directory of NAME's pinned module (its CRDs, examples...)
#
# Why `go mod download` + `go build` in the module directory rather than `go install MODULE@VERSION`:
# `go install pkg@version` probes every prefix of the package path on the module proxy, and a proxy
# that answers 403 (not 404) for those probes makes it fail; `go mod download` of the exact module
# does not probe. Building inside the module also keeps each tool on the dependency versions its
# own go.sum pins (one shared tools module would mix Kubernetes client versions across tools).
# amazon-ec2-metadata-mock is pinned to v1.12.0: v1.13.0 is listed but its zip is not served by the
# proxy this project builds against.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINS="${KUBETRAIN_TOOLS_PINS:-$ROOT/hack/tools/pins.tsv}"
TOOLS_DIR="${KUBETRAIN_TOOLS_DIR:-$ROOT/.cache/tools}"

die() { echo "hack/tools.sh: $*" >&2; exit 1; }

# Benchmark-only tools (peers that hack/bench/scale.py races against): built by name, never by
# the no-argument build that `make test` runs.
BENCH_PINS="$ROOT/hack/tools/bench-pins.tsv"

pins() {  # the test tools' pin lines (no comments, no blank lines), or NAME's from either file
  if [[ -n "${1:-}" ]]; then
    grep -h -v -e '^#' -e '^[[:space:]]*$' "$PINS" "$BENCH_PINS" | awk -F'\t' -v n="$1" '$1 == n'
  else
    grep -v -e '^#' -e '^[[:space:]]*$' "$PINS"
  fi
}

# module_dir MODULE VERSION SUM: download the module (cached after the first time), check its
# hash against the pin, print its directory.
module_dir() {
  local module=$1 version=$2 sum=$3 json got dir
  command -v go >/dev/null 2>&1 || die "'go' not found on PATH; install Go >= 1.23 to build the test tools"
  json=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$module@$version") ||
    die "go mod download $module@$version failed:"$'\n'"$json"
  got=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",*$/\1/p' <<<"$json")
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' <<<"$json")
  [[ "$got" == "$sum" ]] || die "$module@$version has hash $got, the pin says $sum (hack/tools/*pins.tsv)"
  [[ -d "$dir" ]] || die "go mod download $module@$version gave no directory"
  echo "$dir"
}

build() {  # build NAME MODULE VERSION PACKAGE TAGS SUM [LDFLAGS]
  local name=$1 module=$2 version=$3 pkg=$4 tags=$5 sum=$6 ldflags=${7:--}
  local stamp="$TOOLS_DIR/$name.stamp" want dir
  want="$name $module $version $pkg $tags $sum $ldflags $(go env GOVERSION 2>/dev/null || echo nogo)"
  if [[ -x "$TOOLS_DIR/$name" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  dir=$(module_dir "$module" "$version" "$sum")
  [[ "$tags" == "-" ]] && tags=""
  [[ "$ldflags" == "-" ]] && ldflags=""
  echo "hack/tools.sh: building $name from $module@$version ($pkg) into ${TOOLS_DIR#"$ROOT"/}" >&2
  # The module cache is read-only: nothing may be written there (-o points outside it).
  (cd "$dir" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly \
     go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$TOOLS_DIR/$name.tmp" "$pkg") ||
    die "building $name from $module@$version failed"
  mv -f "$TOOLS_DIR/$name.tmp" "$TOOLS_DIR/$name"
  echo "$want" >"$stamp"
}

case "${1:-}" in
  --print)
    echo "$TOOLS_DIR"
    exit 0
    ;;
  --module)
    line=$(pins "${2:?usage: hack/tools.sh --module NAME}")
    [[ -n "$line" ]] || die "no tool named ${2} in hack/tools/pins.tsv or bench-pins.tsv"
    IFS=$'\t' read -r _ module version _ _ sum _ <<<"$line"
    module_dir "$module" "$version" "$sum"
    exit 0
    ;;
esac

mkdir -p "$TOOLS_DIR"
names=("$@")
if ((${#names[@]} == 0)); then
  mapfile -t names < <(pins | cut -f1)
fi
for name in "${names[@]}"; do
  line=$(pins "$name")
  [[ -n "$line" ]] || die "no tool named $name in hack/tools/pins.tsv"
  IFS=$'\t' read -r n module version pkg tags sum ldflags <<<"$line"
  [[ -n "$sum" ]] || die "hack/tools/pins.tsv: the line of $n needs 6 or 7 tab-separated fields"
  build "$n" "$module" "$version" "$pkg" "$tags" "$sum" "${ldflags:--}"
done
