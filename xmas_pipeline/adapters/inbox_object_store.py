"""The inbox in an object store (`s3://bucket/prefix`, through fsspec and s3fs).

The same guarantees as the folder, from the store itself:

- **Atomic**: an event is one PUT of the whole body. S3 (and every S3-compatible server)
  makes an object visible under its key only once the upload is complete, so there is no
  temporary object and no rename.
- **Durable**: S3 answers a PUT only once the object is stored redundantly, and reads
  after a write are strongly consistent; `put` returns after that answer. botocore sends a
  checksum of the body, so a body damaged on the way is refused, not stored.
- **Exactly once**: the key is unique (a nanosecond timestamp and a random UUID), and the
  PUT is conditional (`If-None-Match: *`), so nothing is ever overwritten. When a PUT is
  retried after its answer was lost, the retry finds the first attempt's object: if it
  holds the same bytes, the write is done.
- **Arrival time**: the object's `LastModified`, set by the store, in UTC.

Credentials, region and endpoint come from botocore's usual sources (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` for an S3-compatible
server, or a profile or instance role).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from upath import UPath


def _as_utc(moment: datetime) -> datetime:
    # S3 times are UTC; a naive one (some compatible servers) is UTC too.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _basename(key: str) -> str:
    return key.rstrip("/").rsplit("/", 1)[-1]


class ObjectStore:
    def __init__(self, root: UPath) -> None:
        self.root = root
        self.fs = root.fs

    def put(self, folder: UPath, name: str, body: bytes) -> None:
        key = (folder / name).path
        try:
            self._put_new(key, body)
        except OSError:
            raise
        except Exception as exc:
            # The client raises errors of its own for a store it cannot reach or missing
            # credentials; callers handle a failed write as an OSError (the intake answers
            # 503, and the webhook's sender retries).
            raise OSError(f"could not store {key}: {exc}") from exc

    def _put_new(self, key: str, body: bytes) -> None:
        try:
            self.fs.pipe_file(key, body, mode="create")
        except FileExistsError:
            # The key is unique to this write, so an object already there is this write's
            # own earlier attempt (retried after its answer was lost) if it holds the same
            # bytes; anything else is never overwritten.
            if self.fs.cat_file(key) != body:
                raise

    def subfolders(self, folder: UPath) -> list[str]:
        return [_basename(e["name"]) for e in self._list(folder) if e["type"] == "directory"]

    def arrivals(self, folder: UPath) -> dict[str, datetime]:
        """Each object directly under `folder` with its arrival (`LastModified`) time."""
        return {
            _basename(entry["name"]): self._arrival(entry)
            for entry in self._list(folder)
            if entry["type"] == "file"
        }

    def read(self, path: UPath) -> bytes:
        return bytes(self.fs.cat_file(path.path))

    def _list(self, folder: UPath) -> list[dict[str, Any]]:
        # fsspec keeps listings without expiry; another process (the intake) adds objects,
        # so every listing must go to the store.
        self.fs.invalidate_cache(folder.path)
        try:
            return list(self.fs.ls(folder.path, detail=True))
        except FileNotFoundError:  # no object under this prefix yet
            return []

    def _arrival(self, entry: dict[str, Any]) -> datetime:
        modified = entry.get("LastModified")
        if not isinstance(modified, datetime):
            # Stores other than S3 name it differently: ask the filesystem.
            modified = self.fs.modified(entry["name"])
        return _as_utc(modified)
