"""The inbox: one JSON file per received event, sharded by the UTC day of receipt.

Layout (docs/architecture.md, "The inbox")::

    <root>/signups/<YYYY-MM-DD>/<ns timestamp>-<uuid>.json
    <root>/bookings/<YYYY-MM-DD>/...
    <root>/email-events/<YYYY-MM-DD>/...
    <root>/.tmp/...            temporary files, outside every day folder (folder only)

The root is a folder (`inbox_folder.py`: temp file, fsync, atomic rename) or an object
store such as `s3://bucket/prefix` (`inbox_object_store.py`: one conditional PUT). Either
way a write is atomic, durable before `write` returns, and never overwrites anything, and
a file's arrival time is the time its store gives it (modification time, `LastModified`).
This module holds what both share: the layout, and what the sensors and readers see.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from upath import UPath

from xmas_pipeline.adapters.inbox_folder import FolderStore
from xmas_pipeline.adapters.inbox_object_store import ObjectStore

KINDS: tuple[str, ...] = ("signups", "bookings", "email-events")
# Beside an event file, `<name>.request`: the request it came in (client address, user
# agent), for double opt-in's consent records. Not a `.json` name, so no reader lists it.
REQUEST_SUFFIX = ".request"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class InboxFile:
    kind: str
    day: str
    name: str
    path: str
    received_at: datetime  # the file's arrival (modification time, LastModified), in UTC

    @property
    def ref(self) -> str:
        """A short, stable reference for reports: `signups/2025-12-01/x.json`."""
        return f"{self.kind}/{self.day}/{self.name}"


def utc_day(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")


class _Store(Protocol):
    """Where the files live: a local folder or an object store."""

    def put(self, folder: UPath, name: str, body: bytes) -> None: ...

    def subfolders(self, folder: UPath) -> list[str]: ...

    def arrivals(self, folder: UPath) -> dict[str, datetime]: ...

    def read(self, path: UPath) -> bytes: ...


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def _new_name() -> str:
    # Sorts by arrival; the UUID keeps names unique across processes and hosts.
    return f"{time.time_ns():020d}-{uuid.uuid4().hex}.json"


class Inbox:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = UPath(root)
        self._store: _Store = (
            FolderStore(self.root) if _is_local(self.root) else ObjectStore(self.root)
        )

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        kind: str,
        body: bytes,
        received_at: datetime | None = None,
        request: dict[str, str] | None = None,
    ) -> InboxFile:
        """Store one event durably; returns only once it is safely in its day folder.
        `request`: details of the request kept beside it (written first, so an event
        file is never seen without them)."""
        if kind not in KINDS:
            raise ValueError(f"unknown inbox kind {kind!r}")
        moment = (received_at or datetime.now(UTC)).astimezone(UTC)
        day = utc_day(moment)
        name = _new_name()
        folder = self.root / kind / day
        if request:
            self._store.put(folder, name + REQUEST_SUFFIX, json.dumps(request).encode("utf-8"))
        self._store.put(folder, name, body)
        return InboxFile(kind=kind, day=day, name=name, path=str(folder / name), received_at=moment)

    def write_json(self, kind: str, payload: Any, received_at: datetime | None = None) -> InboxFile:
        return self.write(kind, json.dumps(payload).encode("utf-8"), received_at)

    # -- reading -------------------------------------------------------------------------

    def days(self, kind: str) -> list[str]:
        return sorted(d for d in self._store.subfolders(self.root / kind) if _DAY.match(d))

    def files(self, kind: str, day: str) -> list[InboxFile]:
        folder = self.root / kind / day
        found = [
            InboxFile(kind=kind, day=day, name=name, path=str(folder / name), received_at=at)
            for name, at in self._store.arrivals(folder).items()
            if name.endswith(".json")
        ]
        return sorted(found, key=lambda f: f.name)

    def read(self, item: InboxFile) -> bytes:
        return self._store.read(UPath(item.path))

    def request_of(self, item: InboxFile) -> dict[str, str]:
        """The request details kept beside `item` ({} for a file without: older files, a
        file dropped by hand)."""
        try:
            data = json.loads(self._store.read(UPath(item.path + REQUEST_SUFFIX)))
        except (FileNotFoundError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}

    def remove(self, item: InboxFile) -> None:
        """Delete one file (a forgotten person's, one past retention); already gone is fine."""
        path = self.root / item.kind / item.day / item.name
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):  # the request details go with it
            (self.root / item.kind / item.day / (item.name + REQUEST_SUFFIX)).unlink()

    def remove_day(self, kind: str, day: str) -> int:
        """Delete a whole day folder (past retention): the files removed."""
        items = self.files(kind, day)
        for item in items:
            self.remove(item)
        folder = self.root / kind / day
        if _is_local(self.root) and folder.exists() and not any(folder.iterdir()):
            folder.rmdir()  # nothing is written to a day long past
        return len(items)

    def fingerprint(self, kind: str, day: str) -> str:
        """Changes whenever a file is added to (or replaced in) a day folder; "" if empty."""
        items = self.files(kind, day)
        if not items:
            return ""
        digest = hashlib.sha256()
        for item in items:
            digest.update(f"{item.name}:{item.received_at.timestamp()}\n".encode())
        return digest.hexdigest()[:16]
