"""Manifest names, commit, discovery and garbage collection on the POSIX tier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetrain.runtime.manifest import (
    FileEntry,
    Manifest,
    ManifestError,
    checkpoint_name,
    parse_name,
)
from kubetrain.runtime.posix import PosixTier
from kubetrain.runtime.store import AlreadyCommitted, collect_garbage, commit, discover


def write_checkpoint(
    tier: PosixTier,
    step: int,
    ckpt_id: str,
    sizes: tuple[int, ...] = (10, 3),
    *,
    manifest: bool = True,
) -> Manifest:
    name = checkpoint_name(step, ckpt_id)
    data = tier.make_data_dir(f"data/{name}")
    files = []
    for i, size in enumerate(sizes):
        (data / f"rank-{i}.bin").write_bytes(b"x" * size)
        files.append(FileEntry(f"data/{name}/rank-{i}.bin", size))
    m = Manifest(
        job="j", attempt=1, step=step, kind="periodic", world_size=len(sizes),
        files=tuple(files), id=ckpt_id, codec="pickle",
    )  # fmt: skip
    if manifest:
        commit(tier, m)
    return m


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("step-000000000042-ab12cd34", (42, "ab12cd34")),
        ("step-000000000042-ab12cd34.json", (42, "ab12cd34")),
        ("step-42-ab12cd34.json", None),
        (".step-000000000042-ab12cd34.json.tmp-123", None),
        ("step-000000000042-AB.json", None),
        ("LATEST", None),
    ],
)
def test_parse_name(name: str, expected: tuple[int, str] | None) -> None:
    assert parse_name(name) == expected


def test_checkpoint_name_rejects_out_of_range() -> None:
    assert checkpoint_name(7, "a1") == "step-000000000007-a1"
    with pytest.raises(ValueError, match="12 digits"):
        checkpoint_name(10**12, "a1")
    with pytest.raises(ValueError, match=r"\[0-9a-z\]"):
        checkpoint_name(1, "../x")


def test_manifest_round_trip_and_fields(tmp_path: Path) -> None:
    m = write_checkpoint(PosixTier(tmp_path), 5, "abc")
    doc = json.loads((tmp_path / m.path).read_bytes())
    assert set(doc) >= {"format", "job", "attempt", "step", "kind", "world_size", "files",
                        "created_at", "writer", "parent"}  # fmt: skip
    assert doc["files"] == [{"path": f.path, "size": f.size} for f in m.files]
    assert Manifest.from_json(m.to_json(), expected_name=m.name) == m


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(step=6), "describes checkpoint"),
        (lambda d: d.update(format=99), "format 99"),
        (lambda d: d.update(kind="sometimes"), "kind"),
        (lambda d: d["files"].append({"path": "data/other/x", "size": 1}), "outside"),
        (lambda d: d.pop("files"), "files"),
    ],
)
def test_manifest_rejects_untrustworthy(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    m = write_checkpoint(PosixTier(tmp_path), 5, "abc")
    doc = json.loads(m.to_json())
    mutate(doc)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(json.dumps(doc).encode(), expected_name=m.name)


def test_discover_picks_newest_complete(tmp_path: Path) -> None:
    tier = PosixTier(tmp_path)
    assert discover(tier) is None
    write_checkpoint(tier, 10, "a")
    good = write_checkpoint(tier, 20, "b")
    write_checkpoint(tier, 30, "c", manifest=False)  # data without manifest: never a checkpoint
    short = write_checkpoint(tier, 40, "d")
    (tmp_path / short.files[0].path).write_bytes(b"x" * 9)  # torn: size differs
    gone = write_checkpoint(tier, 50, "e")
    (tmp_path / gone.files[1].path).unlink()  # a listed file is missing
    (tmp_path / "manifests" / ".step-000000000060-f.json.tmp-1").write_text("{")  # in-flight
    (tmp_path / "manifests" / "step-000000000070-g.json").write_text("{not json")
    found = discover(tier)
    assert found is not None
    assert found.name == good.name


def test_step_order_is_numeric_not_lexical(tmp_path: Path) -> None:
    tier = PosixTier(tmp_path)
    write_checkpoint(tier, 9, "z")
    newest = write_checkpoint(tier, 10, "a")
    assert discover(tier) == newest


def test_commit_is_create_only_and_checks_data(tmp_path: Path) -> None:
    tier = PosixTier(tmp_path)
    m = write_checkpoint(tier, 1, "a")
    with pytest.raises(AlreadyCommitted):
        commit(tier, m)
    partial = write_checkpoint(tier, 2, "b", manifest=False)
    (tmp_path / partial.files[0].path).unlink()
    with pytest.raises(ManifestError, match="incomplete"):
        commit(tier, partial)
    assert not (tmp_path / partial.path).exists()


def test_data_dir_is_never_reused(tmp_path: Path) -> None:
    tier = PosixTier(tmp_path)
    write_checkpoint(tier, 1, "a")
    with pytest.raises(FileExistsError):
        tier.make_data_dir("data/step-000000000001-a")


class RecordingTier(PosixTier):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def delete(self, path: str) -> None:
        self.calls.append(("delete", path))
        super().delete(path)

    def delete_tree(self, directory: str) -> None:
        self.calls.append(("delete_tree", directory))
        super().delete_tree(directory)


def test_gc_keeps_last_k_and_deletes_manifest_first(tmp_path: Path) -> None:
    tier = RecordingTier(tmp_path)
    made = [write_checkpoint(tier, s, f"i{s}") for s in (1, 2, 3, 4, 5)]
    orphan_old = write_checkpoint(tier, 2, "orphan", manifest=False)
    in_flight = write_checkpoint(tier, 6, "next", manifest=False)
    removed = collect_garbage(tier, keep=2)
    assert sorted(removed) == sorted([m.name for m in made[:3]] + [orphan_old.name])
    assert sorted(p.name for p in (tmp_path / "manifests").iterdir()) == [
        f"{m.name}.json" for m in made[3:]
    ]
    assert (tmp_path / in_flight.data_dir).is_dir()  # a save in flight is never collected
    assert discover(tier) == made[4]
    for m in made[:3]:
        order = tier.calls.index(("delete", m.path)), tier.calls.index(("delete_tree", m.data_dir))
        assert order[0] < order[1], f"data of {m.name} deleted before its manifest"


def test_gc_counts_only_complete_checkpoints(tmp_path: Path) -> None:
    tier = PosixTier(tmp_path)
    write_checkpoint(tier, 1, "a")
    torn = write_checkpoint(tier, 2, "b")
    (tmp_path / torn.files[0].path).unlink()
    good = write_checkpoint(tier, 3, "c")
    newest_torn = write_checkpoint(tier, 4, "d")
    (tmp_path / newest_torn.files[0].path).unlink()
    collect_garbage(tier, keep=1)
    assert discover(tier) == good  # a broken manifest never pushes a good checkpoint out
    assert not (tmp_path / torn.path).exists()  # older than the newest good one: garbage
    assert (tmp_path / newest_torn.path).exists()  # newer: maybe a mirror still uploading
    with pytest.raises(ValueError, match="at least one"):
        collect_garbage(tier, keep=0)
