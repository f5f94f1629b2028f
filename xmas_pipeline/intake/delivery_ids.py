"""Which webhook deliveries the intake already stored, for every worker alike.

A cheap memory per process answers the common repeat (Svix re-sending within seconds to
the same worker); the SQL store (`adapters.sql.webhook_ids`) answers for every worker and
host. The store is a help, never a condition: when it cannot be reached, a delivery is
still accepted and stored, and deduplication falls back to ingestion's (each event is
stored once under its own key). After a failure the store is left alone for a while, so
an outage costs each webhook no wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from xmas_pipeline.adapters.sql.engine import creates_its_tables
from xmas_pipeline.adapters.sql.webhook_ids import SqlWebhookIds

logger = logging.getLogger("xmas_pipeline.intake")

_Call = Callable[[SqlWebhookIds], bool]

MEMORY_S = 600.0  # the Svix tolerance window, twice: a re-signed repeat cannot be older
MAX_REMEMBERED = 10_000
RETRY_STORE_AFTER_S = 30.0
CONNECT_TIMEOUT_S = 3  # a webhook must be answered well within the sender's timeout


class _RecentIds:
    """Recently stored ids, bounded in size and age (one process's memory)."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, webhook_id: str) -> bool:
        horizon = time.monotonic() - MEMORY_S
        while self._ids and next(iter(self._ids.values())) < horizon:
            self._ids.popitem(last=False)
        return webhook_id in self._ids

    def add(self, webhook_id: str) -> None:
        self._ids[webhook_id] = time.monotonic()
        self._ids.move_to_end(webhook_id)
        while len(self._ids) > MAX_REMEMBERED:
            self._ids.popitem(last=False)


class DeliveryIds:
    """Stored delivery ids of one source ("resend"): in memory, then in the SQL store."""

    def __init__(self, database_url: str, source: str) -> None:
        self.database_url = database_url
        self.source = source
        self._recent = _RecentIds()
        self._table: SqlWebhookIds | None = None
        self._lock = threading.Lock()
        self._store_away_until = 0.0

    async def stored(self, webhook_id: str) -> bool:
        """Whether a delivery with this id was already stored, by any worker (False when
        the store cannot tell)."""
        if webhook_id in self._recent:
            return True
        found = await self._ask(lambda table: table.seen(self.source, webhook_id), False)
        if found:
            self._recent.add(webhook_id)
        return found

    async def remember(self, webhook_id: str) -> None:
        """Record an id once its delivery is stored (never before: a delivery whose file
        could not be written must be taken again when it is re-sent)."""
        self._recent.add(webhook_id)
        await self._ask(lambda table: table.record(self.source, webhook_id), False)

    async def _ask(self, call: _Call, otherwise: bool) -> bool:
        if time.monotonic() < self._store_away_until:
            return otherwise
        try:
            # A database round trip: off the event loop.
            return await run_in_threadpool(self._run, call)
        except (SQLAlchemyError, OSError) as exc:
            self._store_away_until = time.monotonic() + RETRY_STORE_AFTER_S
            logger.warning(
                "webhook ids: the store is unreachable (%s); repeats are deduplicated at "
                "ingestion for the next %.0f s",
                type(exc).__name__,
                RETRY_STORE_AFTER_S,
            )
            return otherwise

    def _run(self, call: _Call) -> bool:
        with self._lock:
            if self._table is None:
                self._table = SqlWebhookIds(
                    self.database_url,
                    connect_timeout_s=CONNECT_TIMEOUT_S,
                    # On PostgreSQL the table is the migrate step's to create: a missing
                    # one is an unreachable store (ingestion deduplicates meanwhile).
                    create=creates_its_tables(self.database_url),
                )
            table = self._table
        return call(table)

    def close(self) -> None:
        if self._table is not None:
            self._table.dispose()
