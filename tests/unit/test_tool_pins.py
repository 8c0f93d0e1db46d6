"""hack/tools/pins.tsv: one well-formed line per pinned Go tool (hack/tools.sh builds them)."""

from __future__ import annotations

import re
from pathlib import Path

PINS = Path(__file__).resolve().parents[2] / "hack" / "tools" / "pins.tsv"


def pin_lines() -> list[list[str]]:
    lines = PINS.read_text().splitlines()
    return [line.split("\t") for line in lines if line.strip() and not line.startswith("#")]


def test_every_pin_has_six_fields_a_version_and_a_module_hash() -> None:
    rows = pin_lines()
    assert rows
    for row in rows:
        assert len(row) in (6, 7), row  # the 7th: extra -ldflags
        name, module, version, package, tags, digest = row[:6]
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", name), name
        assert "." in module.split("/")[0], module  # a module path, e.g. github.com/...
        assert re.fullmatch(r"v\d+\.\d+\.\d+", version), version  # a release, not a branch
        assert package == "." or package.startswith("./"), package
        assert tags == "-" or re.fullmatch(r"[a-z0-9_,]+", tags), tags
        assert re.fullmatch(r"h1:[A-Za-z0-9+/]{43}=", digest), digest


def test_tool_names_are_unique() -> None:
    names = [row[0] for row in pin_lines()]
    assert len(names) == len(set(names))
