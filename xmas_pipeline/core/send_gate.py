"""The rule at the moment of sending: may each message of a batch go now?

A plan is made when a send run starts; a batch may go minutes later, and a message may be
sent again by a forced backfill or the one-off re-send. So just before each batch goes the
person's flags and bookings are read again and every row passes this one gate, whatever
path it came by (`services.sending.deliver` calls it through `services.planning`):

- the exit rule (`core.exit_rules`) on the person's merged flags (`core.flags`): nurture
  emails by their step (a booking stops the steps after the first), reminders by the
  reminder rule. The one-off re-send asks only what stops a person for good
  (unsubscribed, bounced, complained): a pause or a booking is not a refusal there, since
  someone asked for that one email on purpose;
- for a reminder: the booking as it is now (`core.reminders.stale_reason`: cancelled,
  rescheduled or moved meanwhile holds it) and the meeting not yet started;
- for a nurture email after the welcome, when given what other campaigns sent
  (`elsewhere`, `gaps`): the gap between nurture emails across campaigns (`core.due`),
  since another campaign's run may have emailed the person after this plan was made
  (held as ``skip``, `MIN_GAP`, and planned again later).

Rows that may go are not in the answer; the others map to (action, reason): ``exit`` is
final (recorded once), ``skip`` is reconsidered by the next run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from xmas_pipeline.core.booking_state import BookingState
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.due import rested_elsewhere
from xmas_pipeline.core.exit_rules import EXIT, SEND, SKIP, exit_action
from xmas_pipeline.core.reminders import MEETING_STARTED, stale_reason

Decision = tuple[str, str]  # (action, reason)

# Held at the gate: another campaign's nurture email went to this person too recently.
MIN_GAP = "min-gap-across-campaigns"


def _flags(contacts: pd.DataFrame) -> dict[str, dict[str, Any]]:
    if contacts.empty:
        return {}
    known = contacts.drop_duplicates("contact_key", keep="last")
    return {str(row["contact_key"]): row for row in known.to_dict("records")}


def gate_rows(
    rows: list[Mapping[str, Any]],
    contacts: pd.DataFrame,
    bookings: Mapping[str, BookingState],
    campaign: Campaign,
    now: datetime,
    *,
    one_off: bool = False,
    elsewhere: pd.DataFrame | None = None,
    gaps: Mapping[str, timedelta] | None = None,
) -> dict[str, Decision]:
    """message_id -> (action, reason) for each row that must not go now.

    `contacts`: the merged flags of the rows' contacts (`core.flags.merge_contact_flags`,
    its second frame); `bookings`: the reminders' bookings as they are now; `elsewhere`
    and `gaps`: the last nurture email per person from each other campaign and those
    campaigns' gaps (`core.due.compute_due`'s), None to leave the gap to the plan.
    """
    by_contact = _flags(contacts)
    waiting = _waiting_elsewhere(rows, campaign, now, elsewhere, gaps)
    stopped: dict[str, Decision] = {}
    for row in rows:
        flags = dict(by_contact.get(str(row["contact_key"]), {}))
        decision = _decide(row, flags, bookings, campaign, now, one_off=one_off)
        later_nurture = row["kind"] == "nurture" and int(row["step_number"]) > 1
        if decision[0] == SEND and later_nurture and str(row["contact_key"]) in waiting:
            decision = (SKIP, MIN_GAP)
        if decision[0] != SEND:
            stopped[str(row["message_id"])] = decision
    return stopped


def _waiting_elsewhere(
    rows: list[Mapping[str, Any]],
    campaign: Campaign,
    now: datetime,
    elsewhere: pd.DataFrame | None,
    gaps: Mapping[str, timedelta] | None,
) -> set[str]:
    """The rows' contacts another campaign emailed within the longer of the two gaps."""
    if elsewhere is None or elsewhere.empty or not rows:
        return set()
    keys = pd.Series(sorted({str(row["contact_key"]) for row in rows}), dtype=object)
    now_ns = pd.Timestamp(now).tz_convert("UTC").as_unit("ns").value
    rested = rested_elsewhere(keys, campaign, now_ns, elsewhere, gaps)
    return set(keys[~rested])


def _decide(
    row: Mapping[str, Any],
    flags: dict[str, Any],
    bookings: Mapping[str, BookingState],
    campaign: Campaign,
    now: datetime,
    *,
    one_off: bool,
) -> Decision:
    if row["kind"] == "reminder":
        stale = stale_reason(row, bookings.get(str(row.get("booking_uid") or "")))
        if stale:
            return SKIP, stale
        start = pd.Timestamp(row["meeting_start"])
        if not pd.isna(start) and pd.Timestamp(now) >= start:
            return EXIT, MEETING_STARTED
    if one_off:
        # Only what stops a person for good refuses a send someone asked for.
        action, reason = exit_action(flags, campaign, "reminder")
        return (action, reason) if action == EXIT else (SEND, "")
    if row["kind"] == "reminder":
        return exit_action(flags, campaign, "reminder")
    return exit_action({**flags, "step_number": int(row["step_number"])}, campaign, "nurture")
