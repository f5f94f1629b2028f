"""The send plan: every message due now, nurture and reminders, in one frame.

`plan_due` is what a send run acts on. It starts from the campaign's state as the stores
hold it (`CampaignState`), applies the nurture cadence (`core.due`) and the reminder
rules (`core.reminders`), both through the one exit rule (`core.exit_rules`), and puts
each contact's signup fields on its rows so the send path can render them.

Plan columns: `core.due.DUE_COLUMNS`, the reminder columns (`REMINDER_EXTRA_COLUMNS`,
blank on nurture rows) and the signup fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.confirm_plan import CONFIRM_KIND, due_confirmations
from xmas_pipeline.core.due import CAMPAIGN_CODE, compute_due, compute_due_together, empty_due
from xmas_pipeline.core.flags import contact_rows, merge_contact_flags, merge_sequence_flags
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


def _reminding(state: CampaignState, campaign: Campaign) -> bool:
    """Whether a reminder may be due: a campaign that sends them, with a booking."""
    return bool(campaign.reminders) and state.bookings is not None and not state.bookings.empty


def due_reminders(
    state: CampaignState, campaign: Campaign, now: datetime, contacts: pd.DataFrame | None
) -> pd.DataFrame:
    """The reminder rows due now, with the booker's signup fields when there is a signup.
    `contacts`: each contact's flags (None only when no reminder can be due)."""
    if not _reminding(state, campaign) or state.bookings is None:
        return empty_reminders()
    if contacts is None:
        raise ValueError("due_reminders: a booking to remind of, and no contact flags")
    log = state.reminder_log
    settled = settled_reminders(log) if log is not None else None
    due = compute_due_reminders(state.bookings, settled, campaign, now, contacts)
    return due if due.empty else with_profile(due, state.sequences)


def plan_due(
    state: CampaignState, campaign: Campaign, now: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything due now (nurture and reminders, the exit rule applied), and the
    sequences with every exit flag merged in."""
    sequences, contacts = merge_contact_flags(state.sequences, state.contact_flags)
    due = compute_due(sequences, campaign, now, elsewhere=state.elsewhere, gaps=state.gaps)
    return _complete(state, campaign, now, sequences, contacts, with_profile(due, sequences))


def _complete(
    state: CampaignState,
    campaign: Campaign,
    now: datetime,
    sequences: pd.DataFrame,
    contacts: pd.DataFrame | None,
    plan: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The plan from its nurture rows (with their signup fields): the confirmations and
    the reminders added, in send order."""
    confirmations = due_confirmations(sequences, campaign, now)
    if not confirmations.empty:
        confirmations = with_profile(confirmations, sequences)
        plan = confirmations if plan.empty else pd.concat([plan, confirmations], ignore_index=True)
    merged = replace(state, sequences=sequences)
    plan = add_reminders(plan, due_reminders(merged, campaign, now, contacts))
    return in_send_order(plan), sequences


def plan_due_together(
    states: Mapping[str, CampaignState], campaigns: Sequence[Campaign], now: datetime
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """`plan_due` of each of these campaigns (by slug), equal to it frame for frame, with
    the nurture rows of all computed in one pass (`core.due.compute_due_together`): what
    a plan costs follows what is due, not how many campaigns there are.

    Campaigns whose sequences share one shape (the same columns and dtypes, and as many
    steps: their delays, send windows, gaps and exit rules may differ) are planned
    together; a campaign with a confirmation or a reminder due, or no nurture row, is
    completed on its own from there, as `plan_due` completes it."""
    merged: dict[str, tuple[pd.DataFrame, pd.DataFrame | None]] = {}
    for c in campaigns:
        state = states[c.slug]
        sequences = merge_sequence_flags(state.sequences, state.contact_flags)
        # Each contact's flags row serves the reminders only: not made when none can be due.
        contacts = contact_rows(sequences, state.contact_flags) if _reminding(state, c) else None
        merged[c.slug] = (sequences, contacts)
    groups: dict[tuple[Any, ...], list[Campaign]] = {}
    for campaign in campaigns:
        sequences = merged[campaign.slug][0]
        steps = tuple(step.number for step in campaign.steps)
        shape = (steps, tuple((n, str(t)) for n, t in sequences.dtypes.items()))
        groups.setdefault(shape, []).append(campaign)
    plans: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for members in groups.values():
        if len(members) == 1 or merged[members[0].slug][0].empty:
            for campaign in members:
                state = states[campaign.slug]
                sequences, contacts = merged[campaign.slug]
                due = compute_due(
                    sequences, campaign, now, elsewhere=state.elsewhere, gaps=state.gaps
                )
                plans[campaign.slug] = _complete(
                    state, campaign, now, sequences, contacts, with_profile(due, sequences)
                )
        else:
            plans.update(_plan_group(states, members, merged, now))
    return {c.slug: plans[c.slug] for c in campaigns}


def _plan_group(
    states: Mapping[str, CampaignState],
    campaigns: list[Campaign],
    merged: Mapping[str, tuple[pd.DataFrame, pd.DataFrame | None]],
    now: datetime,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """`plan_due_together` of campaigns whose sequences share one shape."""
    frames = [merged[c.slug][0] for c in campaigns]
    together = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    together[CAMPAIGN_CODE] = np.repeat(np.arange(len(campaigns)), [len(f) for f in frames])
    due = compute_due_together(
        together,
        campaigns,
        now,
        elsewhere={c.slug: states[c.slug].elsewhere for c in campaigns},
        gaps={c.slug: states[c.slug].gaps for c in campaigns},
    )
    if "contact_key" in together:
        profile = together[[CAMPAIGN_CODE, "contact_key", *PROFILE_FIELDS]]
        due = due.merge(profile, on=[CAMPAIGN_CODE, "contact_key"], how="left")
    codes = due[CAMPAIGN_CODE].to_numpy()
    plans: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    simple: list[int] = []
    for i, campaign in enumerate(campaigns):
        state = states[campaign.slug]
        sequences, contacts = merged[campaign.slug]
        confirmations = due_confirmations(sequences, campaign, now)
        reminders = due_reminders(replace(state, sequences=sequences), campaign, now, contacts)
        rows = np.flatnonzero(codes == i)
        if len(rows) and confirmations.empty and reminders.empty:
            simple.append(i)
            continue
        # Completed on its own, as `plan_due` would from its nurture rows.
        if len(rows):
            own = due.take(rows).drop(columns=CAMPAIGN_CODE).reset_index(drop=True)
        else:
            own = with_profile(empty_due(), sequences)
        plans[campaign.slug] = _complete(state, campaign, now, sequences, contacts, own)
    if simple:
        # Nothing but nurture rows: the reminder columns and the send order, for all at once.
        if len(simple) < len(campaigns):
            due = due.take(np.flatnonzero(np.isin(codes, simple))).reset_index(drop=True)
        # A stable sort: each campaign's rows keep the order its own plan gives them.
        rest = in_send_order(add_reminders(due, empty_reminders()))
        order = rest.pop(CAMPAIGN_CODE).to_numpy()
        for i in simple:
            own = rest.take(np.flatnonzero(order == i)).reset_index(drop=True)
            plans[campaigns[i].slug] = (own, merged[campaigns[i].slug][0])
    return plans


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
