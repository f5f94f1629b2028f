"""Cal.com bookings as one event model, whichever way they arrive.

Two sources describe the same bookings:

- webhook bodies (the inbox files): ``{"triggerEvent", "createdAt", "payload": {...}}`` with
  ``payload.uid``, ``payload.startTime``/``endTime``, ``payload.attendees[{name, email,
  timeZone}]``, the meeting link in ``payload.metadata.videoCallUrl`` (or
  ``videoCallData.url`` / ``location``). In ``BOOKING_RESCHEDULED``, ``payload.uid`` and
  ``startTime`` are the NEW booking and start, ``rescheduleUid`` the old booking and
  ``rescheduleStartTime`` its old start;
- API v2 booking objects (``GET /v2/bookings``, ``cal-api-version: 2024-08-13``): ``uid``,
  ``status`` (accepted / cancelled / rejected / pending), ``start``, ``end``,
  ``attendees[{name, email, timeZone}]``, ``meetingUrl``/``location``, ``createdAt``,
  ``updatedAt``, ``rescheduledFromUid`` (the booking this one replaced) and
  ``rescheduledToUid`` (on the old, cancelled booking of a reschedule).

Both carry the booking's ``metadata``: a booking link with ``?metadata[campaign]=<slug>``
(the links our emails carry, `core.booking_campaign.campaign_booking_url`) comes back as
``metadata.campaign`` (``metadata.utm_campaign`` is read too), the campaign the booking
belongs to (`core.booking_campaign`).

Both become a `BookingEvent`. Everything that later reaches an email (the name, the time
zone, the meeting link, the address) is checked here, at the edge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, EmailStr, TypeAdapter, ValidationError

from xmas_pipeline.core.payloads import load_object, parse_time
from xmas_pipeline.core.safe_text import fold_unsafe
from xmas_pipeline.core.signup import contact_key
from xmas_pipeline.core.zones import UTC_NAME, known_zone

BookingKind = Literal["created", "rescheduled", "cancelled"]

# The Cal.com poller's inbox files: {"source": API_SOURCE, "booking": <a GET /v2/bookings item>}.
API_SOURCE = "calcom-api-v2"

# Webhook trigger -> kind. A rejected request never became a meeting: like a cancellation.
WEBHOOK_KINDS: dict[str, BookingKind] = {
    "BOOKING_CREATED": "created",
    "BOOKING_RESCHEDULED": "rescheduled",
    "BOOKING_CANCELLED": "cancelled",
    "BOOKING_REJECTED": "cancelled",
}

# Booking uids end up in message ids and outbox file names: no `/`, no dots, no spaces.
_UID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_URL = re.compile(r"^https?://[^\s<>\"'\\]{1,2040}$", re.IGNORECASE)
_EMAIL = TypeAdapter(EmailStr)
# What a campaign named in a booking's metadata may look like (a slug); anything else is
# read as no campaign named: the booking is still kept (`core.booking_campaign`).
_CAMPAIGN = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


class BookingEvent(BaseModel):
    """One change to one booking: created, rescheduled (to this uid) or cancelled."""

    model_config = ConfigDict(frozen=True)

    uid: str
    kind: BookingKind
    contact_key: str = ""  # the attendee's email, lower-cased ("" only on a bare cancellation)
    email: str = ""
    name: str = ""
    time_zone: str = "UTC"  # a valid IANA name, else UTC
    start: datetime | None = None  # UTC; None only on a bare cancellation
    end: datetime | None = None
    meeting_url: str = ""  # http(s) only
    previous_uid: str = ""  # rescheduled: the booking this one replaces
    previous_start: datetime | None = None
    rescheduled_to: str = ""  # cancelled because it was moved to this new booking (API only)
    event_at: datetime  # when Cal.com made this change (webhook createdAt / API updatedAt)
    booked_at: datetime | None = None  # when the booking (at this time) was made
    source: str = "webhook"  # "webhook" | "api"
    ref: str = ""  # where it came from: an inbox file ref, "api"
    # The campaign the booking link named (`metadata.campaign`), "" when none did.
    campaign: str = ""

    @property
    def dedupe_key(self) -> str:
        """Identical for a re-delivery of the same webhook or the same API version."""
        return f"{self.uid}|{self.kind}|{self.event_at.astimezone(UTC).isoformat()}"

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else ""


# -- field helpers --------------------------------------------------------------------------


def _optional_time(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    return parse_time(value, field)


def clean_name(value: Any) -> str:
    """A display name safe for a subject line: no line breaks, controls or invisible
    format characters (`core.safe_text`). Cleaned rather than refused: the booking is real
    and its reminders must not be lost for a stray character in a name."""
    if not isinstance(value, str):
        return ""
    return " ".join(fold_unsafe(value).split())[:100]


def clean_time_zone(value: Any) -> str:
    """The attendee's zone when it is a known IANA name, else UTC (never an error)."""
    return known_zone(value) or UTC_NAME


