"""`SqlStore`: the whole state store on SQL (SQLite in `XMAS_HOME` by default, PostgreSQL
by URL): sequences and sends (`sequences.py`), bookings and events (`bookings.py`), and
what Notion should show of each contact (`snapshots.py`), double opt-in's consent records
and held profile changes (`optin.py`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from xmas_pipeline.adapters.sql.bookings import SqlBookings
from xmas_pipeline.adapters.sql.due_state import load_due_states
from xmas_pipeline.adapters.sql.optin import SqlOptIn
from xmas_pipeline.adapters.sql.sequences import SqlSequences
from xmas_pipeline.adapters.sql.snapshots import SqlSnapshots
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.send_plan import CampaignState


class SqlStore(SqlSequences, SqlBookings, SqlSnapshots, SqlOptIn):
    """`StateStore` over SQLAlchemy Core."""

    def load_due_states(
        self,
        campaigns: Sequence[Campaign],
        now: datetime,
        horizon: timedelta = timedelta(0),
        running: Mapping[str, Campaign] | None = None,
    ) -> dict[str, CampaignState]:
        """What the plans of these campaigns at `now` (or their forecast `horizon` ahead)
        are made from, read together (`adapters.sql.due_state`)."""
        for campaign in campaigns:
            self.prepare(campaign)
        with self.engine.connect() as conn:
            return load_due_states(
                conn, campaigns, now + horizon, self.contact_flags_of, running=running
            )
