"""The send journal: a write-ahead record of each chunk handed to the sender.

Why: a batch carries one idempotency key for all its emails, derived from the chunk. If
a run dies after the provider accepted a batch but before the statuses were written, or
a request timed out after the provider had accepted it, the next run must send that
same chunk again, byte for byte, so the provider recognises the key and drops it. The
next run's due list would chunk differently; the journal keeps the original chunk.

An entry is written (fsync, atomic rename) before the chunk is sent and removed once
every email in it is settled (sent or failed). Entries left over are replayed first by
the next run, and their messages are kept out of that run's new chunks.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from xmas_pipeline.core.due import DUE_COLUMNS
from xmas_pipeline.core.ports import OutgoingEmail

# What a replay needs of each plan row: its due columns but the decision, and the booking.
_ROW_FIELDS = (*(c for c in DUE_COLUMNS if c not in ("action", "reason")), "booking_uid")

Entry = tuple[Path, list[tuple[dict[str, Any], OutgoingEmail]]]


class SendJournal:
    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def begin(self, chunk: list[tuple[dict[str, Any], OutgoingEmail]]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        items = [{"row": _row(row), "email": asdict(email)} for row, email in chunk]
        name = f"{datetime.now().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.json"
        path = self.folder / name
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(items, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return path

    def finish(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def pending(self) -> list[Entry]:
        if not self.folder.exists():
            return []
        entries: list[Entry] = []
        for path in sorted(self.folder.glob("*.json")):
            items = json.loads(path.read_text(encoding="utf-8"))
            chunk = []
            for item in items:
                row = dict(item["row"])
                row["due_at"] = datetime.fromisoformat(row["due_at"])
                chunk.append((row, OutgoingEmail(**item["email"])))
            entries.append((path, chunk))
        return entries


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row.get(name) for name in _ROW_FIELDS}
    due = out["due_at"]
    out["due_at"] = due.isoformat() if hasattr(due, "isoformat") else str(due)
    out["step_number"] = int(out["step_number"])
    out["booking_uid"] = str(out["booking_uid"] or "")
    return out
