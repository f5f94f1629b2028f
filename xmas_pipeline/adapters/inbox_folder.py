"""The inbox on a local disk: a folder per kind and day, a file per event.

A write is a temporary file under `<root>/.tmp/`, fsynced, then renamed into its day
folder, and the day folder is fsynced too: once `put` returns, the file survives a power
cut, and no reader ever sees it half-written. A file's arrival time is its modification
time.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

from upath import UPath

TMP_DIR = ".tmp"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, body: bytes) -> None:
    view = memoryview(body)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FolderStore:
    def __init__(self, root: UPath) -> None:
        self.root = root

    def put(self, folder: UPath, name: str, body: bytes) -> None:
        tmp_dir = os.path.join(self.root.path, TMP_DIR)
        os.makedirs(tmp_dir, exist_ok=True)
        if not os.path.isdir(folder.path):
            os.makedirs(folder.path, exist_ok=True)
            _fsync_dir(os.path.dirname(folder.path))  # the new day folder's own entry
        tmp = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            _write_all(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, (folder / name).path)
        _fsync_dir(folder.path)

    def subfolders(self, folder: UPath) -> list[str]:
        if not os.path.isdir(folder.path):
            return []
        with os.scandir(folder.path) as entries:
            return [entry.name for entry in entries if entry.is_dir()]

    def arrivals(self, folder: UPath) -> dict[str, datetime]:
        """Each regular file in `folder` with its arrival (modification) time, in UTC."""
        if not os.path.isdir(folder.path):
            return {}
        with os.scandir(folder.path) as entries:
            return {
                entry.name: datetime.fromtimestamp(entry.stat().st_mtime, UTC)
                for entry in entries
                if entry.is_file()
            }

    def read(self, path: UPath) -> bytes:
        with open(path.path, "rb") as handle:
            return handle.read()
