"""What a send run sends: the campaign's state read from the store, planned by the core.

`due_plan` is the plan of a send run (`core.send_plan.plan_due` over what the store holds
now). `booking_hold` is the last-moment check the send path runs on each batch: every
reminder's booking is read again just before it goes, so a cancellation or a reschedule
that arrived meanwhile stops it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from xmas_pipeline.core.booking_state import bookings_from_frame
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import StateStore
from xmas_pipeline.core.reminders import stale_reason
from xmas_pipeline.core.send_plan import CampaignState, plan_due
from xmas_pipeline.services.sending import HoldCheck


def load_state(store: StateStore, campaign: Campaign) -> CampaignState:
    """Everything a plan needs, read once."""
    with_reminders = bool(campaign.reminders)
    return CampaignState(
        sequences=store.load_sequences(campaign),
        contact_flags=store.load_contact_flags(campaign),
        bookings=store.load_bookings(campaign) if with_reminders else None,
        reminder_log=store.load_reminder_log(campaign) if with_reminders else None,
    )


def due_plan(
    store: StateStore, campaign: Campaign, now: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything due now (nurture and reminders, exit rule applied), and the sequences."""
    return plan_due(load_state(store, campaign), campaign, now)


def booking_hold(store: StateStore, campaign: Campaign) -> HoldCheck:
    """The last-moment check: each reminder's booking re-read just before its batch goes."""

    def check(rows: list[dict[str, Any]]) -> dict[str, str]:
        reminders = [r for r in rows if r.get("kind") == "reminder"]
        if not reminders:
            return {}
        uids = {str(r["booking_uid"]) for r in reminders}
        current = bookings_from_frame(store.load_bookings(campaign, uids))
        held: dict[str, str] = {}
        for row in reminders:
            reason = stale_reason(row, current.get(str(row["booking_uid"])))
            if reason:
                held[row["message_id"]] = reason
        return held

    return check
