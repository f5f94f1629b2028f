"""Notion property values: Python values to Notion's write shape, page properties back.

A logical value has a *kind* (text, email, number, date, checkbox, choice); the Notion
property it lives in has a *type*. One kind fits several types (a name may be `rich_text`
or the `title`; a segment may be a `select` or plain text), so workspaces whose columns
differ a little from the original design still work. Rich text is split into pieces of at most
2,000 characters on write (Notion counts UTF-16 code units) and joined on read.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

RICH_TEXT_PIECE_LIMIT = 2000  # text.content length, in UTF-16 code units as Notion counts
RICH_TEXT_MAX_PIECES = 100  # pieces in one rich_text array

# Which Notion property types can hold each logical kind (first one: what setup creates).
COMPATIBLE_TYPES: dict[str, tuple[str, ...]] = {
    "text": ("rich_text", "title"),
    "email": ("email", "rich_text", "title"),
    "number": ("number",),
    "date": ("date",),
    "checkbox": ("checkbox",),
    "choice": ("select", "status", "rich_text"),
}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_rich_text(text: str, limit: int = RICH_TEXT_PIECE_LIMIT) -> list[str]:
    """Pieces of at most `limit` UTF-16 units, never splitting a surrogate pair."""
    if utf16_len(text) <= limit:
        return [text] if text else []
    pieces: list[str] = []
    current: list[str] = []
    units = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if units + width > limit:
            pieces.append("".join(current))
            current, units = [], 0
        current.append(char)
        units += width
    if current:
        pieces.append("".join(current))
    return pieces


def iso_datetime(moment: datetime) -> str:
    """UTC with milliseconds, the way Notion echoes date-times back."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_datetime(text: str | None) -> datetime | None:
    """A Notion date `start` (date-only or date-time) as an aware UTC datetime."""
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class PropertyValueError(ValueError):
    """A value that cannot be written to a property of that type."""


def encode(notion_type: str, value: Any) -> dict[str, Any]:
    """One property's value in the shape `pages.create` / `pages.update` accept."""
    if notion_type in ("rich_text", "title"):
        text = "" if value is None else str(value)
        pieces = split_rich_text(text)
        if len(pieces) > RICH_TEXT_MAX_PIECES:
            # Notion refuses more than 100 pieces (200,000 characters): keep the start.
            pieces = pieces[:RICH_TEXT_MAX_PIECES]
        return {notion_type: [{"type": "text", "text": {"content": p}} for p in pieces]}
    if notion_type == "email":
        return {"email": str(value) if value else None}
    if notion_type == "number":
        if value is None:
            return {"number": None}
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PropertyValueError(f"a number property cannot hold {value!r}")
        return {"number": value}
    if notion_type == "date":
        if value is None:
            return {"date": None}
        if isinstance(value, datetime):
            return {"date": {"start": iso_datetime(value)}}
        if isinstance(value, date):
            return {"date": {"start": value.isoformat()}}
        raise PropertyValueError(f"a date property cannot hold {value!r}")
    if notion_type == "checkbox":
        return {"checkbox": bool(value)}
    if notion_type in ("select", "status"):
        # Notion forbids commas in option names; the values we write never need them.
        name = "" if value is None else str(value).replace(",", " ")
        return {notion_type: {"name": name} if name else None}
    raise PropertyValueError(f"writing {notion_type} properties is not supported")


def plain_text(items: list[dict[str, Any]] | None) -> str:
    """All pieces of a rich_text/title value joined (text, mentions and equations alike)."""
    out: list[str] = []
    for item in items or []:
        text = item.get("plain_text")
        if text is None:
            text = (item.get("text") or {}).get("content", "")
        out.append(text)
    return "".join(out)


def decode(value: dict[str, Any] | None) -> Any:
    """A page property value (response shape) as a plain Python value."""
    if not value:
        return None
    kind = value.get("type")
    data = value.get(kind) if kind else None
    if kind in ("rich_text", "title"):
        return plain_text(data)
    if kind in ("email", "url", "phone_number"):
        return data or ""
    if kind == "number":
        return data
    if kind == "checkbox":
        return bool(data)
    if kind in ("select", "status"):
        return (data or {}).get("name", "")
    if kind == "date":
        return (data or {}).get("start")
    if kind == "formula":
        inner = data or {}
        return inner.get(inner.get("type", ""), None)
    return data


def page_values(page: dict[str, Any]) -> dict[str, Any]:
    """{property name: decoded value} for one page."""
    return {name: decode(value) for name, value in (page.get("properties") or {}).items()}
