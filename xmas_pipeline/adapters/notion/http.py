"""Calling Notion through notion-client, paced and retried.

- Pacing: every HTTP request (retries included) passes a client-side `RateLimiter` placed in
  the httpx transport under notion-client, so the SDK's own code paths are used unchanged.
- Retries: notion-client 3.1 retries 429 and, for GET/DELETE only, 500/503; it does not know
  529, timeouts, read-only POSTs (a data source query), idempotent PATCHes, or how to retry a
  create without duplicating it, and it sleeps with `time.sleep` we cannot pace with the
  limiter. So its retries are off and `NotionApi.call` decides per operation:
  * 429 and 529: always retried, after `Retry-After` (the request was not processed);
  * 409, 5xx, timeouts, broken connections: retried with exponential backoff when the call
    is safe to repeat (reads, PATCHes that set fixed values); a create is first looked up
    with its `recover` query (a timed-out create may have happened) and only re-sent when
    that finds nothing;
  * other errors (validation, auth, not found) are final.
  When the attempts run out, `NotionCallError` is raised; the caller leaves its work undone.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any

import httpx
from notion_client import Client
from notion_client.errors import (
    HTTPResponseError,
    NotionClientErrorBase,
    RequestTimeoutError,
)
from notion_client.helpers import iterate_paginated_api

from xmas_pipeline.adapters.ratelimit import RateLimiter

NOTION_VERSION = "2025-09-03"
PAGE_SIZE = 100  # Notion's maximum page size for queries

log = logging.getLogger("xmas_pipeline.notion")


class NotionCallError(RuntimeError):
    """A Notion call that failed for good (final error, or retries used up)."""

    def __init__(self, operation: str, attempts: int, reason: str, status: int | None = None):
        self.operation = operation
        self.attempts = attempts
        self.reason = reason
        self.status = status
        super().__init__(f"Notion {operation} failed after {attempts} attempt(s): {reason}")


class _PacedTransport(httpx.BaseTransport):
    """Takes a limiter slot before each request leaves, and counts requests."""

    def __init__(self, inner: httpx.BaseTransport, limiter: RateLimiter) -> None:
        self._inner = inner
        self._limiter = limiter
        self._lock = threading.Lock()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._limiter.acquire()
        with self._lock:
            self.sent += 1
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def retry_after_seconds(headers: httpx.Headers | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds (Notion sends an integer) or an HTTP date."""
    raw = (headers or httpx.Headers()).get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# How a failure may be retried.
_WAIT = "wait"  # not processed; wait as told, then repeat (429, 529)
_AMBIGUOUS = "ambiguous"  # may or may not have happened (5xx, 409, timeout, broken reply)
_UNSENT = "unsent"  # never reached Notion (could not connect)
_FINAL = "final"


def _classify(error: BaseException) -> tuple[str | None, int | None]:
    """How to treat a failure; None: not a Notion/HTTP failure (a bug: let it surface)."""
    if isinstance(error, HTTPResponseError):
        status = error.status
        if status in (429, 529):
            return _WAIT, status
        if status == 409 or status >= 500:
            return _AMBIGUOUS, status
        return _FINAL, status
    if isinstance(error, RequestTimeoutError):
        return _AMBIGUOUS, None
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return _UNSENT, None
    if isinstance(error, httpx.TransportError):
        return _AMBIGUOUS, None
    if isinstance(error, NotionClientErrorBase):
        return _FINAL, None
    return None, None


def _reason(error: BaseException, status: int | None) -> str:
    text = str(error) or type(error).__name__
    return f"HTTP {status}: {text}" if status else text


