"""The signup's rate limits, counted for every intake worker and host in the SQL store.

`core.rate_limit` is the rule; the counters live in `rate_counters`
(`adapters.sql.rate_counters`). The store is a help, never a condition: when it cannot be
reached, each worker counts in its own memory instead (a per-process limit, looser but
still a limit) and logs it, and the store is left alone for a while so an outage costs
each signup no wait. A signup is never refused because the store is away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from xmas_pipeline.adapters.sql.engine import creates_its_tables
from xmas_pipeline.adapters.sql.rate_counters import SqlRateCounters
from xmas_pipeline.core.rate_limit import Rate, retry_after, room, window_at

logger = logging.getLogger("xmas_pipeline.intake")

Clock = Callable[[], float]
RETRY_STORE_AFTER_S = 30.0
CONNECT_TIMEOUT_S = 3  # a visitor is waiting
MAX_MEMORY_KEYS = 50_000


class Counters(Protocol):
    def count(self, bucket: str, key: str, window_start: int) -> int: ...

    def hit(
        self, bucket: str, key: str, window_start: int, room: int, expires_at: int
    ) -> int | None: ...


class MemoryCounters:
    """The same counters in one process's memory: the fallback while the store is away."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str, int], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def count(self, bucket: str, key: str, window_start: int) -> int:
        with self._lock:
            return self._hits.get((bucket, key, window_start), (0, 0))[0]

    def hit(
        self, bucket: str, key: str, window_start: int, room: int, expires_at: int
    ) -> int | None:
        with self._lock:
            hits, _ = self._hits.get((bucket, key, window_start), (0, expires_at))
            if hits >= room:
                return None
            self._hits[(bucket, key, window_start)] = (hits + 1, expires_at)
            if len(self._hits) > MAX_MEMORY_KEYS:
                self._prune(window_start)
            return hits + 1

    def _prune(self, now: int) -> None:
        for name in [name for name, (_, expires) in self._hits.items() if expires < now]:
            del self._hits[name]
        while len(self._hits) > MAX_MEMORY_KEYS:  # a flood of distinct keys: oldest first
            del self._hits[next(iter(self._hits))]


def take(counters: Counters, name: str, rate: Rate, key: str, now: float) -> int | None:
    """Count one hit of `key` against `rate`; None when allowed, else the seconds to wait.
    A refused hit is not counted (a client that waits as told gets in)."""
    window = window_at(rate, now)
    bucket = f"{name}/{rate.period_s}"
    previous = counters.count(bucket, key, window.previous_start)
    space = room(rate, previous, window)
    expires_at = window.start + 2 * rate.period_s
    if counters.hit(bucket, key, window.start, space, expires_at) is not None:
        return None
    current = counters.count(bucket, key, window.start)
    return retry_after(rate, previous, current, now)


class SharedLimits:
    """Rate limits counted in the SQL store, or in memory while the store is away."""

    def __init__(self, database_url: str, clock: Clock = time.time) -> None:
        self.database_url = database_url
        self.clock = clock
        self.memory = MemoryCounters()
        self._table: SqlRateCounters | None = None
        self._lock = threading.Lock()
        self._store_away_until = 0.0

    async def take(self, name: str, rate: Rate, key: str) -> int | None:
        """None when this hit is allowed; else the seconds to wait (`Retry-After`)."""
        now = self.clock()
        if time.monotonic() >= self._store_away_until:
            try:
                return await run_in_threadpool(self._take_shared, name, rate, key, now)
            except (SQLAlchemyError, OSError) as exc:
                self._store_away_until = time.monotonic() + RETRY_STORE_AFTER_S
                logger.warning(
                    "rate limits: the store is unreachable (%s); this worker counts signups in"
                    " its own memory for the next %.0f s",
                    type(exc).__name__,
                    RETRY_STORE_AFTER_S,
                )
        return take(self.memory, name, rate, key, now)

    def _take_shared(self, name: str, rate: Rate, key: str, now: float) -> int | None:
        with self._lock:
            if self._table is None:
                self._table = SqlRateCounters(
                    self.database_url,
                    connect_timeout_s=CONNECT_TIMEOUT_S,
                    create=creates_its_tables(self.database_url),
                )
            table = self._table
        wait = take(table, name, rate, key, now)
        table.prune_now_and_then(now)
        return wait

    def close(self) -> None:
        if self._table is not None:
            self._table.dispose()
