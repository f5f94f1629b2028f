"""Cal.com payloads in their real shapes, for tests.

Webhook bodies follow what Cal.com posts (`triggerEvent`, `createdAt`, `payload` with the
calendar-event fields, `organizer`, `attendees`, `responses`, `metadata.videoCallUrl`,
`bookingId`, `status`; a reschedule adds `rescheduleId`, `rescheduleUid`,
`rescheduleStartTime`, `rescheduleEndTime`, `rescheduledBy`; a cancellation adds
`cancellationReason`, `cancelledBy`). API items follow `GET /v2/bookings` with
`cal-api-version: 2024-08-13` (BookingOutput_2024_08_13).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

_IDS = itertools.count(4100)


def iso(moment: datetime) -> str:
    """Cal.com's own format: UTC with milliseconds and a Z."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _attendee(email: str, name: str, time_zone: str) -> dict[str, Any]:
    first, _, last = name.partition(" ")
    return {
        "email": email,
        "name": name,
        "firstName": first,
        "lastName": last,
        "timeZone": time_zone,
        "language": {"locale": "en"},
        "utcOffset": -300,
    }


def _event(
    *,
    uid: str,
    start: datetime,
    email: str,
    name: str,
    time_zone: str,
    meeting_url: str,
    status: str,
    minutes: int = 45,
) -> dict[str, Any]:
    return {
        "type": "diagnostic",
        "title": f"BusOS Diagnostic Call between Pat Host and {name}",
        "description": "",
        "additionalNotes": "Looking forward to it",
        "customInputs": {},
        "startTime": iso(start),
        "endTime": iso(start + timedelta(minutes=minutes)),
        "organizer": {
            "id": 7,
            "name": "Pat Host",
            "email": "pat@busos.example",
            "username": "busos",
            "timeZone": "America/Toronto",
            "language": {"locale": "en"},
            "timeFormat": "h:mma",
            "utcOffset": -300,
        },
        "responses": {
            "name": {"label": "your_name", "value": name},
            "email": {"label": "email_address", "value": email},
            "location": {
                "label": "location",
                "value": {"optionValue": "", "value": "integrations:daily"},
            },
            "notes": {"label": "additional_notes", "value": "Looking forward to it"},
            "guests": {"label": "additional_guests", "value": []},
        },
        "userFieldsResponses": {},
        "attendees": [_attendee(email, name, time_zone)],
        "location": "integrations:daily",
        "destinationCalendar": None,
        "hideCalendarNotes": False,
        "requiresConfirmation": False,
        "eventTypeId": 1201,
        "seatsShowAttendees": True,
        "seatsPerTimeSlot": None,
        "seatsShowAvailabilityCount": True,
        "schedulingType": None,
        "iCalUID": f"{uid}@Cal.com",
        "iCalSequence": 0,
        "uid": uid,
        "conferenceData": None,
        "appsStatus": [],
        "eventTitle": "BusOS Diagnostic Call",
        "eventDescription": "A 45-minute look at your business systems.",
        "price": 0,
        "currency": "usd",
        "length": minutes,
        "bookingId": next(_IDS),
        "metadata": {"videoCallUrl": meeting_url} if meeting_url else {},
        "status": status,
    }


def webhook_created(
    uid: str,
    start: datetime,
    *,
    at: datetime,
    email: str = "Jane@Example.com",
    name: str = "Jane Doe",
    time_zone: str = "America/Toronto",
    meeting_url: str = "https://app.cal.com/video/",
) -> dict[str, Any]:
    url = meeting_url + uid if meeting_url.endswith("/") else meeting_url
    return {
        "triggerEvent": "BOOKING_CREATED",
        "createdAt": iso(at),
        "payload": _event(
            uid=uid,
            start=start,
            email=email,
            name=name,
            time_zone=time_zone,
            meeting_url=url,
            status="ACCEPTED",
        ),
    }


