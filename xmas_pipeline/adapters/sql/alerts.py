"""Which alerts went out, in the SQL store: one row per alert key, shared by every host."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from xmas_pipeline.adapters.sql.engine import SqlDatabase, upsert
from xmas_pipeline.adapters.sql.tables import alerts_sent
from xmas_pipeline.core.campaign import Campaign


class SqlAlertLedger(SqlDatabase):
    """`core.ports.AlertLedger` in the SQL store: shared by every host."""

    def __init__(self, url: str, campaign: Campaign, engine: Engine | None = None) -> None:
        super().__init__(url, engine)
        self.campaign = campaign.slug

    def seen(self, key: str) -> bool:
        self.prepare()
        query = sa.select(alerts_sent.c.alert_key).where(
            alerts_sent.c.campaign == self.campaign, alerts_sent.c.alert_key == key[:700]
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def mark(self, key: str) -> None:
        self.prepare()
        with self.engine.begin() as conn:
            conn.execute(
                upsert(conn, alerts_sent)
                .values(campaign=self.campaign, alert_key=key[:700], sent_at=datetime.now(UTC))
                .on_conflict_do_nothing()
            )
