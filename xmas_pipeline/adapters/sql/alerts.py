"""The alert outbox in the SQL store (`core.ports.AlertOutbox`), shared by every host.

One row per alert key: written when the event happens (a failed run, a CRITICAL signup,
stuck messages, Notion falling behind), posted by whoever takes it, and marked delivered
only once the chat accepted it. `next_try_at` is both the retry time and a lease: `take`
moves it past the time a post may need, with a compare-and-set, so two deliverers (the
outbox sensor and an ingestion run trying its CRITICAL alert at once) never post one alert
twice. A delivered row keeps its history and has no next try.

`alerts_sent` is the ledger of earlier releases, which posted first and then marked the key:
a key found there was already announced, so enqueueing it records it as delivered. It also
holds keys noted as dealt with (each stuck message already announced).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert, utc
from xmas_pipeline.adapters.sql.tables import alert_outbox, alerts_sent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import Alert

KEY_CHARS = 700  # the key column's length
T = TypeVar("T")


def _chunks(items: list[T], size: int = 500) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _key(key: str) -> str:
    return key[:KEY_CHARS]


class SqlAlertOutbox(SqlDatabase):
    """`core.ports.AlertOutbox` for one campaign."""

    def __init__(self, url: str, campaign: Campaign, engine: Engine | None = None) -> None:
        super().__init__(url, engine)
        self.campaign = campaign.slug

    def enqueue(self, alerts: Iterable[Alert], noted: Iterable[str] = ()) -> list[str]:
        """Add the alerts whose key is new; returns the keys now waiting to be posted."""
        self.prepare()
        now = datetime.now(UTC)
        unique = {_key(a.key): a for a in alerts}
        notes = sorted({_key(k) for k in noted})
        added: list[str] = []
        with self.engine.begin() as conn:
            sent_before = self._ledger(conn, list(unique))
            rows = [
                {
                    "campaign": self.campaign,
                    "alert_key": key,
                    "kind": alert.kind,
                    "title": alert.title,
                    "body": json.dumps({"lines": list(alert.lines), "facts": alert.facts}),
                    "created_at": now,
                    "attempts": 0,
                    # Announced by an older release: kept as delivered, never posted again.
                    "next_try_at": None if key in sent_before else now,
                    "delivered_at": sent_before.get(key),
                    "last_error": "",
                }
                for key, alert in sorted(unique.items())
            ]
            for part in _chunks(rows, 200):
                stmt = upsert(conn, alert_outbox).values(part).on_conflict_do_nothing()
                inserted = conn.execute(stmt.returning(alert_outbox.c.alert_key)).scalars()
                added += [k for k in inserted if k not in sent_before]
            ledger = [{"campaign": self.campaign, "alert_key": k, "sent_at": now} for k in notes]
            for part in _chunks(ledger, 500):
                conn.execute(upsert(conn, alerts_sent).values(part).on_conflict_do_nothing())
        return sorted(added)

    def known(self, keys: Iterable[str]) -> set[str]:
        """The keys enqueued (delivered or not) or noted."""
        self.prepare()
        wanted = sorted({_key(k) for k in keys})
        found: set[str] = set()
        with self.engine.connect() as conn:
            for part in _chunks(wanted):
                for table in (alert_outbox, alerts_sent):
                    query = sa.select(table.c.alert_key).where(
                        table.c.campaign == self.campaign, table.c.alert_key.in_(part)
                    )
                    found.update(conn.execute(query).scalars())
        return found

    def _ledger(self, conn: Connection, keys: list[str]) -> dict[str, datetime]:
        """Which of these keys an older release marked sent, and when."""
        sent: dict[str, datetime] = {}
        for part in _chunks(keys):
            query = sa.select(alerts_sent.c.alert_key, alerts_sent.c.sent_at).where(
                alerts_sent.c.campaign == self.campaign, alerts_sent.c.alert_key.in_(part)
            )
            sent.update({k: utc(at) for k, at in conn.execute(query).all()})
        return sent

    def take(
        self,
        now: datetime,
        lease: timedelta,
        limit: int = 20,
        keys: Iterable[str] | None = None,
    ) -> list[Alert]:
        """Up to `limit` due alerts, oldest first, leased to the caller for `lease`."""
        self.prepare()
        o = alert_outbox.c
        due = sa.and_(o.campaign == self.campaign, o.next_try_at <= now)
        if keys is not None:
            due = sa.and_(due, o.alert_key.in_(sorted({_key(k) for k in keys})))
        oldest = sa.select(o.alert_key).where(due).order_by(o.created_at, o.alert_key)
        with self.engine.begin() as conn:
            chosen = list(conn.execute(oldest.limit(limit)).scalars())
            if not chosen:
                return []
            # `due` again in the update: an alert another deliverer took in between is
            # left to it (PostgreSQL re-checks the condition on the row it waited for).
            taken = conn.execute(
                alert_outbox.update()
                .where(due, o.alert_key.in_(chosen))
                .values(next_try_at=now + lease)
                .returning(*_COLUMNS)
            ).all()
        alerts = [_alert(*row) for row in taken]
        return sorted(alerts, key=lambda a: (a.created_at or now, a.key))

    def delivered(self, alert: Alert) -> None:
        self.prepare()
        o = alert_outbox.c
        with self.engine.begin() as conn:
            conn.execute(
                alert_outbox.update()
                .where(o.campaign == self.campaign, o.alert_key == _key(alert.key))
                .values(delivered_at=datetime.now(UTC), next_try_at=None, last_error="")
            )

    def retry_later(self, alert: Alert, error: str, delay: timedelta) -> None:
        self.prepare()
        o = alert_outbox.c
        with self.engine.begin() as conn:
            conn.execute(
                alert_outbox.update()
                .where(
                    o.campaign == self.campaign,
                    o.alert_key == _key(alert.key),
                    o.delivered_at.is_(None),
                )
                .values(
                    attempts=o.attempts + 1,
                    last_error=error[:2000],
                    next_try_at=datetime.now(UTC) + delay,
                )
            )

    def waiting(self) -> int:
        """Alerts not delivered yet (due or waiting for their next try)."""
        self.prepare()
        o = alert_outbox.c
        query = sa.select(sa.func.count()).where(
            o.campaign == self.campaign, o.delivered_at.is_(None)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def history(self) -> list[dict[str, Any]]:
        """Every alert of the campaign with its state, oldest first (for people and tests)."""
        self.prepare()
        o = alert_outbox.c
        query = (
            sa.select(o.alert_key, o.kind, o.attempts, o.created_at, o.delivered_at, o.last_error)
            .where(o.campaign == self.campaign)
            .order_by(o.created_at, o.alert_key)
        )
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        for row in rows:
            for name in ("created_at", "delivered_at"):
                row[name] = utc(row[name]) if row[name] is not None else None
        return rows


_COLUMNS = (
    alert_outbox.c.alert_key,
    alert_outbox.c.kind,
    alert_outbox.c.title,
    alert_outbox.c.body,
    alert_outbox.c.attempts,
    alert_outbox.c.created_at,
    alert_outbox.c.last_error,
)


def _alert(
    key: str,
    kind: str,
    title: str,
    body: str,
    attempts: int,
    created_at: Any,
    last_error: str,
) -> Alert:
    data = json.loads(body)
    return Alert(
        key=key,
        kind=kind,
        title=title,
        lines=tuple(data.get("lines") or ()),
        facts=dict(data.get("facts") or {}),
        attempts=int(attempts),
        created_at=utc(created_at),
        last_error=last_error,
    )
