"""Rate-limit counters in the SQL store, shared by every intake worker and host.

One row per (bucket, key, fixed window) counts the hits in that window (`core.rate_limit`
turns two neighbouring windows into a sliding one). A hit is one statement: an insert that,
on conflict, adds one only while the count is below the room the caller computed, and
returns the new count; no row back means the window was full. That is atomic on SQLite
and PostgreSQL alike (`INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING`), so two
workers can never both take the last place.

Keys are kept as SHA-256 hashes, never as addresses: the table holds no contact details
(an address `forget` erased must not linger here). Rows are pruned once both windows
that could still use them are over.
"""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from xmas_pipeline.adapters.sql.engine import create_table, make_engine, upsert
from xmas_pipeline.adapters.sql.tables import rate_counters

PRUNE_EVERY_S = 300.0


def key_hash(bucket: str, key: str) -> str:
    return hashlib.sha256(f"{bucket}\0{key}".encode("utf-8", "replace")).hexdigest()


class SqlRateCounters:
    """Count hits per (bucket, key, window) in `rate_counters`."""

    def __init__(
        self,
        url: str,
        engine: Engine | None = None,
        *,
        connect_timeout_s: int | None = None,
        create: bool = True,
    ) -> None:
        self.engine = engine or make_engine(url, connect_timeout_s=connect_timeout_s)
        # False: never DDL (the intake's role has no CREATE; `store migrate` makes it).
        self._prepared = not create
        self._pruned_at = float("-inf")

    def prepare(self) -> None:
        """Create the table (only this one) when it is missing."""
        if not self._prepared:
            create_table(self.engine, rate_counters)
            self._prepared = True

    def count(self, bucket: str, key: str, window_start: int) -> int:
        self.prepare()
        query = sa.select(rate_counters.c.hits).where(
            rate_counters.c.bucket == bucket,
            rate_counters.c.key_hash == key_hash(bucket, key),
            rate_counters.c.window_start == window_start,
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def hit(
        self, bucket: str, key: str, window_start: int, room: int, expires_at: int
    ) -> int | None:
        """Add one hit when the window holds fewer than `room`; the new count, or None when
        it was full (nothing is written then)."""
        self.prepare()
        if room <= 0:
            return None
        with self.engine.begin() as conn:
            statement = _hit(conn, bucket, key, window_start, room, expires_at)
            row = conn.execute(statement).first()
        return None if row is None else int(row[0])

    def prune(self, now: float) -> int:
        """Delete windows no limit can still read; how many rows went."""
        self.prepare()
        self._pruned_at = time.monotonic()
        with self.engine.begin() as conn:
            return conn.execute(
                sa.delete(rate_counters).where(rate_counters.c.expires_at < int(now))
            ).rowcount

    def prune_now_and_then(self, now: float) -> None:
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
            self.prune(now)

    def dispose(self) -> None:
        self.engine.dispose()


def _hit(
    conn: Connection, bucket: str, key: str, window_start: int, room: int, expires_at: int
) -> sa.sql.Executable:
    statement = upsert(conn, rate_counters).values(
        bucket=bucket,
        key_hash=key_hash(bucket, key),
        window_start=window_start,
        hits=1,
        expires_at=expires_at,
    )
    return statement.on_conflict_do_update(
        index_elements=[
            rate_counters.c.bucket,
            rate_counters.c.key_hash,
            rate_counters.c.window_start,
        ],
        set_={"hits": rate_counters.c.hits + 1},
        where=rate_counters.c.hits < room,
    ).returning(rate_counters.c.hits)
