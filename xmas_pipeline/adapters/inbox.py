"""The inbox: one JSON file per received event, sharded by the UTC day of receipt.

Layout (docs/architecture.md, "The inbox")::

    <root>/signups/<YYYY-MM-DD>/<ns timestamp>-<uuid>.json
    <root>/bookings/<YYYY-MM-DD>/...
    <root>/email-events/<YYYY-MM-DD>/...
    <root>/.tmp/...            temporary files, outside every day folder

Writes are atomic (temp file + rename), and durable on a local disk (fsync of the file
and of the day folder) before the writer returns. The root is a `UPath`, so `s3://...`
works the same (object stores make each put atomic on their own).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from upath import UPath

KINDS: tuple[str, ...] = ("signups", "bookings", "email-events")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TMP_DIR = ".tmp"


@dataclass(frozen=True)
class InboxFile:
    kind: str
    day: str
    name: str
    path: str
    received_at: datetime  # the file's modification time (its arrival), in UTC

    @property
    def ref(self) -> str:
        """A short, stable reference for reports: `signups/2025-12-01/x.json`."""
        return f"{self.kind}/{self.day}/{self.name}"


def utc_day(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


class Inbox:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = UPath(root)

    # -- writing -------------------------------------------------------------------------

    def write(self, kind: str, body: bytes, received_at: datetime | None = None) -> InboxFile:
        """Store one event durably; returns only once it is safely in its day folder."""
        if kind not in KINDS:
            raise ValueError(f"unknown inbox kind {kind!r}")
        moment = (received_at or datetime.now(UTC)).astimezone(UTC)
        day = utc_day(moment)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}.json"
        folder = self.root / kind / day
        target = folder / name
        if _is_local(self.root):
            self._write_local(folder, target, body)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
        return InboxFile(kind=kind, day=day, name=name, path=str(target), received_at=moment)

    def _write_local(self, folder: UPath, target: UPath, body: bytes) -> None:
        tmp_dir = self.root / TMP_DIR
        os.makedirs(tmp_dir.path, exist_ok=True)
        if not os.path.isdir(folder.path):
            os.makedirs(folder.path, exist_ok=True)
            _fsync_dir(os.path.dirname(folder.path))  # the new day folder's own entry
        tmp = os.path.join(tmp_dir.path, f"{uuid.uuid4().hex}.part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(body)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, target.path)
        _fsync_dir(folder.path)

    def write_json(self, kind: str, payload: Any, received_at: datetime | None = None) -> InboxFile:
        return self.write(kind, json.dumps(payload).encode("utf-8"), received_at)

    # -- reading -------------------------------------------------------------------------

    def days(self, kind: str) -> list[str]:
        folder = self.root / kind
        if not folder.exists():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and _DAY.match(p.name))

    def files(self, kind: str, day: str) -> list[InboxFile]:
        folder = self.root / kind / day
        if not folder.exists():
            return []
        found: list[InboxFile] = []
        for path in folder.iterdir():
            if not path.is_file() or not path.name.endswith(".json"):
                continue
            info = path.stat()
            mtime = getattr(info, "st_mtime", None) or time.time()
            found.append(
                InboxFile(
                    kind=kind,
                    day=day,
                    name=path.name,
                    path=str(path),
                    received_at=datetime.fromtimestamp(float(mtime), UTC),
                )
            )
        return sorted(found, key=lambda f: f.name)

    def read(self, item: InboxFile) -> bytes:
        return UPath(item.path).read_bytes()

    def fingerprint(self, kind: str, day: str) -> str:
        """Changes whenever a file is added to (or replaced in) a day folder; "" if empty."""
        items = self.files(kind, day)
        if not items:
            return ""
        digest = hashlib.sha256()
        for item in items:
            digest.update(f"{item.name}:{item.received_at.timestamp()}\n".encode())
        return digest.hexdigest()[:16]
