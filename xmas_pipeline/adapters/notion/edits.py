"""Reading what changed in a Notion database since the last look: one query filtered on
`last_edited_time`, oldest edit first, 100 pages a request. Nothing changed: one request,
whatever the database's size.

Notion keeps `last_edited_time` to the minute, so a cursor cannot say "after this edit".
`EditCursor` keeps a minute (that of the latest read, or of the latest edit seen if later)
and what each page looked like when read in that minute or the one before; the next query
starts a minute before that minute (an edit made while a read was under way, or indexed
late, is still found), and a page read again unchanged is left out (`fresh`). A page
edited twice within one minute differs the second time, so it is applied again; one read
twice is applied once. The minute of a read comes from this host's clock: it must be
within a minute of Notion's (NTP).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from xmas_pipeline.adapters.notion.http import NotionApi
from xmas_pipeline.adapters.notion.props import parse_datetime

EDITED = "last_edited_time"
OLDEST_EDIT_FIRST = [{"timestamp": EDITED, "direction": "ascending"}]
LATE_INDEX = timedelta(minutes=1)  # how far back each query looks before the cursor


def edited_since(since: datetime) -> dict[str, Any]:
    """Notion's timestamp filter: pages last edited on or after `since`."""
    return {"timestamp": EDITED, EDITED: {"on_or_after": since.isoformat()}}


def changed_pages(
    api: NotionApi,
    data_source_id: str,
    since: datetime | None,
    condition: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Pages edited on or after `since` (every page when None) that meet `condition`,
    oldest edit first."""
    parts = [edited_since(since)] if since is not None else []
    if condition is not None:
        parts.append(condition)
    query = None if not parts else parts[0] if len(parts) == 1 else {"and": parts}
    return api.query(data_source_id, query, OLDEST_EDIT_FIRST)


def edited_at(page: dict[str, Any]) -> datetime:
    moment = parse_datetime(page.get(EDITED))
    if moment is None:
        raise ValueError(f"page {page.get('id')} has no {EDITED}")
    return moment


def fingerprint(page: dict[str, Any]) -> str:
    """The page as read: its edit minute and a digest of its property values."""
    values = json.dumps(page.get("properties") or {}, sort_keys=True, default=str)
    digest = hashlib.sha256(values.encode("utf-8")).hexdigest()[:16]
    return f"{page.get(EDITED)}#{page.get('in_trash', False)}#{digest}"


@dataclass(frozen=True)
class EditCursor:
    """Where a database's edits were read up to. `scope` names what was read (database and
    filter): a cursor of another scope is not used. `minute` None: nothing read yet."""

    scope: str
    minute: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)  # page id -> fingerprint

    @property
    def since(self) -> datetime | None:
        return None if self.minute is None else self.minute - LATE_INDEX

    def fresh(self, pages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The pages not read before as they are now (the same page twice: its last read)."""
        latest: dict[str, dict[str, Any]] = {}
        for page in pages:
            latest.pop(page["id"], None)  # keep the order of edits: the last read goes last
            latest[page["id"]] = page
        return [p for p in latest.values() if self.seen.get(p["id"]) != fingerprint(p)]

    def advance(self, pages: Iterable[dict[str, Any]], read_at: datetime) -> EditCursor:
        """The cursor once these pages, read by a query sent at `read_at`, are applied."""
        read = list(pages)
        moments = [edited_at(p) for p in read]
        moments.append(read_at.astimezone(UTC).replace(second=0, microsecond=0))
        if self.minute is not None:
            moments.append(self.minute)
        minute = max(moments)
        seen = {**self.seen, **{p["id"]: fingerprint(p) for p in read}}
        # Only pages the next query can return again need remembering.
        floor = minute - LATE_INDEX
        return EditCursor(self.scope, minute, {k: v for k, v in seen.items() if _at(v) >= floor})

    def dumps(self) -> str:
        return json.dumps(
            {
                "scope": self.scope,
                "minute": self.minute.isoformat() if self.minute else None,
                "seen": self.seen,
            },
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str | None, scope: str) -> EditCursor:
        """The saved cursor, or a new one (nothing saved, unreadable, another scope)."""
        try:
            saved = json.loads(text or "")
            if not isinstance(saved, dict) or saved.get("scope") != scope:
                return cls(scope)
            minute = parse_datetime(saved.get("minute"))
            seen = {str(k): str(v) for k, v in (saved.get("seen") or {}).items()}
        except (TypeError, ValueError, AttributeError):
            return cls(scope)
        return cls(scope, minute, seen)


def _at(seen: str) -> datetime:
    """The edit minute a fingerprint starts with (the earliest moment when unreadable)."""
    try:
        moment = parse_datetime(seen.split("#", 1)[0])
    except ValueError:
        moment = None
    return moment or datetime.min.replace(tzinfo=UTC)