def webhook_rescheduled(
    uid: str,
    start: datetime,
    *,
    old_uid: str,
    old_start: datetime,
    at: datetime,
    email: str = "Jane@Example.com",
    name: str = "Jane Doe",
    time_zone: str = "America/Toronto",
    meeting_url: str = "https://app.cal.com/video/",
) -> dict[str, Any]:
    body = webhook_created(
        uid, start, at=at, email=email, name=name, time_zone=time_zone, meeting_url=meeting_url
    )
    body["triggerEvent"] = "BOOKING_RESCHEDULED"
    body["payload"].update(
        rescheduleId=next(_IDS),
        rescheduleUid=old_uid,
        rescheduleStartTime=iso(old_start).replace(".000Z", "Z"),
        rescheduleEndTime=iso(old_start + timedelta(minutes=45)).replace(".000Z", "Z"),
        rescheduledBy=email.lower(),
    )
    return body


def webhook_cancelled(
    uid: str,
    start: datetime,
    *,
    at: datetime,
    email: str = "Jane@Example.com",
    name: str = "Jane Doe",
    time_zone: str = "America/Toronto",
) -> dict[str, Any]:
    body = webhook_created(uid, start, at=at, email=email, name=name, time_zone=time_zone)
    body["triggerEvent"] = "BOOKING_CANCELLED"
    body["payload"].update(
        status="CANCELLED",
        cancellationReason="Something came up",
        cancelledBy=email.lower(),
    )
    return body


def webhook_ping(at: datetime) -> dict[str, Any]:
    return {
        "triggerEvent": "PING",
        "createdAt": iso(at),
        "payload": {
            "type": "Test",
            "title": "Test trigger event",
            "startTime": iso(at),
            "endTime": iso(at),
            "attendees": [_attendee("jdoe@example.com", "John Doe", "Europe/London")],
            "organizer": {"name": "Cal", "email": "no-reply@cal.com", "timeZone": "Europe/London"},
        },
    }


def api_booking(
    uid: str,
    start: datetime,
    *,
    created: datetime,
    updated: datetime | None = None,
    status: str = "accepted",
    email: str = "jane@example.com",
    name: str = "Jane Doe",
    time_zone: str = "America/Toronto",
    rescheduled_from: str = "",
    rescheduled_to: str = "",
    booking_id: int | None = None,
) -> dict[str, Any]:
    """A BookingOutput_2024_08_13 item of `GET /v2/bookings`."""
    item: dict[str, Any] = {
        "id": booking_id if booking_id is not None else next(_IDS),
        "uid": uid,
        "title": f"BusOS Diagnostic Call between Pat Host and {name}",
        "description": "",
        "hosts": [
            {
                "id": 7,
                "name": "Pat Host",
                "email": "pat@busos.example",
                "displayEmail": "pat@busos.example",
                "username": "busos",
                "timeZone": "America/Toronto",
            }
        ],
        "status": status,
        "start": iso(start),
        "end": iso(start + timedelta(minutes=45)),
        "duration": 45,
        "eventTypeId": 1201,
        "eventType": {"id": 1201, "slug": "diagnostic"},
        "meetingUrl": f"https://app.cal.com/video/{uid}",
        "location": f"https://app.cal.com/video/{uid}",
        "absentHost": False,
        "createdAt": iso(created),
        # Cal.com leaves updatedAt null until the booking is first changed.
        "updatedAt": iso(updated) if updated else None,
        "metadata": {},
        "icsUid": f"{uid}@Cal.com",
        "attendees": [
            {
                "name": name,
                "email": email,
                "displayEmail": email,
                "timeZone": time_zone,
                "language": "en",
                "absent": False,
            }
        ],
        "guests": [],
        "bookingFieldsResponses": {"name": name, "email": email},
    }
    if status == "cancelled":
        item["cancellationReason"] = "Something came up"
        item["cancelledByEmail"] = email
    if rescheduled_from:
        item["rescheduledFromUid"] = rescheduled_from
    if rescheduled_to:
        item["rescheduledToUid"] = rescheduled_to
        item["rescheduledByEmail"] = email
    return item
