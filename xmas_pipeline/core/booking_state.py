"""Booking state: Cal.com changes folded into one row per booking uid.

- ``active``: a meeting that will happen, at ``start``;
- ``cancelled``: cancelled (or rejected) — terminal, no event brings it back;
- ``rescheduled``: replaced by another booking (``rescheduled_to``); the replacement carries
  ``previous_uid``, so reminders already sent for the old booking are not sent again.

``received_at`` is when the booking got its current start time (Cal.com's own time of the
change); reminder offsets already in the past at that moment are never sent. The fold is
idempotent: the same webhook delivered twice, or an API item polled twice, changes nothing,
and news older than what a booking already shows never rolls it back.

Which reminders are due is `core.reminders`; what a contact's CRM record says after its
bookings changed is `contact_booking_updates` below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

from xmas_pipeline.core.bookings import BookingEvent

BookingStatus = Literal["active", "cancelled", "rescheduled"]

BOOKING_COLUMNS: list[str] = [
    "booking_uid",
    "contact_key",
    "email",
    "name",
    "time_zone",
    "start",
    "end",
    "meeting_url",
    "status",
    "previous_uid",
    "rescheduled_to",
    "received_at",
    "updated_at",
]
_TIME_COLUMNS = ("start", "end", "received_at", "updated_at")

_KIND_ORDER = {"created": 0, "rescheduled": 1, "cancelled": 2}


class BookingState(BaseModel):
    """One booking as the pipeline knows it now."""

    model_config = ConfigDict(frozen=True)

    booking_uid: str
    contact_key: str = ""
    email: str = ""
    name: str = ""
    time_zone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None
    meeting_url: str = ""
    status: BookingStatus = "active"
    previous_uid: str = ""
    rescheduled_to: str = ""
    received_at: datetime
    updated_at: datetime

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else ""


# -- the fold -------------------------------------------------------------------------------


def fold_booking_events(
    events: Iterable[BookingEvent], existing: Mapping[str, BookingState] | None = None
) -> dict[str, BookingState]:
    """Apply events (in Cal.com's order of change) to the known bookings; a new dict."""
    state: dict[str, BookingState] = dict(existing or {})
    unique = {event.dedupe_key: event for event in events}.values()
    for event in sorted(unique, key=lambda e: (e.event_at, _KIND_ORDER[e.kind], e.uid)):
        if event.kind == "cancelled":
            _cancel(state, event)
            continue
        _activate(state, event)
        if event.kind == "rescheduled" and event.previous_uid and event.previous_uid != event.uid:
            _retire(state, event)
    return state


def _details(event: BookingEvent) -> dict[str, Any]:
    """The booking details an event states (blank values state nothing)."""
    found: dict[str, Any] = {
        "contact_key": event.contact_key,
        "email": event.email,
        "name": event.name,
        "meeting_url": event.meeting_url,
        "start": event.start,
        "end": event.end,
    }
    if event.email:  # the time zone comes with the attendee
        found["time_zone"] = event.time_zone
    return {key: value for key, value in found.items() if value not in ("", None)}


def _fill_blanks(current: BookingState, event: BookingEvent) -> BookingState:
    missing = {
        key: value
        for key, value in _details(event).items()
        if getattr(current, key) in ("", None) or (key == "time_zone" and not current.email)
    }
    return current.model_copy(update=missing) if missing else current


def _activate(state: dict[str, BookingState], event: BookingEvent) -> None:
    current = state.get(event.uid)
    previous = event.previous_uid if event.previous_uid != event.uid else ""
    if current is None:
        state[event.uid] = BookingState(
            booking_uid=event.uid,
            status="active",
            previous_uid=previous,
            received_at=event.booked_at or event.event_at,
            updated_at=event.event_at,
            **_details(event),
        )
        return
    if current.status != "active" or event.event_at < current.updated_at:
        # Terminal, or older news (an overlapping re-poll, an out-of-order delivery).
        state[event.uid] = _fill_blanks(current, event)
        return
    update = _details(event)
    update["updated_at"] = event.event_at
    if not current.previous_uid and previous:
        update["previous_uid"] = previous
    if event.start is not None and event.start != current.start:
        update["received_at"] = event.event_at  # the new time arrives now
    state[event.uid] = current.model_copy(update=update)


def _retire(state: dict[str, BookingState], event: BookingEvent) -> None:
    """The booking a reschedule replaced stops being a meeting."""
    old_uid = event.previous_uid
    current = state.get(old_uid)
    if current is None:
        state[old_uid] = BookingState(
            booking_uid=old_uid,
            contact_key=event.contact_key,
            email=event.email,
            name=event.name,
            time_zone=event.time_zone,
            start=event.previous_start,
            meeting_url=event.meeting_url,
            status="rescheduled",
            rescheduled_to=event.uid,
            received_at=event.event_at,
            updated_at=event.event_at,
        )
    elif current.status != "rescheduled":
        state[old_uid] = current.model_copy(
            update={
                "status": "rescheduled",
                "rescheduled_to": event.uid,
                "updated_at": max(current.updated_at, event.event_at),
            }
        )


def _cancel(state: dict[str, BookingState], event: BookingEvent) -> None:
    status: BookingStatus = "rescheduled" if event.rescheduled_to else "cancelled"
    current = state.get(event.uid)
    if current is None:
        state[event.uid] = BookingState(
            booking_uid=event.uid,
            status=status,
            rescheduled_to=event.rescheduled_to,
            received_at=event.event_at,
            updated_at=event.event_at,
            **_details(event),
        )
        return
    current = _fill_blanks(current, event)
    if current.status == "active" or (current.status == "cancelled" and status == "rescheduled"):
        current = current.model_copy(
            update={
                "status": status,
                "rescheduled_to": event.rescheduled_to or current.rescheduled_to,
                "updated_at": max(current.updated_at, event.event_at),
            }
        )
    state[event.uid] = current


# -- frames ---------------------------------------------------------------------------------


@cache
def _no_bookings() -> pd.DataFrame:
    return normalise_bookings(pd.DataFrame(columns=BOOKING_COLUMNS))


def empty_bookings() -> pd.DataFrame:
    # Made once, copied after: a plan asks for one per campaign, on the hot path.
    return _no_bookings().copy()


def _is_normal(frame: pd.DataFrame) -> bool:
    """Already canonical (what `bookings_frame` returns): skip the copy on the hot path."""
    if list(frame.columns) != BOOKING_COLUMNS or not frame.index.equals(pd.RangeIndex(len(frame))):
        return False
    for name in BOOKING_COLUMNS:
        dtype = frame[name].dtype
        if name in _TIME_COLUMNS:
            if not isinstance(dtype, pd.DatetimeTZDtype) or str(dtype.tz) != "UTC":
                return False
        elif not pd.api.types.is_string_dtype(dtype) or frame[name].isna().any():
            return False
    return True


def normalise_bookings(frame: pd.DataFrame) -> pd.DataFrame:
    """A store's bookings frame in canonical dtypes (UTC datetimes, strings)."""
    if _is_normal(frame):
        return frame
    out = frame.reindex(columns=BOOKING_COLUMNS).copy()
    for name in _TIME_COLUMNS:
        out[name] = pd.to_datetime(out[name], utc=True, format="ISO8601")
    for name in BOOKING_COLUMNS:
        if name not in _TIME_COLUMNS:
            out[name] = out[name].fillna("").astype(str)
    out.loc[out["time_zone"] == "", "time_zone"] = "UTC"
    return out.reset_index(drop=True)


def bookings_frame(states: Mapping[str, BookingState] | Iterable[BookingState]) -> pd.DataFrame:
    items = states.values() if isinstance(states, Mapping) else states
    rows = [state.model_dump() for state in items]
    if not rows:
        return empty_bookings()
    return normalise_bookings(pd.DataFrame(rows))


def bookings_from_frame(frame: pd.DataFrame) -> dict[str, BookingState]:
    states: dict[str, BookingState] = {}
    for row in normalise_bookings(frame).to_dict("records"):
        values = {
            key: (None if key in _TIME_COLUMNS and pd.isna(value) else value)
            for key, value in row.items()
        }
        for key in _TIME_COLUMNS:
            if values[key] is not None:
                values[key] = values[key].to_pydatetime()
        states[values["booking_uid"]] = BookingState(**values)
    return states


# -- contact updates ------------------------------------------------------------------------

BOOKED, NOT_BOOKED, PRE_CALL_PREP = "Booked", "Not Booked", "Pre-Call Prep"


@dataclass(frozen=True)
class ContactBookingUpdate:
    """What a contact's CRM record should say after its bookings changed."""

    contact_key: str
    email: str
    name: str
    booking_status: str  # "Booked" | "Not Booked"
    call_date: datetime | None  # the active booking's start; None when not booked
    booking_uid: str
    campaign_status: str  # "Pre-Call Prep" when booked; "" leaves it as it is

    @property
    def booked(self) -> bool:
        return self.booking_status == BOOKED


def contact_booking_updates(
    states: Mapping[str, BookingState], contact_keys: Iterable[str]
) -> list[ContactBookingUpdate]:
    """For each contact: Booked (with the latest active booking) or Not Booked (cancelled)."""
    by_contact: dict[str, list[BookingState]] = {}
    for state in states.values():
        by_contact.setdefault(state.contact_key, []).append(state)
    updates: list[ContactBookingUpdate] = []
    for key in sorted({k for k in contact_keys if k}):
        bookings = by_contact.get(key, [])
        active = [b for b in bookings if b.status == "active" and b.start is not None]
        if active:
            best = max(active, key=lambda b: (b.updated_at, b.start))
            updates.append(
                ContactBookingUpdate(
                    key, best.email, best.name, BOOKED, best.start, best.booking_uid, PRE_CALL_PREP
                )
            )
            continue
        cancelled = [b for b in bookings if b.status == "cancelled"]
        if cancelled:
            last = max(cancelled, key=lambda b: b.updated_at)
            updates.append(
                ContactBookingUpdate(
                    key, last.email, last.name, NOT_BOOKED, None, last.booking_uid, ""
                )
            )
    return updates
