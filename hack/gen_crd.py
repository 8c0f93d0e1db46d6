#!/usr/bin/env python3
"""Write crds/trainingjob.yaml from the pydantic models; `--check` fails (exit 1) with a diff on drift."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from kubetrain.api.crd import render  # noqa: E402

TARGET = ROOT / "crds" / "trainingjob.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    wanted = render()
    current = TARGET.read_text() if TARGET.exists() else ""
    if args.check:
        if current == wanted:
            return 0
        sys.stdout.writelines(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                fromfile=f"{TARGET.relative_to(ROOT)} (committed)",
                tofile=f"{TARGET.relative_to(ROOT)} (generated)",
            )
        )
        print(
            f"\n{TARGET.relative_to(ROOT)} is stale: run `python hack/gen_crd.py`", file=sys.stderr
        )
        return 1
    if current != wanted:
        TARGET.write_text(wanted)
        print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
