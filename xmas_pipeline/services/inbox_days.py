"""Reading one inbox day: each file parsed, the rest reported with the reason.

One reader for the three kinds (signups, bookings, email events); each file is parsed by
the core's parser for its kind. Bad files are kept where they are and listed with why, so
someone can fix one in place and the sensor ingests the day again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.core.bookings import BookingEvent, parse_booking_file
from xmas_pipeline.core.email_events import DeliveryEvent, parse_email_event
from xmas_pipeline.core.optin import Confirmation, is_confirmation, read_confirmation
from xmas_pipeline.core.signup import SignupEvent, parse_signup
from xmas_pipeline.core.unsubscribe import SigningKeys

E = TypeVar("E")
# (file bytes, arrival time, file reference) -> an event, None (a kind we do not act on),
# or ValueError with the reason.
Parser = Callable[[bytes, datetime, str], E | None]


@dataclass
class DayBatch(Generic[E]):
    events: list[E] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)  # {"file", "reason"}
    ignored: int = 0  # valid files of kinds the campaign does not act on (PING, opened...)


def read_day(inbox: Inbox, kind: str, day: str, parse: Parser[E]) -> DayBatch[E]:
    batch: DayBatch[E] = DayBatch()
    for item in inbox.files(kind, day):
        # A read that fails (a storage error) fails the run, which is retried: only a file
        # that reads but does not parse is reported as rejected.
        raw = inbox.read(item)
        try:
            event = parse(raw, item.received_at, item.ref)
        except ValueError as exc:
            reason = (str(exc).splitlines() or ["unreadable"])[0][:300]
            batch.rejected.append({"file": item.ref, "reason": reason})
            continue
        if event is None:
            batch.ignored += 1
        else:
            batch.events.append(event)
    return batch


@dataclass
class SignupDay(DayBatch[SignupEvent]):
    """A signups day: the signups, and double opt-in's confirmation clicks."""

    confirmations: list[Confirmation] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # clicks that confirm nothing


def read_signup_day(
    inbox: Inbox, day: str, keys: Callable[[], SigningKeys] | None = None
) -> SignupDay:
    """A repeat (a contact seen earlier the same day) is kept: the store turns an exact
    re-delivery into a no-op and a newer assessment into the retake rule's changes. Each
    signup carries the request details kept beside its file. A confirmation click
    (`core.optin`) is checked with `keys` (asked for only when the day holds one); without
    `keys` it is counted as ignored."""
    batch = SignupDay()
    for item in inbox.files("signups", day):
        raw = inbox.read(item)
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = None
        if is_confirmation(payload):
            if keys is None:
                batch.ignored += 1
                continue
            try:
                click = read_confirmation(
                    payload, keys(), received_at=item.received_at, source=item.ref
                )
                batch.confirmations.append(click)
            except ValueError as exc:
                batch.refused.append({"file": item.ref, "reason": str(exc)[:300]})
            continue
        try:
            event = parse_signup(raw, received_at=item.received_at, source=item.ref)
        except ValueError as exc:
            reason = (str(exc).splitlines() or ["unreadable"])[0][:300]
            batch.rejected.append({"file": item.ref, "reason": reason})
            continue
        request = inbox.request_of(item)
        batch.events.append(event.model_copy(update={"request": request}) if request else event)
    return batch


def read_booking_day(inbox: Inbox, day: str) -> DayBatch[BookingEvent]:
    return read_day(
        inbox,
        "bookings",
        day,
        lambda raw, at, ref: parse_booking_file(raw, received_at=at, ref=ref),
    )


def read_email_event_day(inbox: Inbox, day: str) -> DayBatch[DeliveryEvent]:
    return read_day(
        inbox,
        "email-events",
        day,
        lambda raw, at, ref: parse_email_event(raw, received_at=at, ref=ref),
    )


def repeats(events: list[SignupEvent]) -> int:
    """Signups repeating a contact seen earlier in the same list."""
    return len(events) - len({event.contact_key for event in events})
