"""The S3 tier: an asynchronous mirror and backstop, never the emergency target.

S3 has no rename, so the commit is a create-only PUT of the manifest (`If-None-Match: *`) after
every data object is uploaded; a single-object PUT is atomic, so a reader sees the whole manifest
or none. boto3 is imported lazily: the endpoint comes from the standard AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

from kubetrain.runtime.manifest import Manifest
from kubetrain.runtime.posix import PosixTier
from kubetrain.runtime.store import AlreadyCommitted, collect_garbage, commit, load_complete

log = logging.getLogger(__name__)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix without trailing slash) of `s3://bucket/prefix`."""
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise ValueError(
            f"checkpoint S3 URI {uri!r} must look like s3://<bucket>/<prefix> "
            "(set KUBETRAIN_CHECKPOINT_S3_URI / spec.checkpoint.s3Uri)"
        )
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


class S3Tier:
    def __init__(self, uri: str, client: Any = None) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        if client is None:
            import boto3  # lazy: the core runs without AWS libraries until S3 is configured

            client = boto3.client("s3")
        self.client = client

    def __repr__(self) -> str:
        return f"S3Tier({self.uri()!r})"

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def uri(self, path: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(path)}".rstrip("/")

    def _list(self, prefix: str, delimiter: str | None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        pages = self.client.get_paginator("list_objects_v2").paginate(**kwargs)
        return list(pages)

    def list_names(self, top: str) -> list[str]:
        prefix = self.key(top) + "/"
        names: list[str] = []
        for page in self._list(prefix, "/"):
            names += [o["Key"][len(prefix) :] for o in page.get("Contents", [])]
            names += [
                p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])
            ]
        return names

    def read(self, path: str) -> bytes | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(path))["Body"]
            return bytes(body.read())
        except self.client.exceptions.NoSuchKey:
            return None

    def sizes_under(self, directory: str) -> dict[str, int]:
        strip = len(self.key("")) if self.prefix else 0
        return {
            o["Key"][strip:]: int(o["Size"])
            for page in self._list(self.key(directory) + "/", None)
            for o in page.get("Contents", [])
        }

    def create(self, path: str, payload: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.key(path), Body=payload, IfNoneMatch="*"
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise AlreadyCommitted(f"{self.uri(path)} exists") from exc
            raise

    def upload_file(self, local: Path, path: str) -> None:
        self.client.upload_file(str(local), self.bucket, self.key(path))

    def download_tree(self, directory: str, dest: PosixTier) -> None:
        for path in self.sizes_under(directory):
            target = dest.local_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.bucket, self.key(path), str(target))

    def delete(self, path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(path))

    def delete_tree(self, directory: str) -> None:
        keys = [self.key(p) for p in self.sizes_under(directory)]
        for i in range(0, len(keys), 1000):
            objects = [{"Key": k} for k in keys[i : i + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})


def mirror_one(local: PosixTier, remote: S3Tier, manifest: Manifest) -> str:
    """Upload one committed local checkpoint: data first, then the create-only manifest PUT."""
    for entry in manifest.files:
        remote.upload_file(local.local_path(entry.path), entry.path)
    try:
        return commit(remote, manifest)
    except AlreadyCommitted:
        load_complete(remote, manifest.name)  # same bytes uploaded by an earlier try: fine
        return remote.uri(manifest.path)


class S3Mirror:
    """A background thread that copies committed checkpoints to S3 and collects garbage there.

    Only the newest pending checkpoint is uploaded: an older one still queued is superseded, and
    its local files may already be garbage-collected.
    """

    def __init__(self, local: PosixTier, remote: S3Tier, keep: int) -> None:
        self.local, self.remote, self.keep = local, remote, keep
        self._pending: queue.Queue[Manifest | None] = queue.Queue()
        self._cond = threading.Condition()
        self._outstanding = 0  # submitted and not yet mirrored, superseded or failed
        self.mirrored: list[str] = []  # URIs committed on S3, oldest first (for status and tests)
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="kubetrain-s3-mirror", daemon=True)
        self._thread.start()

    def submit(self, manifest: Manifest) -> None:
        with self._cond:
            self._outstanding += 1
        self._pending.put(manifest)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted is mirrored (or failed); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._outstanding == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        self._pending.put(None)
        self._thread.join(timeout)

    def _done(self, count: int) -> None:
        with self._cond:
            self._outstanding -= count
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            taken = 1
            while not self._pending.empty():  # coalesce: only the newest is worth uploading
                newer = self._pending.get()
                if newer is None:
                    self._pending.put(None)
                    break
                item, taken = newer, taken + 1
            self._mirror(item)
            self._done(taken)

    def _mirror(self, manifest: Manifest) -> None:
        try:
            uri = mirror_one(self.local, self.remote, manifest)
            self.mirrored.append(uri)
            collect_garbage(self.remote, self.keep)
        except Exception as exc:  # OSError, ManifestError, botocore: report, keep the thread alive
            self.errors.append(f"{manifest.name}: {exc}")
            log.warning("S3 mirror of %s failed: %s", manifest.name, exc)