def clean_url(value: Any) -> str:
    if isinstance(value, str) and _URL.match(value.strip()):
        return value.strip()
    return ""


def check_uid(value: Any, field: str = "uid") -> str:
    if not isinstance(value, str) or not _UID.match(value):
        raise ValueError(f"{field}: missing or not a booking uid (letters, digits, - and _)")
    return value


def check_email(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("attendees[0].email: missing")
    try:
        return str(_EMAIL.validate_python(value.strip()))
    except ValidationError as exc:
        raise ValueError(f"attendees[0].email: not a valid address: {value!r}") from exc


def _first_attendee(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    attendees = payload.get("attendees")
    if isinstance(attendees, list) and attendees and isinstance(attendees[0], Mapping):
        return attendees[0]
    return None


def _attendee_fields(payload: Mapping[str, Any], required: bool) -> dict[str, Any]:
    attendee = _first_attendee(payload)
    if attendee is None:
        if required:
            raise ValueError("attendees: missing (a booking needs at least one attendee)")
        return {}
    if not required and not attendee.get("email"):
        return {"name": clean_name(attendee.get("name"))}
    email = check_email(attendee.get("email"))
    return {
        "email": email,
        "contact_key": contact_key(email),
        "name": clean_name(attendee.get("name")),
        "time_zone": clean_time_zone(attendee.get("timeZone")),
    }


def linked_campaign(metadata: Any) -> str:
    """The campaign a booking's metadata names (`campaign`, else `utm_campaign`), as a
    lower-case slug; "" when none or not a slug."""
    if not isinstance(metadata, Mapping):
        return ""
    for name in ("campaign", "utm_campaign"):
        value = metadata.get(name)
        if isinstance(value, str) and _CAMPAIGN.match(value.strip().lower()):
            return value.strip().lower()
    return ""


# -- webhooks -------------------------------------------------------------------------------


def webhook_meeting_url(payload: Mapping[str, Any]) -> str:
    metadata = payload.get("metadata")
    if isinstance(metadata, Mapping) and clean_url(metadata.get("videoCallUrl")):
        return clean_url(metadata.get("videoCallUrl"))
    video = payload.get("videoCallData")
    if isinstance(video, Mapping) and clean_url(video.get("url")):
        return clean_url(video.get("url"))
    return clean_url(payload.get("location"))


def parse_webhook(
    body: bytes | str | Mapping[str, Any], *, received_at: datetime, ref: str = ""
) -> BookingEvent | None:
    """A Cal.com webhook body as a `BookingEvent`; None for triggers we do not act on (PING,
    MEETING_ENDED, BOOKING_REQUESTED, ...). Raises ValueError, with the reason, for a booking
    trigger whose payload lacks what a reminder needs."""
    data = load_object(body)
    trigger = data.get("triggerEvent")
    if not isinstance(trigger, str) or not trigger:
        raise ValueError("triggerEvent: missing")
    kind = WEBHOOK_KINDS.get(trigger)
    if kind is None:
        return None
    payload = data.get("payload")
    if not isinstance(payload, Mapping):
        raise ValueError("payload: missing or not an object")

    uid = check_uid(payload.get("uid"), "payload.uid")
    created = data.get("createdAt")
    event_at = parse_time(created, "createdAt") if created else received_at.astimezone(UTC)
    cancelling = kind == "cancelled"
    fields = _attendee_fields(payload, required=not cancelling)
    if cancelling:
        start = _optional_time(payload.get("startTime"), "payload.startTime")
    else:
        start = parse_time(payload.get("startTime"), "payload.startTime")

    previous_uid = ""
    previous_start = None
    if kind == "rescheduled":
        previous_uid = check_uid(payload.get("rescheduleUid"), "payload.rescheduleUid")
        previous_start = _optional_time(
            payload.get("rescheduleStartTime"), "payload.rescheduleStartTime"
        )
    return BookingEvent(
        uid=uid,
        kind=kind,
        start=start,
        end=_optional_time(payload.get("endTime"), "payload.endTime"),
        meeting_url=webhook_meeting_url(payload),
        previous_uid=previous_uid,
        previous_start=previous_start,
        event_at=event_at,
        booked_at=None if cancelling else event_at,
        source="webhook",
        ref=ref,
        campaign=linked_campaign(payload.get("metadata")),
        **fields,
    )


# -- API v2 ---------------------------------------------------------------------------------


def parse_api_booking(item: Mapping[str, Any], *, ref: str = "api") -> BookingEvent | None:
    """One `GET /v2/bookings` item as a `BookingEvent`; None while it awaits confirmation."""
    status = str(item.get("status") or "").lower()
    uid = check_uid(item.get("uid"), "uid")
    updated = item.get("updatedAt") or item.get("createdAt")
    event_at = parse_time(updated, "updatedAt")
    created_at = _optional_time(item.get("createdAt"), "createdAt") or event_at
    meeting_url = clean_url(item.get("meetingUrl")) or clean_url(item.get("location"))

    if status in ("cancelled", "rejected"):
        moved_to = item.get("rescheduledToUid") or ""
        return BookingEvent(
            uid=uid,
            kind="cancelled",
            start=_optional_time(item.get("start"), "start"),
            end=_optional_time(item.get("end"), "end"),
            meeting_url=meeting_url,
            rescheduled_to=check_uid(moved_to, "rescheduledToUid") if moved_to else "",
            event_at=event_at,
            source="api",
            ref=ref,
            campaign=linked_campaign(item.get("metadata")),
            **_attendee_fields(item, required=False),
        )
    if status != "accepted":
        return None  # pending (awaiting the host's confirmation) or unknown: not a meeting yet

    previous = item.get("rescheduledFromUid") or item.get("fromReschedule") or ""
    return BookingEvent(
        uid=uid,
        kind="rescheduled" if previous else "created",
        start=parse_time(item.get("start"), "start"),
        end=_optional_time(item.get("end"), "end"),
        meeting_url=meeting_url,
        previous_uid=check_uid(previous, "rescheduledFromUid") if previous else "",
        event_at=event_at,
        booked_at=created_at,
        source="api",
        ref=ref,
        campaign=linked_campaign(item.get("metadata")),
        **_attendee_fields(item, required=True),
    )


# -- inbox files ----------------------------------------------------------------------------


def parse_booking_file(raw: bytes, *, received_at: datetime, ref: str) -> BookingEvent | None:
    """A bookings inbox file: a webhook body, or an API item in the poller's envelope."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from exc
    if isinstance(data, dict) and data.get("source") == API_SOURCE:
        item = data.get("booking")
        if not isinstance(item, dict):
            raise ValueError("booking: missing or not an object")
        return parse_api_booking(item, ref=ref)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return parse_webhook(data, received_at=received_at, ref=ref)


def booking_events_frame(events: list[BookingEvent]) -> pd.DataFrame:
    """The `bookings` asset's value: one row per event."""
    return pd.DataFrame([event.model_dump(mode="json") for event in events])


def booking_events_from_frame(frame: pd.DataFrame) -> list[BookingEvent]:
    if frame.empty:
        return []
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [BookingEvent.model_validate(record) for record in records]
