"""Webhook deliveries the intake has stored, by their id, shared by every intake worker.

A provider delivers at least once: Svix retries a Resend event under the same `svix-id`.
The production intake runs several worker processes (and may run on several hosts), so a
memory of ids per process lets a repeat that reaches another worker write a second inbox
file. The ids live in the SQL store instead, in a table of their own, `webhook_ids`
(source, id, received_at), on a `MetaData` of its own. On SQLite (dev) the intake creates
it on first use; on PostgreSQL `xmas-pipeline store migrate` does, and the intake's role
may only read, insert and delete its rows.

Recording is an insert-if-absent, so two workers recording one id at once both succeed
and one row is kept. Rows older than `KEEP` are pruned now and then by whoever records:
the last Svix retry comes about 28 hours after the first attempt, so two days cover every
repeat (ingestion deduplicates anything older anyway).
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from xmas_pipeline.adapters.sql.engine import create_table, make_engine, upsert

KEEP = timedelta(days=2)
PRUNE_EVERY_S = 3600.0
MAX_ID = 200  # a longer id is kept as its hash

metadata = sa.MetaData()

webhook_ids = sa.Table(
    "webhook_ids",
    metadata,
    sa.Column("source", sa.String(50), primary_key=True),
    sa.Column("id", sa.String(MAX_ID), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


def stored_id(webhook_id: str) -> str:
    """The id as the table keeps it: itself, or a hash when it is longer than the column."""
    if len(webhook_id) <= MAX_ID:
        return webhook_id
    return "sha256:" + hashlib.sha256(webhook_id.encode("utf-8", "replace")).hexdigest()


class SqlWebhookIds:
    """The `webhook_ids` table: has an id been stored, record one, prune old ones."""

    def __init__(
        self,
        url: str,
        engine: Engine | None = None,
        *,
        keep: timedelta = KEEP,
        connect_timeout_s: int | None = None,
        create: bool = True,
    ) -> None:
        self.engine = engine or make_engine(url, connect_timeout_s=connect_timeout_s)
        self.keep = keep
        # False: never DDL (a role without CREATE); a missing table is then an error.
        self._prepared = not create
        self._pruned_at = float("-inf")

    def prepare(self) -> None:
        """Create the table (only this one) when it is missing."""
        if not self._prepared:
            create_table(self.engine, webhook_ids)
            self._prepared = True

    def seen(self, source: str, webhook_id: str) -> bool:
        self.prepare()
        query = sa.select(sa.literal(1)).where(
            webhook_ids.c.source == source, webhook_ids.c.id == stored_id(webhook_id)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def record(self, source: str, webhook_id: str, at: datetime | None = None) -> bool:
        """Record an id; True when it was not recorded yet. Prunes old ids now and then."""
        self.prepare()
        moment = at or datetime.now(UTC)
        with self.engine.begin() as conn:
            inserted = conn.execute(
                upsert(conn, webhook_ids)
                .values(source=source, id=stored_id(webhook_id), received_at=moment)
                .on_conflict_do_nothing()
                .returning(webhook_ids.c.id)  # a row back: it was not there yet
            )
            new = inserted.first() is not None
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
            self.prune(datetime.now(UTC) - self.keep)
        return new

    def prune(self, before: datetime) -> int:
        """Forget ids received before `before`; how many were forgotten."""
        self.prepare()
        self._pruned_at = time.monotonic()
        with self.engine.begin() as conn:
            return conn.execute(
                sa.delete(webhook_ids).where(webhook_ids.c.received_at < before)
            ).rowcount

    def dispose(self) -> None:
        self.engine.dispose()
