"""Cal.com API v2: list bookings changed since a watermark (the polling bookings source).

`GET /v2/bookings` with `Authorization: Bearer <cal_ key>` and `cal-api-version:
2024-08-13`; pages with `take` (at most 250) / `skip`, the response's `pagination.hasNextPage`
says when to stop. A booking that was never updated has `updatedAt: null`, and the API's
`afterUpdatedAt` filter leaves those out, so each poll asks twice — changed since, and
created since — and merges. Everything is filtered again here by the same rule, in case
an API version ignores a filter.

The watermark is the latest change seen; each poll starts `overlap` before it (clocks and
pagination under concurrent writes are not exact) and drops what it already saw, keyed on
uid plus change time, so a booking is reported again only when it changed again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from xmas_pipeline.core.bookings import BookingEvent, parse_api_booking
from xmas_pipeline.core.payloads import parse_time

DEFAULT_API_URL = "https://api.cal.com"
API_VERSION = "2024-08-13"
MAX_PAGE = 250


class CalcomError(RuntimeError):
    """Cal.com answered with an error we cannot retry away. Never carries the API key."""


class CalcomAuthError(CalcomError):
    """The API key was refused (401/403)."""


def changed_at(item: Mapping[str, Any]) -> datetime:
    """When a booking last changed: `updatedAt`, or `createdAt` for a never-updated one."""
    return parse_time(item.get("updatedAt") or item.get("createdAt"), "updatedAt")


def seen_key(item: Mapping[str, Any]) -> str:
    return f"{item.get('uid')}|{changed_at(item).isoformat()}"


class CalcomClient:
    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_API_URL,
        *,
        api_version: str = API_VERSION,
        page_size: int = 100,
        timeout: float = 15.0,
        max_retries: int = 5,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Cal.com API key is required")
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE}")
        self.page_size = page_size
        self.max_retries = max_retries
        self.max_wait = max_wait
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {api_key}",
                "cal-api-version": api_version,
                "Accept": "application/json",
            },
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CalcomClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP -----------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.get(path, params=params)
            except httpx.TransportError as exc:
                if attempt > self.max_retries:
                    raise CalcomError(f"Cal.com unreachable: {type(exc).__name__}") from None
                self._sleep(min(self.max_wait, 0.5 * 2 ** (attempt - 1)))
                continue
            status = response.status_code
            if status == 429 or status >= 500:
                if attempt > self.max_retries:
                    raise CalcomError(f"Cal.com GET {path}: {status} after {attempt} attempts")
                self._sleep(self._wait(response, attempt))
                continue
            if status in (401, 403):
                raise CalcomAuthError(f"Cal.com refused the API key ({status})")
            if status >= 400:
                raise CalcomError(f"Cal.com GET {path}: {status} {_error_text(response)}")
            try:
                body = response.json()
            except ValueError:
                raise CalcomError(f"Cal.com GET {path}: the answer is not JSON") from None
            if not isinstance(body, dict) or body.get("status") != "success":
                raise CalcomError(f"Cal.com GET {path}: {_error_text(response)}")
            return body

    def _wait(self, response: httpx.Response, attempt: int) -> float:
        """Retry-After (seconds or an HTTP date) when given, else exponential backoff."""
        header = response.headers.get("Retry-After", "").strip()
        wait: float | None = None
        if header:
            try:
                wait = float(header)
            except ValueError:
                try:
                    wait = (parsedate_to_datetime(header) - datetime.now(UTC)).total_seconds()
                except (TypeError, ValueError):
                    wait = None
        if wait is None:
            wait = 0.5 * 2 ** (attempt - 1)
        return max(0.0, min(self.max_wait, wait))

    # -- bookings -------------------------------------------------------------------------

    def list_bookings(self, **filters: str) -> Iterator[dict[str, Any]]:
        """Every booking matching the filters (query parameters of `GET /v2/bookings`)."""
        skip = 0
        while True:
            body = self._get("/v2/bookings", {**filters, "take": self.page_size, "skip": skip})
            data = body.get("data") or []
            if not isinstance(data, list):
                raise CalcomError("Cal.com GET /v2/bookings: `data` is not a list")
            for item in data:
                if isinstance(item, dict):
                    yield item
            pagination = body.get("pagination")
            if isinstance(pagination, Mapping) and "hasNextPage" in pagination:
                more = bool(pagination["hasNextPage"])
            else:
                more = len(data) >= self.page_size  # older answers carry no pagination
            if not more or not data:
                return
            skip += len(data)

    def changed_since(self, since: datetime) -> list[dict[str, Any]]:
        """Bookings created or updated at or after `since`, each once (its latest version)."""
        stamp = since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        found: dict[str, dict[str, Any]] = {}
        queries = (
            {"afterUpdatedAt": stamp, "sortUpdatedAt": "asc"},
            {"afterCreatedAt": stamp, "sortCreated": "asc"},
        )
        for query in queries:
            for item in self.list_bookings(**query):
                uid = item.get("uid")
                try:
                    moment = changed_at(item)
                except ValueError:
                    moment = None
                if not isinstance(uid, str) or moment is None or moment < since:
                    continue
                kept = found.get(uid)
                if kept is None or changed_at(kept) <= moment:
                    found[uid] = item
        return sorted(found.values(), key=lambda item: (changed_at(item), str(item["uid"])))


@dataclass
class PollCursor:
    """Where the last poll got to; stored as the sensor's cursor (JSON)."""

    watermark: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)  # uid|changedAt -> changedAt (ISO)

    def to_json(self) -> str:
        return json.dumps(
            {
                "watermark": self.watermark.isoformat() if self.watermark else None,
                "seen": self.seen,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> PollCursor:
        if not text:
            return cls()
        data = json.loads(text)
        mark = data.get("watermark")
        return cls(
            watermark=parse_time(mark, "watermark") if mark else None,
            seen={str(k): str(v) for k, v in (data.get("seen") or {}).items()},
        )


@dataclass
class PollResult:
    events: list[BookingEvent]
    items: list[dict[str, Any]]  # the new API items, for the inbox / a report
    rejected: list[tuple[str, str]]  # (uid, reason) for items that could not be parsed
    cursor: PollCursor


def poll_bookings(
    client: CalcomClient,
    cursor: PollCursor,
    *,
    first_since: datetime,
    overlap: timedelta = timedelta(minutes=10),
) -> PollResult:
    """New booking changes since the cursor; `first_since` starts a cursor that has none."""
    since = (cursor.watermark - overlap) if cursor.watermark else first_since
    items = client.changed_since(since)
    fresh = [item for item in items if seen_key(item) not in cursor.seen]

    events: list[BookingEvent] = []
    rejected: list[tuple[str, str]] = []
    for item in fresh:
        try:
            event = parse_api_booking(item, ref=f"api:{item.get('uid')}")
        except ValueError as exc:
            rejected.append((str(item.get("uid")), str(exc)))
            continue
        if event is not None:
            events.append(event)

    marks = [changed_at(item) for item in items]
    watermark = max([*marks, *([cursor.watermark] if cursor.watermark else [])], default=None)
    seen = dict(cursor.seen)
    seen.update({seen_key(item): changed_at(item).isoformat() for item in items})
    if watermark is not None:
        # Only what a later poll can see again (inside the overlap) needs remembering.
        horizon = watermark - overlap
        seen = {k: v for k, v in seen.items() if datetime.fromisoformat(v) >= horizon}
    return PollResult(events, fresh, rejected, PollCursor(watermark, seen))


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return str(error.get("message") or error.get("code") or "")[:200]
        if error:
            return str(error)[:200]
    return ""
