"""A fake of Cal.com API v2 `GET /v2/bookings` (cal-api-version 2024-08-13), over real HTTP.

A `ThreadingHTTPServer` on 127.0.0.1 (an ephemeral port) in a thread, so the client runs
its real httpx code paths. It does what the API does, as far as the poller relies on it:

- auth: `Authorization: Bearer <key>`; missing or wrong -> 401 with Cal.com's error body
  (`{"status": "error", "timestamp", "path", "error": {"code", "message"}}`);
- `cal-api-version` must be `2024-08-13` (the real API silently answers an older version's
  shape otherwise; the fake refuses with 400 so a client that forgets it is caught);
- pagination: `take` (1..250, default 100) and `skip` (>= 0), with the response's
  `pagination` object (`totalItems`, `remainingItems`, `returnedItems`, `itemsPerPage`,
  `currentPage`, `totalPages`, `hasNextPage`, `hasPreviousPage`);
- filters `afterUpdatedAt` / `beforeUpdatedAt` (a booking never updated has
  `updatedAt: null` and matches neither, as with the real database filter),
  `afterCreatedAt` / `beforeCreatedAt`, `status` (upcoming, past, cancelled, unconfirmed),
  `attendeeEmail`; sorts `sortUpdatedAt`, `sortCreated`, `sortStart`;
- rate limiting on demand: `throttle(n, retry_after)` answers the next n requests 429 with
  `Retry-After`; `fail_next(n, status)` answers them with a server error;
- `ignore_filters = True` plays an API version that ignores the date filters (the client
  must filter again on its side).

Every request is logged (`requests`) with its query and the headers that matter.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xmas_pipeline_tests.fakes.loopback import LoopbackServer

DEFAULT_API_KEY = "cal_test_0123456789abcdef"
API_VERSION = "2024-08-13"
STATUSES = ("upcoming", "recurring", "past", "cancelled", "unconfirmed")


@dataclass(frozen=True)
class LoggedRequest:
    path: str
    query: dict[str, str]
    authorization: str
    api_version: str
    status: int


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class FakeCalcomApi:
    def __init__(self, api_key: str = DEFAULT_API_KEY, now: datetime | None = None) -> None:
        self.api_key = api_key
        self.now = now or datetime.now(UTC)  # "upcoming"/"past" are relative to this
        self.bookings: dict[str, dict[str, Any]] = {}
        self.requests: list[LoggedRequest] = []
        self.ignore_filters = False
        self._failures: list[tuple[int, str]] = []  # (status, Retry-After) for next requests
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None

    # -- test controls ----------------------------------------------------------------------

    def put(self, *items: Mapping[str, Any]) -> None:
        """Add or replace bookings (by uid), as Cal.com would after a change."""
        with self._lock:
            for item in items:
                self.bookings[str(item["uid"])] = dict(item)

    def throttle(self, count: int, retry_after: str = "1") -> None:
        with self._lock:
            self._failures.extend([(429, retry_after)] * count)

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._failures.extend([(status, "")] * count)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not started")
        return self._server.base_url

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeCalcomApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = LoopbackServer(Handler).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> FakeCalcomApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the API ----------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        auth = request.headers.get("Authorization", "")
        version = request.headers.get("cal-api-version", "")
        status, body, headers = self._answer(parts.path, query, auth, version)
        with self._lock:
            self.requests.append(LoggedRequest(parts.path, query, auth, version, status))
        raw = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(raw)

    def _error(self, path: str, code: str, message: str) -> dict[str, Any]:
        return {
            "status": "error",
            "timestamp": datetime.now(UTC).isoformat(),
            "path": path,
            "error": {"code": code, "message": message},
        }

    def _answer(
        self, path: str, query: dict[str, str], auth: str, version: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, retry_after = failure
            if status == 429:
                body = self._error(path, "TooManyRequestsException", "Too many requests")
                return 429, body, {"Retry-After": retry_after} if retry_after else {}
            return status, self._error(path, "InternalServerErrorException", "upstream"), {}
        if path.rstrip("/") != "/v2/bookings":
            return 404, self._error(path, "NotFoundException", f"Cannot GET {path}"), {}
        expected = f"Bearer {self.api_key}".encode()
        if not auth or not hmac.compare_digest(auth.encode(), expected):
            message = "Invalid Access Token." if auth else "No Authorization header"
            return 401, self._error(path, "UnauthorizedException", message), {}
        if version != API_VERSION:
            message = f"this fake serves cal-api-version {API_VERSION} only, got {version!r}"
            return 400, self._error(path, "BadRequestException", message), {}
        try:
            take = int(query.get("take", "100"))
            skip = int(query.get("skip", "0"))
            if not 1 <= take <= 250 or skip < 0:
                raise ValueError
        except ValueError:
            message = "take must be 1..250 and skip >= 0"
            return 400, self._error(path, "BadRequestException", message), {}
        try:
            items = self._filter(query)
        except ValueError as exc:
            return 400, self._error(path, "BadRequestException", str(exc)), {}
        page = items[skip : skip + take]
        total = len(items)
        pagination = {
            "totalItems": total,
            "remainingItems": max(0, total - (skip + len(page))),
            "returnedItems": len(page),
            "itemsPerPage": take,
            "currentPage": skip // take + 1,
            "totalPages": -(-total // take),
            "hasNextPage": skip + len(page) < total,
            "hasPreviousPage": skip > 0,
        }
        return 200, {"status": "success", "data": page, "pagination": pagination}, {}

    def _filter(self, query: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            items = [dict(item) for item in self.bookings.values()]

        def bound(name: str) -> datetime | None:
            value = query.get(name)
            if value is None:
                return None
            try:
                return _time(value)
            except ValueError:
                raise ValueError(f"{name} must be a valid ISO 8601 date.") from None

        for name, field, after in (
            ("afterUpdatedAt", "updatedAt", True),
            ("beforeUpdatedAt", "updatedAt", False),
            ("afterCreatedAt", "createdAt", True),
            ("beforeCreatedAt", "createdAt", False),
        ):
            limit = bound(name)
            if limit is None or self.ignore_filters:
                continue
            # A null field matches no range filter (as the database's comparison does).
            items = [
                i
                for i in items
                if i.get(field)
                and (_time(i[field]) >= limit if after else _time(i[field]) <= limit)
            ]
        if "status" in query:
            wanted = {s.strip() for s in query["status"].split(",")}
            if not wanted or not wanted <= set(STATUSES):
                raise ValueError(f"Invalid status. Allowed are {', '.join(STATUSES)}")
            items = [i for i in items if self._status_matches(i, wanted)]
        if "attendeeEmail" in query:
            email = query["attendeeEmail"].lower()
            items = [i for i in items if any(a["email"].lower() == email for a in i["attendees"])]
        for name, field in (
            ("sortUpdatedAt", "updatedAt"),
            ("sortCreated", "createdAt"),
            ("sortStart", "start"),
        ):
            if name in query:
                items.sort(key=lambda i, f=field: i.get(f) or "", reverse=query[name] == "desc")
        return items

    def _status_matches(self, item: Mapping[str, Any], wanted: set[str]) -> bool:
        state = item["status"]
        end = _time(item["end"])
        checks = {
            "upcoming": state in ("accepted", "pending") and end >= self.now,
            "past": state != "cancelled" and end < self.now,
            "cancelled": state in ("cancelled", "rejected"),
            "unconfirmed": state == "pending",
            "recurring": bool(item.get("recurringBookingUid")),
        }
        return any(checks[name] for name in wanted)
