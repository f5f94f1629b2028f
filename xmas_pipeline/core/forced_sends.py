"""Forced sends: messages sent again on purpose, under fresh idempotency keys.

Two ways to ask for one, both recorded as forced and both through the exit rule:

- a backfill of `send_due_emails` with `force: true`: every nurture email already sent in
  the selected days goes again (`forced_backfill_rows`);
- the `resend_contact` job: chosen steps to one person now (`contact_send_plan`), after
  checks that refuse, with the reason, what must not be sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import EmailStr, TypeAdapter, ValidationError

from xmas_pipeline.core.booking_state import normalise_bookings
from xmas_pipeline.core.campaign import Campaign, message_id
from xmas_pipeline.core.exit_rules import EXIT, SEND, exit_action, exit_actions
from xmas_pipeline.core.sequence_frame import SIGNUP_FIELDS
from xmas_pipeline.core.signup import contact_key

_EMAIL = TypeAdapter(EmailStr)
_STEP = re.compile(r"(email|reminder)-([1-9][0-9]?)")
FLAG_COLUMNS = ["unsubscribed", "paused", "delivery_state", "booked"]


class SendRefused(ValueError):
    """The request cannot be carried out as asked; the message says why."""


def forced_backfill_rows(
    sent_log: pd.DataFrame, sequences: pd.DataFrame, campaign: Campaign
) -> pd.DataFrame:
    """Already-sent nurture messages (rows of a sent log) as plan rows to send again.

    Whoever the exit rule stops now (unsubscribed, bounced, booked, paused) is left out.
    """
    log = sent_log[sent_log["kind"] == "nurture"].drop_duplicates("message_id")
    if log.empty:
        return log
    rows = log[["message_id", "contact_key", "kind", "step_id", "step_number", "due_at"]].merge(
        sequences[["contact_key", *SIGNUP_FIELDS, "segment", *FLAG_COLUMNS]], on="contact_key"
    )
    action, _ = exit_actions(rows, campaign, "nurture")
    rows = rows[action == SEND]
    rows = rows.assign(
        due_day=rows["due_at"].dt.strftime("%Y-%m-%d"), action=SEND, reason="forced re-send"
    )
    return rows.drop(columns=FLAG_COLUMNS).reset_index(drop=True)


# -- one contact, chosen steps ------------------------------------------------------------------


def check_email(value: str) -> str:
    """The contact key of an address typed in the launchpad, or SendRefused."""
    try:
        _EMAIL.validate_python(value.strip())
    except ValidationError:
        raise SendRefused(f"{value!r} is not an email address") from None
    return contact_key(value)


def check_steps(campaign: Campaign, steps: list[str]) -> list[str]:
    """The requested step ids, each known to the campaign, in order, without repeats."""
    if not steps:
        raise SendRefused("no steps given: list at least one, e.g. steps: [email-3]")
    known = [s.step_id for s in campaign.steps] + [r.step_id for r in campaign.reminders]
    wanted = list(dict.fromkeys(step.strip().lower() for step in steps))
    unknown = [s for s in wanted if s not in known or not _STEP.fullmatch(s)]
    if unknown:
        raise SendRefused(
            f"unknown step(s) {', '.join(unknown)}; this campaign has {', '.join(known)}"
        )
    return wanted


def sendable_contact(sequences: pd.DataFrame, key: str, campaign: Campaign) -> dict[str, Any]:
    """The contact's sequence row; refused when the exit rule stops them for good.

    A pause is not a refusal here: someone asked for this one email on purpose.
    """
    rows = sequences[sequences["contact_key"] == key]
    if rows.empty:
        raise SendRefused(f"no contact {key} in this campaign")
    row = rows.iloc[0].to_dict()
    # Booked contacts may still be sent a chosen step: the rule for reminders applies.
    action, reason = exit_action(row, campaign, "reminder")
    if action == EXIT:
        if reason == "unsubscribed":
            raise SendRefused(f"{key} has unsubscribed: nothing may be sent to them")
        raise SendRefused(f"{key}'s address is marked {reason}: nothing may be sent to it")
    return row


def current_booking(bookings: pd.DataFrame, key: str) -> dict[str, Any]:
    """The contact's active booking (the latest by start), for a reminder's details."""
    frame = normalise_bookings(bookings)
    mine = frame[
        (frame["contact_key"] == key) & (frame["status"] == "active") & frame["start"].notna()
    ]
    if mine.empty:
        raise SendRefused(f"{key} has no active booking: there is no call to remind them of")
    return mine.sort_values("start").iloc[-1].to_dict()


def contact_send_plan(
    campaign: Campaign,
    contact: Mapping[str, Any],
    steps: list[str],
    now: datetime,
    bookings: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One plan row per step, all to be sent.

    A message keeps its own id and due time, so it is filed under its original due day;
    only the idempotency key is fresh (set by the caller). A step not yet due is refused:
    sent early, it would count as sent and the schedule would never send it on time (and
    the last email would end the sequence).
    """
    key = str(contact["contact_key"])
    base = {f: contact[f] for f in SIGNUP_FIELDS}
    rows: list[dict[str, Any]] = []
    for step_id in steps:
        kind, number = _STEP.fullmatch(step_id).groups()  # type: ignore[union-attr]
        row: dict[str, Any] = {
            **base,
            "contact_key": key,
            "kind": "nurture" if kind == "email" else "reminder",
            "step_id": step_id,
            "step_number": int(number),
            "segment": contact["segment"],
            "action": SEND,
            "reason": "re-sent from the resend_contact job",
        }
        if kind == "email":
            due_at = pd.Timestamp(contact["signup_at"]) + campaign.step(int(number)).delay
            row.update(message_id=message_id(campaign.slug, key, step_id), booking_uid="")
        else:
            booking = current_booking(bookings if bookings is not None else pd.DataFrame(), key)
            due_at = booking["start"] - campaign.reminders[int(number) - 1].before
            row.update(
                message_id=message_id(campaign.slug, key, step_id, booking["booking_uid"]),
                booking_uid=booking["booking_uid"],
                meeting_start=booking["start"],
                time_zone=booking["time_zone"],
                meeting_url=booking["meeting_url"],
                name=booking["name"],
            )
        if due_at > pd.Timestamp(now):
            raise SendRefused(
                f"{step_id} is not due for {key} until {due_at:%Y-%m-%d %H:%M} UTC; "
                "the schedule sends it then"
            )
        row.update(due_at=due_at, due_day=due_at.strftime("%Y-%m-%d"))
        rows.append(row)
    return pd.DataFrame(rows)
