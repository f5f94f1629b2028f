"""What the reputation guard counts, read from the SQL store: the messages sent since a
time (`messages`) and the bounces and complaints of those messages (`message_events`)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.engine import SqlDatabase
from xmas_pipeline.adapters.sql.tables import message_events, messages
from xmas_pipeline.core.campaign import Campaign

COUNTED_KINDS = ("bounced", "complained")


class SqlReputation(SqlDatabase):
    def sent_since(self, campaign: Campaign, since: datetime) -> pd.DataFrame:
        """Each message sent at or after `since`: its provider id and when it went."""
        query = sa.select(messages.c.provider_id, messages.c.sent_at).where(
            messages.c.campaign == campaign.slug, messages.c.sent_at >= since
        )
        return self.read_frame(query, times=("sent_at",))

    def bad_events_since(self, campaign: Campaign, since: datetime) -> pd.DataFrame:
        """The hard bounces and complaints of the messages sent at or after `since`."""
        sent_ids = sa.select(messages.c.provider_id).where(
            messages.c.campaign == campaign.slug,
            messages.c.sent_at >= since,
            messages.c.provider_id != "",
        )
        query = sa.select(message_events.c.provider_id, message_events.c.kind).where(
            message_events.c.campaign == campaign.slug,
            message_events.c.kind.in_(COUNTED_KINDS),
            message_events.c.provider_id.in_(sent_ids),
        )
        return self.read_frame(query)