class NotionApi:
    """A notion-client `Client` on a paced transport, with per-operation retry rules."""

    def __init__(
        self,
        token: str,
        base_url: str = "https://api.notion.com",
        *,
        rate_per_s: float = 3.0,
        max_attempts: int = 6,
        timeout_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        max_retry_after_s: float = 300.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.limiter = RateLimiter(rate_per_s, burst=1, clock=clock, sleep=sleep)
        self._clock = clock
        self._transport = _PacedTransport(httpx.HTTPTransport(), self.limiter)
        sdk_logger = logging.getLogger("xmas_pipeline.notion.sdk")
        self.client = Client(
            client=httpx.Client(transport=self._transport),
            auth=token,
            base_url=base_url.rstrip("/"),
            notion_version=NOTION_VERSION,
            timeout_ms=int(timeout_s * 1000),
            retry=False,
            logger=sdk_logger,
            # The SDK warns on every failed attempt; our retry log says the same once.
            log_level=logging.ERROR,
        )
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self._random = random.Random()
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # successful calls by operation
        self.retries: Counter[str] = Counter()  # retried failures by "operation status"
        self.recovered = 0  # creates found to have happened despite an error

    @property
    def requests_sent(self) -> int:
        """HTTP requests that left this process (every attempt counts)."""
        return self._transport.sent

    def close(self) -> None:
        self.client.close()

    def call(
        self,
        operation: str,
        function: Callable[..., Any],
        /,
        *,
        repeatable: bool = True,
        recover: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run one SDK call with the retry rules above.

        `repeatable`: sending the request twice has the same effect as once (reads, PATCHes
        of fixed values). A create is not; give it `recover`, a lookup returning the created
        object (or None), run before any re-send after an ambiguous failure.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                result = function(**kwargs)
            except Exception as error:
                how, status = _classify(error)
                if how is None:
                    raise
                reason = _reason(error, status)
                if how == _FINAL or attempt >= self.max_attempts:
                    raise NotionCallError(operation, attempt, reason, status) from error
                if how == _AMBIGUOUS and not repeatable:
                    if recover is None:
                        raise NotionCallError(operation, attempt, reason, status) from error
                    found = recover()
                    if found is not None:
                        with self._lock:
                            self.recovered += 1
                            self.calls[operation] += 1
                        return found
                delay = self._delay(error, how, attempt)
                if delay > self.max_retry_after_s:
                    raise NotionCallError(
                        operation, attempt, f"{reason} (asked to wait {delay:.0f}s)", status
                    ) from error
                with self._lock:
                    self.retries[f"{operation} {status or type(error).__name__}"] += 1
                log.warning(
                    "Notion %s failed (%s); retry %d/%d in %.1fs",
                    operation,
                    reason,
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                # Paused on the shared limiter, so concurrent callers hold off too.
                self.limiter.pause_until(self._clock() + delay)
                continue
            with self._lock:
                self.calls[operation] += 1
            return result

    def _delay(self, error: BaseException, how: str, attempt: int) -> float:
        if how == _WAIT and isinstance(error, HTTPResponseError):
            told = retry_after_seconds(error.headers)
            if told is not None:
                return told
        if how == _UNSENT:
            return min(self.backoff_s, self.max_backoff_s)
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._random.random())  # jitter spreads retries out

    # -- the operations the store uses ------------------------------------------------------

    def retrieve_database(self, database_id: str) -> dict[str, Any]:
        return self.call(
            "databases.retrieve", self.client.databases.retrieve, database_id=database_id
        )

    def retrieve_data_source(self, data_source_id: str) -> dict[str, Any]:
        return self.call(
            "data_sources.retrieve",
            self.client.data_sources.retrieve,
            data_source_id=data_source_id,
        )

    def update_data_source(self, data_source_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        # Adding properties that already exist with the same type changes nothing: repeatable.
        return self.call(
            "data_sources.update",
            self.client.data_sources.update,
            data_source_id=data_source_id,
            properties=properties,
        )

    def query(
        self,
        data_source_id: str,
        filter: dict[str, Any] | None = None,
        sorts: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Every page matching `filter`, 100 a page (the SDK's pagination helper)."""
        kwargs: dict[str, Any] = {"data_source_id": data_source_id, "page_size": PAGE_SIZE}
        if filter is not None:
            kwargs["filter"] = filter
        if sorts:
            kwargs["sorts"] = sorts
        page_fn = partial(self.call, "data_sources.query", self.client.data_sources.query)
        return list(iterate_paginated_api(page_fn, **kwargs))

    def update_page(self, page_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        # Setting fixed values (a sent date, a flag) is idempotent: repeatable.
        return self.call(
            "pages.update", self.client.pages.update, page_id=page_id, properties=properties
        )

    def trash_page(self, page_id: str) -> dict[str, Any]:
        # Moving to the trash again is harmless: repeatable.
        return self.call("pages.update", self.client.pages.update, page_id=page_id, in_trash=True)

    def create_page(
        self,
        data_source_id: str,
        properties: dict[str, Any],
        recover: Callable[[], dict[str, Any] | None],
    ) -> dict[str, Any]:
        return self.call(
            "pages.create",
            self.client.pages.create,
            repeatable=False,
            recover=recover,
            parent={"type": "data_source_id", "data_source_id": data_source_id},
            properties=properties,
        )


class DataSource:
    """A database's (first) data source: its id and property schema, looked up once."""

    def __init__(self, role: str, database_id: str, payload: dict[str, Any]) -> None:
        self.role = role
        self.database_id = database_id
        self.payload = payload  # kept whole, so the schema can be cached and rebuilt
        self.id: str = payload["id"]
        self.properties: dict[str, Any] = payload.get("properties") or {}
        self.title: str | None = next(
            (n for n, s in self.properties.items() if s.get("type") == "title"), None
        )

    def type_of(self, name: str) -> str:
        return self.properties[name]["type"]


def fetch_data_source(api: NotionApi, role: str, database_id: str) -> DataSource:
    """Database id -> its data source (Notion-Version 2025-09-03) with the property schema."""
    database = api.retrieve_database(database_id)
    sources = database.get("data_sources") or []
    if not sources:
        raise NotionCallError("databases.retrieve", 1, f"the {role} has no data source")
    if len(sources) > 1:
        log.warning("the %s has %d data sources; using the first", role, len(sources))
    return DataSource(role, database_id, api.retrieve_data_source(sources[0]["id"]))
