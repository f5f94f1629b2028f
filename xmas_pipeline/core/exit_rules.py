"""The exit rule: may this person get this message now? One rule for every way a message
goes out (the schedule's nurture and reminders, a forced backfill, the one-off re-send).

The first condition that holds wins, in order of finality:

1. unsubscribed -> ``exit`` (nothing more from any step);
2. bounced, complained (each when the campaign's `exit.stop_all_on` names it) -> ``exit``;
3. booked -> ``exit``, nurture emails after the first only (`exit.stop_nurture_on_booking`):
   the nurture exists to get the booking and the reminders exist because of it, while the
   first email is the person's own assessment results, owed whichever came first, the
   booking or the signup;
4. paused -> ``skip``: not now, reconsidered on every run until someone unpauses.

``exit`` is final (recorded once, the sequence or the reminder offset is settled); ``skip``
is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from xmas_pipeline.core.campaign import Campaign

SEND, SKIP, EXIT = "send", "skip", "exit"
MessageKind = Literal["nurture", "reminder"]


def _flag(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.zeros(len(frame), dtype=bool)
    column = frame[name]
    filled = column.where(column.notna(), False) if column.dtype == object else column.fillna(0)
    return filled.astype(bool).to_numpy()


# The nurture step a booking never stops: the results of the assessment the person took.
RESULTS_STEP = 1


def exit_actions(
    flags: pd.DataFrame,
    campaign: Campaign,
    kind: MessageKind,
    step_numbers: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(action, reason) per row of `flags`, vectorised.

    `flags` has the per-contact columns `unsubscribed`, `delivery_state` ("", "bounced" or
    "complained"), `paused` and, for nurture, `booked`; a missing column means "no". For
    nurture, the step of each row comes from `step_numbers`, else from a `step_number`
    column; without either, a booking stops every nurture step (a forecast of later steps).
    """
    state = (
        flags["delivery_state"].fillna("").astype(str).to_numpy()
        if "delivery_state" in flags
        else np.full(len(flags), "", dtype=object)
    )
    stop_all = set(campaign.exit.stop_all_on)
    conditions: list[np.ndarray] = []
    actions: list[str] = []
    reasons: list[str] = []
    if "unsubscribed" in stop_all:
        conditions.append(_flag(flags, "unsubscribed"))
        actions.append(EXIT)
        reasons.append("unsubscribed")
    for delivery in ("bounced", "complained"):
        if delivery in stop_all:
            conditions.append(state == delivery)
            actions.append(EXIT)
            reasons.append(delivery)
    if kind == "nurture" and campaign.exit.stop_nurture_on_booking:
        booked = _flag(flags, "booked")
        if step_numbers is None and "step_number" in flags:
            step_numbers = flags["step_number"].to_numpy()
        if step_numbers is not None:
            booked = booked & (np.asarray(step_numbers, dtype="int64") > RESULTS_STEP)
        conditions.append(booked)
        actions.append(EXIT)
        reasons.append("booked")
    conditions.append(_flag(flags, "paused"))
    actions.append(SKIP)
    reasons.append("paused")
    action = np.select(conditions, actions, default=SEND).astype(object)
    reason = np.select(conditions, reasons, default="").astype(object)
    return action, reason


def exit_action(
    contact: Mapping[str, Any], campaign: Campaign, kind: MessageKind
) -> tuple[str, str]:
    """The same rule for one contact's flags: ("send", "") or (action, reason)."""
    action, reason = exit_actions(pd.DataFrame([dict(contact)]), campaign, kind)
    return str(action[0]), str(reason[0])
