"""No torn resume: SIGKILL a writer at random moments; discovery must return the newest complete one.

"Complete" is judged independently of the runtime here: every listed file present with the
listed size and the exact bytes the writer produces for that step.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from checkpoint_writer import PARTS, pattern

from kubetrain.runtime import PosixTier, discover
from kubetrain.runtime.manifest import parse_name

ROOT = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("checkpoint_writer.py")
TRIALS = 200


def truly_complete(root: Path, manifest_file: Path) -> int | None:
    """The step of a manifest whose files all hold the expected bytes, else None."""
    try:
        doc = json.loads(manifest_file.read_bytes())
    except (OSError, ValueError):
        return None
    step = int(doc["step"])
    paths = sorted(f["path"] for f in doc["files"])
    if len(paths) != PARTS:
        return None
    for entry in doc["files"]:
        index = int(entry["path"].rsplit("part-", 1)[1].removesuffix(".bin"))
        try:
            if (root / entry["path"]).read_bytes() != pattern(step, index):
                return None
        except FileNotFoundError:
            return None
    return step


def test_sigkill_during_saves_never_yields_a_torn_resume(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    rng = random.Random()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(WRITER.parent)]),
    }
    newest_seen = 0
    mid_save_kills = 0
    advanced = 0
    for trial in range(TRIALS):
        proc = subprocess.Popen(
            [sys.executable, "-S", str(WRITER), str(root)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", line + proc.stdout.read()
        time.sleep(rng.uniform(0, 0.03))  # the random kill moment, not a wait for state
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL

        found = discover(PosixTier(root))
        complete = {
            m.name.removesuffix(".json"): truly_complete(root, m)
            for m in (root / "manifests").glob("step-*.json")
        }
        valid = {name: step for name, step in complete.items() if step is not None}
        if not valid:  # killed before the first commit ever
            assert found is None, (trial, found, sorted(complete))
            continue
        expected = max(valid, key=lambda n: (valid[n], n))
        assert found is not None and found.name == expected, (trial, found, sorted(complete))
        assert found.step >= newest_seen, f"trial {trial}: resume point went backwards"
        advanced += found.step > newest_seen
        newest_seen = found.step
        orphans = [
            d.name
            for d in (root / "data").iterdir()
            if (parsed := parse_name(d.name)) and parsed[0] > found.step
        ]
        mid_save_kills += bool(orphans)
    print(
        f"\n{TRIALS} SIGKILL trials: discovery always returned the newest complete checkpoint; "
        f"{mid_save_kills} kills landed mid-save, the newest checkpoint advanced in {advanced}, "
        f"final step {newest_seen}"
    )
    assert mid_save_kills >= TRIALS // 10, "kills must land inside saves for this test to mean much"
    assert advanced >= TRIALS // 10
