"""Reading webhook bodies: one JSON object, and the instants written in it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def load_object(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    """A body as a JSON object (a mapping passes through); ValueError otherwise."""
    if isinstance(body, Mapping):
        return body
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ValueError("not a JSON object")
    return data


def parse_time(value: Any, field: str) -> datetime:
    """An ISO-8601 instant as an aware UTC datetime (a naive one is taken as UTC)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{field}: not an ISO-8601 time: {value!r}") from exc
    else:
        raise ValueError(f"{field}: missing")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
