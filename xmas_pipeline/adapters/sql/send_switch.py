"""The pause switch and the checked-template snapshots in the SQL store.

`SqlSendSwitch` (`core.ports.SendSwitch`): one row per campaign; no row means sending.
`SqlTemplateSnapshots` (`core.ports.TemplateSnapshots`): the templates a send run's
blocking check rendered, by run id, so that run sends exactly those; snapshots older than
a week are dropped as new ones are written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert, utc
from xmas_pipeline.adapters.sql.tables import send_switch, template_snapshots
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import SwitchState, TemplateSnapshot

SNAPSHOT_KEPT = timedelta(days=7)


class SqlSendSwitch(SqlDatabase):
    def __init__(self, url: str, engine: Engine | None = None) -> None:
        super().__init__(url, engine)

    def state(self, campaign: Campaign) -> SwitchState:
        self.prepare()
        query = sa.select(send_switch).where(send_switch.c.campaign == campaign.slug)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return SwitchState()
        return SwitchState(
            paused=bool(row["paused"]),
            reason=row["reason"],
            by=row["changed_by"],
            since=utc(row["changed_at"]),
        )

    def set(self, campaign: Campaign, *, paused: bool, reason: str, by: str) -> SwitchState:
        self.prepare()
        now = datetime.now(UTC)
        values = {
            "paused": paused,
            "reason": reason.strip()[:2000],
            "changed_by": by[:200],
            "changed_at": now,
        }
        with self.engine.begin() as conn:
            stmt = upsert(conn, send_switch).values(campaign=campaign.slug, **values)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=[send_switch.c.campaign], set_=values)
            )
        return SwitchState(paused, values["reason"], values["changed_by"], now)


class SqlTemplateSnapshots(SqlDatabase):
    def save(self, campaign: Campaign, run_id: str, snapshot: TemplateSnapshot) -> None:
        self.prepare()
        values = {
            "campaign": campaign.slug,
            "created_at": utc(snapshot.created_at),
            "problems": json.dumps(snapshot.problems),
            "body": json.dumps(snapshot.sources),
        }
        with self.engine.begin() as conn:
            stmt = upsert(conn, template_snapshots).values(run_id=run_id, **values)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[template_snapshots.c.run_id], set_=values
                )
            )
            horizon = datetime.now(UTC) - SNAPSHOT_KEPT
            conn.execute(
                template_snapshots.delete().where(template_snapshots.c.created_at < horizon)
            )

    def load(self, run_id: str) -> TemplateSnapshot | None:
        self.prepare()
        query = sa.select(template_snapshots).where(template_snapshots.c.run_id == run_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return TemplateSnapshot(
            sources=json.loads(row["body"]),
            problems=list(json.loads(row["problems"])),
            created_at=utc(row["created_at"]),
        )
