"""What a send run sends: the campaign's state read from the store, planned by the core,
and the gate every batch passes just before it goes.

`due_plan` is the plan of a send run (`core.send_plan.plan_due` over what the store holds
now). `send_gate` is the last-moment check the send path runs on each batch
(`services.sending.Gate`): the pause switch, then the person's flags and each reminder's
booking read again and judged by `core.send_gate`, so whatever changed since the plan
(an unsubscribe, a bounce, a booking, a cancellation, a pause) holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from xmas_pipeline.core.booking_state import bookings_from_frame
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.flags import merge_contact_flags
from xmas_pipeline.core.ports import SendSwitch, StateStore
from xmas_pipeline.core.send_gate import gate_rows
from xmas_pipeline.core.send_plan import CampaignState, plan_due, plan_due_together
from xmas_pipeline.services.sending import Gate, GateDecision


def load_state(
    store: StateStore, campaign: Campaign, campaigns: Mapping[str, Campaign] | None = None
) -> CampaignState:
    """Everything a plan needs, read once. `campaigns`: every running campaign by slug
    (this one may be among them): the gap between nurture emails then holds across them
    (`core.due`); None: this campaign's own emails only. The flags always span campaigns
    (the store's `load_contact_flags`, `core.suppression`)."""
    with_reminders = bool(campaign.reminders)
    elsewhere = gaps = None
    if campaigns is not None:
        elsewhere = store.last_nurture_elsewhere(campaign)
        gaps = {slug: other.min_gap for slug, other in campaigns.items()}
    return CampaignState(
        sequences=store.load_sequences(campaign),
        contact_flags=store.load_contact_flags(campaign),
        bookings=store.load_bookings(campaign) if with_reminders else None,
        reminder_log=store.load_reminder_log(campaign) if with_reminders else None,
        elsewhere=elsewhere,
        gaps=gaps,
    )


def due_plans(
    store: StateStore,
    campaigns: Sequence[Campaign],
    now: datetime,
    running: Mapping[str, Campaign] | None = None,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each campaign's plan now, from one read of what may be due in any of them and one
    pass over it (`core.send_plan.plan_due_together`): what it costs follows what is
    due, not how many sequences or campaigns there are. `running`:
    every running campaign by slug, for the gap across campaigns (as `load_state`'s)."""
    states = store.load_due_states(campaigns, now, running=running)
    busy = [c for c in campaigns if not _idle(states[c.slug])]
    # The busy ones planned in one pass (`core.send_plan.plan_due_together`).
    plans = plan_due_together(states, busy, now) if busy else {}
    idle_plan: pd.DataFrame | None = None
    for campaign in campaigns:
        if campaign.slug in plans:
            continue
        state = states[campaign.slug]
        # Nothing read, nothing due: the empty plan (the same columns for every
        # campaign) is made once, so an idle campaign costs next to nothing.
        if idle_plan is None:
            idle_plan = plan_due(state, campaign, now)[0]
        plans[campaign.slug] = (idle_plan.copy(), state.sequences)
    return {c.slug: plans[c.slug] for c in campaigns}


def _idle(state: CampaignState) -> bool:
    """No sequence that may be due and no booking that may need a reminder."""
    if not state.sequences.empty:
        return False
    return state.bookings is None or not (state.bookings["status"] == "active").any()


def due_plan(
    store: StateStore,
    campaign: Campaign,
    now: datetime,
    campaigns: Mapping[str, Campaign] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything due now (nurture and reminders, exit rule applied), and the sequences
    it was planned from (those that may have something due). `campaigns`: as
    `load_state`'s."""
    return due_plans(store, [campaign], now, campaigns)[campaign.slug]


def merged_flags(store: StateStore, campaign: Campaign, keys: list[str]) -> pd.DataFrame:
    """These contacts' flags as they are now, sequence and contact rows merged."""
    _, contacts = merge_contact_flags(
        store.load_sequences(campaign, keys), store.load_contact_flags(campaign, keys)
    )
    return contacts


def send_gate(
    store: StateStore,
    campaign: Campaign,
    switch: SendSwitch | None,
    *,
    one_off: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    campaigns: Mapping[str, Campaign] | None = None,
) -> Gate:
    """The gate of every batch. `switch` None: this send was asked for explicitly (a
    backfill, the one-off re-send) and goes while sending is paused. `one_off`: the
    one-off re-send's rule (only what stops a person for good refuses it). `campaigns`:
    every running campaign by slug: a nurture email another campaign's run sent since
    the plan holds this one back for the gap (`core.send_gate.MIN_GAP`); the flags
    always span campaigns."""

    def check(rows: list[dict[str, Any]]) -> GateDecision:
        if switch is not None:
            state = switch.state(campaign)
            if state.paused:
                return GateDecision(paused=state.describe())
        if not rows:
            return GateDecision()
        keys = sorted({str(r["contact_key"]) for r in rows})
        uids = {str(r["booking_uid"]) for r in rows if r.get("kind") == "reminder"}
        bookings = bookings_from_frame(store.load_bookings(campaign, uids)) if uids else {}
        later = [r["contact_key"] for r in rows if r.get("kind") == "nurture"]
        elsewhere = gaps = None
        if campaigns is not None and later and not one_off:
            elsewhere = store.last_nurture_elsewhere(campaign, later)
            gaps = {slug: other.min_gap for slug, other in campaigns.items()}
        stopped = gate_rows(
            rows,
            merged_flags(store, campaign, keys),
            bookings,
            campaign,
            clock(),
            one_off=one_off,
            elsewhere=elsewhere,
            gaps=gaps,
        )
        return GateDecision(stopped=stopped)

    return check
