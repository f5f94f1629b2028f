"""Forced sends read from the store: a forced backfill's extra rows, and the plan of a
one-off re-send to one contact (the rules are in `core.forced_sends`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.flags import merge_contact_flags
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
    keys = sorted(set(log["contact_key"].astype(str)))
    return forced_backfill_rows(log, _with_flags(store, campaign, keys), campaign)


def _with_flags(store: StateStore, campaign: Campaign, keys: list[str]) -> pd.DataFrame:
    """These contacts' sequences, with the flags kept on their contact rows merged in (an
    unsubscribe or a bounce recorded before the sequence existed counts)."""
    sequences, _ = merge_contact_flags(
        store.load_sequences(campaign, keys), store.load_contact_flags(campaign, keys)
    )
    return sequences


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
    contact = sendable_contact(_with_flags(store, campaign, [key]), key, campaign)
    needs_booking = any(step.startswith("reminder-") for step in wanted)
    bookings = store.load_bookings(campaign) if needs_booking else None
    return ContactSend(key, wanted, contact_send_plan(campaign, contact, wanted, now, bookings))
