"""The send plan: every message due now, nurture and reminders, in one frame.

`plan_due` is what a send run acts on. It starts from the campaign's state as the stores
hold it (`CampaignState`), applies the nurture cadence (`core.due`) and the reminder
rules (`core.reminders`), both through the one exit rule (`core.exit_rules`), and puts
each contact's signup fields on its rows so the send path can render them.

Plan columns: `core.due.DUE_COLUMNS`, the reminder columns (`REMINDER_EXTRA_COLUMNS`,
blank on nurture rows) and the signup fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pandas as pd

from xmas_pipeline.core.booking_state import empty_bookings
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.confirm_plan import CONFIRM_KIND, due_confirmations
from xmas_pipeline.core.due import compute_due
from xmas_pipeline.core.flags import merge_contact_flags
from xmas_pipeline.core.reminders import (
    REMINDER_EXTRA_COLUMNS,
    compute_due_reminders,
    empty_reminders,
    settled_reminders,
)
from xmas_pipeline.core.sequence_frame import PROFILE_FIELDS


@dataclass(frozen=True)
class CampaignState:
    """What a plan is computed from, as the stores return it."""

    sequences: pd.DataFrame  # `core.sequence_frame.sequence_columns`
    contact_flags: pd.DataFrame | None = None  # flags kept outside the sequences
    bookings: pd.DataFrame | None = None  # `core.booking_state.BOOKING_COLUMNS`
    reminder_log: pd.DataFrame | None = None  # every reminder sent, skipped or failed
    # The last nurture email per person from each other campaign (`core.due`), and those
    # campaigns' `min_gap`s by slug: the gap between nurture emails holds across campaigns.
    elsewhere: pd.DataFrame | None = None
    gaps: Mapping[str, timedelta] | None = None


def with_profile(due: pd.DataFrame, sequences: pd.DataFrame) -> pd.DataFrame:
    """The due rows, with each contact's signup fields for rendering (a booker who never
    signed up gets blanks, and the template's fallbacks)."""
    if "contact_key" not in sequences:
        return due
    return due.merge(sequences[["contact_key", *PROFILE_FIELDS]], on="contact_key", how="left")


def add_reminders(plan: pd.DataFrame, reminders: pd.DataFrame) -> pd.DataFrame:
    """Nurture and reminder rows in one plan; the reminder-only columns blank for nurture."""
    if reminders.empty:
        out = plan.copy()
    elif plan.empty:
        out = reminders.copy()
    else:
        out = pd.concat([plan, reminders], ignore_index=True)
    for name in REMINDER_EXTRA_COLUMNS:
        if name == "meeting_start":
            column = out[name] if name in out else pd.Series(pd.NaT, index=out.index)
            out[name] = pd.to_datetime(column, utc=True)
        else:
            column = out[name] if name in out else pd.Series("", index=out.index)
            out[name] = column.fillna("").astype(str)
    return out.reset_index(drop=True)


def due_reminders(
    state: CampaignState, campaign: Campaign, now: datetime, contacts: pd.DataFrame
) -> pd.DataFrame:
    """The reminder rows due now, with the booker's signup fields when there is a signup."""
    bookings = state.bookings if state.bookings is not None else empty_bookings()
    if bookings.empty or not campaign.reminders:
        return empty_reminders()
    log = state.reminder_log
    settled = settled_reminders(log) if log is not None else None
    due = compute_due_reminders(bookings, settled, campaign, now, contacts)
    return due if due.empty else with_profile(due, state.sequences)


def plan_due(
    state: CampaignState, campaign: Campaign, now: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything due now (nurture and reminders, the exit rule applied), and the
    sequences with every exit flag merged in."""
    sequences, contacts = merge_contact_flags(state.sequences, state.contact_flags)
    due = compute_due(sequences, campaign, now, elsewhere=state.elsewhere, gaps=state.gaps)
    plan = with_profile(due, sequences)
    confirmations = due_confirmations(sequences, campaign, now)
    if not confirmations.empty:
        confirmations = with_profile(confirmations, sequences)
        plan = confirmations if plan.empty else pd.concat([plan, confirmations], ignore_index=True)
    merged = replace(state, sequences=sequences)
    plan = add_reminders(plan, due_reminders(merged, campaign, now, contacts))
    return in_send_order(plan), sequences


def in_send_order(plan: pd.DataFrame) -> pd.DataFrame:
    """Reminders, confirmations and welcome emails first, then the rest by due time: when
    a run has a lot to send (a burst of signups, a catch-up), what answers a person's
    action now goes before follow-ups that can wait a few minutes."""
    if plan.empty:
        return plan
    urgent = (
        (plan["kind"] == "reminder")
        | (plan["kind"] == CONFIRM_KIND)
        | (plan["step_number"].astype(int) == 1)
    )
    order = (
        plan.assign(_later=~urgent)
        .sort_values(["_later", "due_at", "message_id"], kind="stable")
        .drop(columns="_later")
    )
    return order.reset_index(drop=True)
