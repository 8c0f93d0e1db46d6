"""hack/tools.sh: a pin's module hash is checked before anything is built, and a tool whose line
did not change is not rebuilt (tests and `make test` call it every time)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cluster import ROOT

PINS = ROOT / "hack" / "tools" / "pins.tsv"


def tools_sh(tmp_path: Path, pins: str, *args: str) -> subprocess.CompletedProcess[str]:
    pins_file = tmp_path / "pins.tsv"
    pins_file.write_text(pins)
    env = dict(
        os.environ, KUBETRAIN_TOOLS_PINS=str(pins_file), KUBETRAIN_TOOLS_DIR=str(tmp_path / "bin")
    )
    return subprocess.run(
        [str(ROOT / "hack" / "tools.sh"), *args], env=env, capture_output=True, text=True
    )


def aemm_line() -> str:
    return next(line for line in PINS.read_text().splitlines() if line.startswith("ec2-metadata"))


def test_a_wrong_module_hash_stops_the_build(tmp_path: Path) -> None:
    fields = aemm_line().split("\t")
    fields[5] = "h1:" + "A" * 43 + "="
    out = tools_sh(tmp_path, "\t".join(fields) + "\n")
    assert out.returncode != 0
    assert "the pin says h1:AAAA" in out.stderr, out.stderr
    assert not (tmp_path / "bin" / "ec2-metadata-mock").exists()


def test_an_unchanged_pin_is_not_rebuilt_and_a_changed_one_is(tmp_path: Path) -> None:
    line = aemm_line()
    first = tools_sh(tmp_path, line + "\n")
    assert first.returncode == 0, first.stderr
    binary = tmp_path / "bin" / "ec2-metadata-mock"
    built = binary.stat().st_mtime_ns
    assert subprocess.run([str(binary), "--help"], capture_output=True).returncode == 0

    again = tools_sh(tmp_path, line + "\n")
    assert again.returncode == 0 and "building" not in again.stderr
    assert binary.stat().st_mtime_ns == built

    fields = line.split("\t")
    fields[4] = "kubetrain_test_tag"  # another build of the same module: the stamp differs
    changed = tools_sh(tmp_path, "\t".join(fields) + "\n")
    assert changed.returncode == 0, changed.stderr
    assert "building ec2-metadata-mock" in changed.stderr


def test_an_unknown_tool_is_an_error(tmp_path: Path) -> None:
    out = tools_sh(tmp_path, aemm_line() + "\n", "no-such-tool")
    assert out.returncode != 0 and "no tool named no-such-tool" in out.stderr
