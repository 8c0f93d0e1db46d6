"""The S3 tier against moto in server mode: commit, discovery, GC, ordering, partial uploads."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from kubetrain.runtime import AlreadyCommitted, Checkpointer, S3Tier, discover
from kubetrain.runtime.manifest import FileEntry, Manifest, checkpoint_name


@pytest.fixture
def bucket(aws_env: str) -> str:
    name = f"ckpt-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    return name


class Recorder:
    """Every S3 call the runtime makes, in order, through botocore's event hooks."""

    def __init__(self) -> None:
        self.client = boto3.client("s3")
        self.calls: list[tuple[str, str]] = []
        self.client.meta.events.register("before-parameter-build.s3.*", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        key = params.get("Key", "")
        if model.name == "DeleteObjects":
            key = ",".join(o["Key"] for o in params["Delete"]["Objects"])
        self.calls.append((model.name, key))

    def index(self, op: str, key_part: str) -> int:
        for i, (name, key) in enumerate(self.calls):
            if name == op and key_part in key:
                return i
        raise AssertionError(f"no {op} on {key_part} in {self.calls}")


def state(n: int) -> dict[str, Any]:
    return {"weights": [n] * 1000, "step": n}


def test_mirror_commits_data_first_manifest_last_and_collects(tmp_path: Path, bucket: str) -> None:
    rec = Recorder()
    uri = f"s3://{bucket}/jobs/toy"
    ckpt = Checkpointer(tmp_path / "local", s3_uri=uri, keep=2, s3_client=rec.client)
    made = []
    for step in range(1, 6):
        made.append(ckpt.save(step, state(step)))
        assert ckpt.mirror is not None and ckpt.mirror.flush(30)  # one at a time: all mirrored
    assert ckpt.mirror is not None and ckpt.mirror.errors == []

    remote = S3Tier(uri)
    found = discover(remote)
    assert found is not None and found.name == made[-1].name
    assert sorted(remote.list_names("manifests")) == sorted(f"{m.name}.json" for m in made[-2:])
    assert sorted(remote.list_names("data")) == sorted(m.name for m in made[-2:])

    for m in made:
        manifest_put = rec.index("PutObject", m.path)
        for f in m.files:
            assert rec.index("PutObject", f.path) < manifest_put, "manifest before its data"
    for m in made[:3]:
        assert rec.index("DeleteObject", m.path) < rec.index("DeleteObjects", m.data_dir), (
            "data deleted before its manifest"
        )


def test_manifest_put_is_create_only(tmp_path: Path, bucket: str) -> None:
    remote = S3Tier(f"s3://{bucket}/x")
    remote.create("manifests/step-000000000001-a.json", b"{}")
    with pytest.raises(AlreadyCommitted):
        remote.create("manifests/step-000000000001-a.json", b"{}")
    assert remote.read("manifests/step-000000000001-a.json") == b"{}"


def upload_checkpoint(remote: S3Tier, step: int, ckpt_id: str, sizes: tuple[int, ...]) -> Manifest:
    name = checkpoint_name(step, ckpt_id)
    files = tuple(FileEntry(f"data/{name}/rank-{i}.bin", size) for i, size in enumerate(sizes))
    return Manifest(
        job="j", attempt=1, step=step, kind="periodic", world_size=len(sizes),
        files=files, id=ckpt_id, codec="pickle",
    )  # fmt: skip


def put(remote: S3Tier, path: str, size: int) -> None:
    remote.client.put_object(Bucket=remote.bucket, Key=remote.key(path), Body=b"x" * size)


def test_partial_uploads_are_never_discovered(bucket: str) -> None:
    remote = S3Tier(f"s3://{bucket}/p")
    good = upload_checkpoint(remote, 10, "good", (100, 50))
    for f in good.files:
        put(remote, f.path, f.size)
    remote.create(good.path, good.to_json())
    assert discover(remote) == good

    # Newer data uploaded without its manifest (uploader killed): not a checkpoint.
    orphan = upload_checkpoint(remote, 20, "orphan", (100, 50))
    for f in orphan.files:
        put(remote, f.path, f.size)
    # Newer manifest whose data is still arriving (e.g. FSx auto-export's per-file order).
    early = upload_checkpoint(remote, 30, "early", (100, 50))
    put(remote, early.files[0].path, early.files[0].size)
    remote.client.put_object(Bucket=remote.bucket, Key=remote.key(early.path), Body=early.to_json())
    # Newer manifest with a truncated object.
    short = upload_checkpoint(remote, 40, "short", (100, 50))
    put(remote, short.files[0].path, 99)
    put(remote, short.files[1].path, 50)
    remote.create(short.path, short.to_json())
    assert discover(remote) == good

    put(remote, early.files[1].path, early.files[1].size)  # the straggler lands
    assert discover(remote) == early


def test_restore_from_s3_into_an_empty_local_tier(tmp_path: Path, bucket: str) -> None:
    uri = f"s3://{bucket}/restore"
    first = Checkpointer(tmp_path / "node-a", s3_uri=uri, every_steps=3)
    for step in range(1, 8):
        first.step(step, state(step))
    first.close()  # what runs at exit: waits (bounded) for the mirror
    assert first.mirror is not None and first.mirror.errors == []

    loaded: dict[str, Any] = {"weights": None, "step": None}
    second = Checkpointer(tmp_path / "node-b", s3_uri=uri)  # a new node: nothing local
    assert second.restore(loaded) == 6
    assert loaded == state(6)
    assert discover(second.local) is not None  # fetched and committed locally too
