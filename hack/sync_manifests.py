#!/usr/bin/env python3
"""Copy crds/trainingjob.yaml into manifests/base/crd/ (kustomize will not read outside its root).

python hack/sync_manifests.py          # write the copy
python hack/sync_manifests.py --check  # exit 1 when the copy is stale (CI, tests)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "crds" / "trainingjob.yaml"
COPY = ROOT / "manifests" / "base" / "crd" / "trainingjob.yaml"


def main(argv: list[str]) -> int:
    text = SOURCE.read_text()
    if "--check" in argv:
        if not COPY.exists() or COPY.read_text() != text:
            print(
                f"{COPY.relative_to(ROOT)} is stale: run python hack/sync_manifests.py",
                file=sys.stderr,
            )
            return 1
        return 0
    COPY.parent.mkdir(parents=True, exist_ok=True)
    COPY.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
