"""Output for people (aligned tables, short durations) and for scripts (`-o json|yaml`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from kubetrain.client.views import parse_time


def table(
    rows: Sequence[Sequence[object]], header: Sequence[str], out: TextIO = sys.stdout
) -> None:
    """kubectl-style: upper-case header, columns separated by three spaces, no borders."""
    cells = [
        [str(h).upper() for h in header],
        *[["" if c is None else str(c) for c in r] for r in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        out.write("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def dump(obj: Any, fmt: str, out: TextIO = sys.stdout) -> None:
    if fmt == "json":
        out.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    else:
        import yaml

        out.write(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))


def age(timestamp: str, now: datetime | None = None) -> str:
    """'3h', '12m', '40s', '5d' like kubectl; '' when unknown."""
    then = parse_time(timestamp)
    if then is None:
        return ""
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def section(title: str, out: TextIO = sys.stdout) -> None:
    out.write(f"\n{title}:\n")
