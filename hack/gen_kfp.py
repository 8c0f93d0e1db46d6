#!/usr/bin/env python3
"""Compile every committed KFP YAML from code; `--check` exits 1 when a committed file drifted.

Output is deterministic: the components' base image is pinned (KUBETRAIN_KFP_IMAGE is ignored
here), and the only line that depends on the installed SDK, `sdkVersion: kfp-X.Y.Z`, is ignored
when comparing so a patch upgrade of kfp does not read as drift.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "components" / "kubetrain_kfp"
PIPELINES_OUT = PKG / "pipelines" / "compiled"
COMPONENTS_OUT = PKG / "compiled"
_SDK_LINE = re.compile(r"^(# *)?sdkVersion: .*$", re.MULTILINE)


def targets() -> dict[Path, Any]:
    os.environ.pop("KUBETRAIN_KFP_IMAGE", None)  # compiled files name the released image
    sys.path.insert(0, str(ROOT / "components"))
    from kubetrain_kfp.components import ALL
    from kubetrain_kfp.pipelines.eks_sagemaker import eks_train_sagemaker_deploy
    from kubetrain_kfp.pipelines.eks_training_transform import eks_train_batch_transform
    from kubetrain_kfp.pipelines.spot_training_transform import spot_training_batch_transform

    out: dict[Path, Any] = {
        PIPELINES_OUT / "eks_train_sagemaker_deploy.yaml": eks_train_sagemaker_deploy,
        PIPELINES_OUT / "spot_training_batch_transform.yaml": spot_training_batch_transform,
        PIPELINES_OUT / "eks_train_batch_transform.yaml": eks_train_batch_transform,
    }
    out.update({COMPONENTS_OUT / f"{name}.yaml": comp for name, comp in ALL.items()})
    return out


def compile_text(func: Callable[..., Any]) -> str:
    from kfp import compiler

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.yaml"
        compiler.Compiler().compile(func, str(path))
        return path.read_text()


def comparable(text: str) -> str:
    return _SDK_LINE.sub("sdkVersion: <ignored>", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if committed YAML drifted")
    opts = parser.parse_args(argv)
    drifted = []
    for path, func in targets().items():
        text = compile_text(func)
        if opts.check:
            if not path.exists() or comparable(path.read_text()) != comparable(text):
                drifted.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    for path in drifted:
        print(f"drift: {path.relative_to(ROOT)} (run: python hack/gen_kfp.py)", file=sys.stderr)
    return 1 if drifted else 0


if __name__ == "__main__":
    sys.exit(main())
