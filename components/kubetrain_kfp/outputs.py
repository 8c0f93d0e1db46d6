"""Move plain results into KFP artifacts; shared by every component wrapper.

Typed as `Any` on the artifact side so this module does not import kfp: the logic (and its tests)
run without the KFP SDK, and the wrappers pass in whatever artifact objects KFP created.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any


def setup_logging() -> None:
    """INFO logs on stderr with timestamps: this is what the KFP UI shows for the task."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def fill_artifact(artifact: Any, uri: str, metadata: Mapping[str, Any]) -> None:
    """Point an output artifact at the remote object (no bytes copied) and attach metadata."""
    if uri:
        artifact.uri = uri
    for key, value in metadata.items():
        artifact.metadata[key] = json.loads(json.dumps(value, default=str))


def fill_metrics(metrics: Any, values: Mapping[str, float]) -> None:
    for key, value in sorted(values.items()):
        metrics.log_metric(key, float(value))


def as_dict(value: Any, name: str) -> dict[str, Any]:
    """KFP passes `dict` inputs as dicts, and None when they were left out."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        from kubetrain_kfp.validate import InputError

        raise InputError(f"input '{name}' must be a JSON object, got {type(value).__name__}")
    return value


def as_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        from kubetrain_kfp.validate import InputError

        raise InputError(f'input \'{name}\' must be a list of strings, e.g. ["python", "train.py"]')
    return [str(v) for v in value]


def integral(value: Any) -> Any:
    """KFP carries dict inputs as protobuf Structs, where every number is a double: `0` arrives
    as `0.0`, which integer fields (a CRD's, an AWS API's) refuse. Whole floats become ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value
