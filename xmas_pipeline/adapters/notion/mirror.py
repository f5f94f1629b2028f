"""What the Notion pages should say about a contact, from the store's snapshot, and who
owns each value.

The store wins for what the pipeline does (the signup, the segment, sent dates, reminders,
the booking, exit reason, completion, failures, delivery state): a hand edit of those is
put back by the next sync (`notion_edits_sensor` queues the contact when it sees one).
Notion wins for what people decide: `Paused` (read back into the store by the edits
sensor, so it is never overwritten), `Unsubscribed` ticked by hand (an unsubscribe: never
undone), a contact's Booking Status set to Completed or No-Show after the call (the
booking fields are then left alone until a new call is booked), and templates.

Values are compared in the form a page read returns them: dates as ISO text, blank text
and None alike. `written` is what the store last wrote to (or read from) the page.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from xmas_pipeline.adapters.notion.props import iso_datetime, parse_datetime
from xmas_pipeline.adapters.notion.schema import NotionSchema, status_property
from xmas_pipeline.core.booking_state import BOOKED
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import ContactSnapshot
from xmas_pipeline.core.sequence_frame import PROFILE_FIELDS

# Booking Status values people set after the call; a booking re-read must not undo them.
AFTER_CALL = ("Completed", "No-Show")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# The signup profile and its segment: the values a page shows of who the contact is.
PROFILE = (*PROFILE_FIELDS, "segment")


def comparable(value: Any) -> Any:
    """A value as a page read would give it back."""
    if isinstance(value, datetime):
        return iso_datetime(value)
    if value == "":
        return None
    return value


def _moment(value: Any) -> datetime | None:
    if not (isinstance(value, str) and _ISO_DATE.match(value)):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def same(a: Any, b: Any) -> bool:
    a, b = comparable(a), comparable(b)
    if a == b:
        return True
    # One instant written two ways ("...Z" and "...+00:00", with or without milliseconds).
    left, right = _moment(a), _moment(b)
    return left is not None and left == right


def differences(written: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in wanted.items() if not same(written.get(name), value)}


def sequence_values(
    schema: NotionSchema, campaign: Campaign, snap: ContactSnapshot, title: str | None
) -> dict[str, Any]:
    """Every value the contact's Email Sequence page should hold (None: empty)."""
    p = schema.sequences
    seq = snap.sequence or {}
    values: dict[str, Any] = {getattr(p, name): seq.get(name) for name in PROFILE}
    values.update(
        {
            p.email: snap.contact_key,
            p.campaign: campaign.notion_select,
            p.signup_date: seq.get("signup_at"),
            p.assessment_completed: True,
            p.sequence_completed: bool(seq.get("completed")),
            # A double opt-in signup not confirmed yet says so where the team looks.
            p.exit_reason: seq.get("exit_reason")
            or ("awaiting confirmation" if seq.get("awaiting_confirmation") else None),
            p.unsubscribed: snap.unsubscribed,
            p.paused: snap.paused,
            p.delivery_status: snap.delivery_state or None,
            p.last_error: snap.last_error or None,
        }
    )
    for step in campaign.steps:
        values[p.sent(step.number)] = snap.nurture_sent.get(step.number)
    if snap.booking_status:
        # Only what the store knows of the contact's bookings: a page imported from the
        # first tool keeps the booking it shows until Cal.com tells the store otherwise.
        values[p.booking_uid] = snap.booking_uid or None
        values[p.meeting_time] = snap.meeting_time
        for reminder in campaign.reminders:
            values[p.reminder(reminder.number)] = snap.reminders_sent.get(reminder.number)
    if title and title not in values:
        values[title] = snap.contact_key  # a readable, unique row name (set on create only)
    return values


def for_create(values: dict[str, Any]) -> dict[str, Any]:
    """A new page needs only the values that are set."""
    return {k: v for k, v in values.items() if comparable(v) is not None}


def contact_changes(
    schema: NotionSchema,
    campaign: Campaign,
    snap: ContactSnapshot,
    seen: dict[str, Any],
    *,
    owns_booking: bool = True,
) -> dict[str, Any]:
    """What this campaign writes on the contact's CRM page, given its values as last seen.

    The CRM page is shared by every campaign the person is in: each campaign writes its
    own status property (`notion_status_property`), and only the campaign that owns the
    person's booking (`owns_booking`, see `adapters.sql.notion_pages.booking_owners`)
    writes the booking fields, so two campaigns never write them both."""
    c = schema.contacts
    status_name = status_property(c, campaign)
    wanted: dict[str, Any] = {}
    seq = snap.sequence
    booked = snap.booking_status == BOOKED
    if seq is not None:
        wanted[c.assessment_score] = seq.get("assessment_score")
        wanted[c.segment] = seq.get("segment")
    if booked:
        wanted[status_name] = c.precall_status
    elif seq is not None and seen.get(status_name) != c.precall_status:
        # A contact already preparing for a booked call stays there.
        wanted[status_name] = c.nurture_status
    if snap.booking_status and owns_booking:
        status = seen.get(c.booking_status)
        same_call = same(seen.get(c.diagnostic_call_date), snap.meeting_time)
        if not (status in AFTER_CALL and (same_call or not booked)):
            wanted[c.booking_status] = snap.booking_status
            if booked:
                wanted[c.diagnostic_call_date] = snap.meeting_time
    return differences(seen, wanted)
