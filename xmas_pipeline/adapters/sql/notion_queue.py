"""The Notion sync queue in the SQL store (`core.ports.NotionQueue`).

Every write that changes what Notion shows about a contact calls `mark_dirty` inside its
own transaction: the contact's row is added, or its `version` bumped. So the queue holds
at most one row per contact, and a change can never be committed without its row. The
sync takes rows (`take`), writes the contact's current state to Notion, and settles each
row with the version it read: a row changed meanwhile stays queued for the next pass.

A taken row carries its taker's name (`holder`); another sync skips it. Rows of a holder
that ended without settling are given back by `release` (the caller says who is alive).
The queue fills whether or not Notion is configured: turning the sync on later brings
Notion up to date with everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert, utc
from xmas_pipeline.adapters.sql.tables import notion_queue
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import QueueEntry, QueueStats


def mark_dirty(conn: Connection, slug: str, keys: Iterable[str], now: datetime) -> None:
    """Queue these contacts for the Notion sync (in the caller's transaction)."""
    # Each key once (a statement may not touch a row twice), in one order for every writer.
    unique = sorted({k for k in keys if k})
    if not unique:
        return
    rows = [{"campaign": slug, "contact_key": k, "version": 1, "queued_at": now} for k in unique]
    stmt = upsert(conn, notion_queue).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=[notion_queue.c.campaign, notion_queue.c.contact_key],
        # A contact failing on an old value is tried again at once with the new one.
        set_={"version": notion_queue.c.version + 1, "next_try_at": None},
    )
    conn.execute(stmt)


class SqlNotionQueue(SqlDatabase):
    def take(self, campaign: Campaign, holder: str, limit: int = 100) -> list[QueueEntry]:
        """Up to `limit` rows nobody holds and not waiting to retry, oldest first."""
        self.prepare()
        now = datetime.now(UTC)
        q = notion_queue.c
        free = sa.and_(
            q.campaign == campaign.slug,
            q.holder == "",
            sa.or_(q.next_try_at.is_(None), q.next_try_at <= now),
        )
        oldest = sa.select(q.contact_key).where(free).order_by(q.queued_at, q.contact_key)
        with self.engine.begin() as conn:
            keys = list(conn.execute(oldest.limit(limit)).scalars())
            if not keys:
                return []
            # `holder == ""` again in the update: a row another sync took in between is
            # left to it (PostgreSQL re-checks the condition on the row it waited for).
            taken = conn.execute(
                notion_queue.update()
                .where(free, q.contact_key.in_(keys))
                .values(holder=holder[:100])
                .returning(q.contact_key, q.version, q.queued_at, q.attempts)
            ).all()
        entries = [QueueEntry(k, v, utc(at), a) for k, v, at, a in taken]
        return sorted(entries, key=lambda e: (e.queued_at, e.contact_key))

    def settle(self, campaign: Campaign, entries: Iterable[QueueEntry], read_at: datetime) -> int:
        """Remove rows whose version is still the one synced; give back the others (changed
        meanwhile: their age now counts from `read_at`). Returns how many were removed."""
        self.prepare()
        q = notion_queue.c
        removed = 0
        with self.engine.begin() as conn:
            for entry in entries:
                mine = sa.and_(q.campaign == campaign.slug, q.contact_key == entry.contact_key)
                done = conn.execute(
                    notion_queue.delete().where(mine, q.version == entry.version)
                ).rowcount
                if done:
                    removed += 1
                    continue
                conn.execute(
                    notion_queue.update()
                    .where(mine)
                    .values(holder="", attempts=0, last_error="", queued_at=utc(read_at))
                )
        return removed

    def retry_later(
        self, campaign: Campaign, entry: QueueEntry, error: str, delay: timedelta
    ) -> None:
        """Give a row back with its error, to be tried again after `delay`."""
        self.prepare()
        q = notion_queue.c
        with self.engine.begin() as conn:
            conn.execute(
                notion_queue.update()
                .where(q.campaign == campaign.slug, q.contact_key == entry.contact_key)
                .values(
                    holder="",
                    attempts=q.attempts + 1,
                    last_error=error[:2000],
                    next_try_at=datetime.now(UTC) + delay,
                )
            )

    def give_back(self, campaign: Campaign, entries: Iterable[QueueEntry]) -> None:
        """Rows taken but not worked on (the sync stopped early): free them as they were."""
        self.prepare()
        keys = [e.contact_key for e in entries]
        if not keys:
            return
        q = notion_queue.c
        with self.engine.begin() as conn:
            conn.execute(
                notion_queue.update()
                .where(q.campaign == campaign.slug, q.contact_key.in_(keys))
                .values(holder="")
            )

    def release(self, campaign: Campaign, alive: Callable[[str], bool]) -> int:
        """Free the rows of holders that are no longer running (a sync that died)."""
        self.prepare()
        q = notion_queue.c
        with self.engine.begin() as conn:
            holders = conn.execute(
                sa.select(q.holder).where(q.campaign == campaign.slug, q.holder != "").distinct()
            ).scalars()
            dead = [h for h in holders if not alive(h)]
            if not dead:
                return 0
            return int(
                conn.execute(
                    notion_queue.update()
                    .where(q.campaign == campaign.slug, q.holder.in_(dead))
                    .values(holder="")
                ).rowcount
            )

    def stats(self, campaign: Campaign) -> QueueStats:
        self.prepare()
        q = notion_queue.c
        now = datetime.now(UTC)
        with self.engine.connect() as conn:
            depth, oldest, failing = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.min(q.queued_at),
                    sa.func.count().filter(q.last_error != ""),
                ).where(q.campaign == campaign.slug)
            ).one()
            ready = conn.execute(
                sa.select(sa.func.count()).where(
                    q.campaign == campaign.slug,
                    q.holder == "",
                    sa.or_(q.next_try_at.is_(None), q.next_try_at <= now),
                )
            ).scalar_one()
            errors = conn.execute(
                sa.select(q.contact_key, q.attempts, q.last_error)
                .where(q.campaign == campaign.slug, q.last_error != "")
                .order_by(q.queued_at)
                .limit(20)
            ).all()
        return QueueStats(
            depth=int(depth),
            ready=int(ready),
            oldest_queued_at=utc(oldest) if oldest is not None else None,
            failing=int(failing),
            errors=[(k, int(a), e) for k, a, e in errors],
        )
