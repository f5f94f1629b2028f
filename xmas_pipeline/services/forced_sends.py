"""Forced sends read from the store: a forced backfill's extra rows, and the plan of a
one-off re-send to one contact (the rules are in `core.forced_sends`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.forced_sends import (
    check_email,
    check_steps,
    contact_send_plan,
    forced_backfill_rows,
    sendable_contact,
)
from xmas_pipeline.core.ports import StateStore


def forced_backfill_plan(
    store: StateStore, campaign: Campaign, start_day: str, end_day: str
) -> pd.DataFrame:
    """Nurture emails already sent in [start_day, end_day], to send again."""
    log = store.sent_log(campaign, start_day, end_day)
    if log.empty:
        return log
    return forced_backfill_rows(log, store.load_sequences(campaign), campaign)


@dataclass(frozen=True)
class ContactSend:
    contact_key: str
    steps: list[str]
    plan: pd.DataFrame


def plan_contact_send(
    store: StateStore, campaign: Campaign, email: str, steps: list[str], now: datetime
) -> ContactSend:
    """The plan of a one-off re-send; `core.forced_sends.SendRefused` says why not."""
    key = check_email(email)
    wanted = check_steps(campaign, steps)
    contact = sendable_contact(store.load_sequences(campaign), key, campaign)
    needs_booking = any(step.startswith("reminder-") for step in wanted)
    bookings = store.load_bookings(campaign) if needs_booking else None
    return ContactSend(key, wanted, contact_send_plan(campaign, contact, wanted, now, bookings))
