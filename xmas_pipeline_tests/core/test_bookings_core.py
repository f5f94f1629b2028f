"""Parsing Cal.com webhook bodies and API v2 items into `BookingEvent`s."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from xmas_pipeline.core.bookings import parse_api_booking, parse_webhook
from xmas_pipeline_tests.support.calcom_payloads import (
    api_booking,
    webhook_cancelled,
    webhook_created,
    webhook_ping,
    webhook_rescheduled,
)

NOW = datetime(2025, 12, 1, 15, 0, tzinfo=UTC)
START = NOW + timedelta(days=4)


def test_created_webhook_gives_attendee_start_and_link() -> None:
    body = json.dumps(webhook_created("bk1AbC", START, at=NOW)).encode()
    event = parse_webhook(body, received_at=NOW + timedelta(seconds=3), ref="bookings/x.json")
    assert event is not None
    assert event.kind == "created"
    assert event.uid == "bk1AbC"
    assert event.contact_key == "jane@example.com"
    assert event.email == "Jane@example.com"  # the domain normalised, as EmailStr does
    assert event.name == "Jane Doe"
    assert event.first_name == "Jane"
    assert event.time_zone == "America/Toronto"
    assert event.start == START
    assert event.end == START + timedelta(minutes=45)
    assert event.meeting_url == "https://app.cal.com/video/bk1AbC"
    assert event.event_at == NOW  # Cal.com's createdAt, not our receipt time
    assert event.booked_at == NOW
    assert event.source == "webhook"
    assert event.ref == "bookings/x.json"
    assert event.previous_uid == ""


def test_rescheduled_webhook_new_start_and_old_booking() -> None:
    new_start = START + timedelta(days=2)
    body = webhook_rescheduled("bkNew", new_start, old_uid="bkOld", old_start=START, at=NOW)
    event = parse_webhook(body, received_at=NOW)
    assert event is not None
    assert event.kind == "rescheduled"
    assert event.uid == "bkNew"
    assert event.start == new_start  # payload.startTime is the NEW start
    assert event.previous_uid == "bkOld"
    assert event.previous_start == START


def test_cancelled_webhook() -> None:
    event = parse_webhook(webhook_cancelled("bk1AbC", START, at=NOW), received_at=NOW)
    assert event is not None
    assert event.kind == "cancelled"
    assert event.uid == "bk1AbC"
    assert event.contact_key == "jane@example.com"
    assert event.booked_at is None


def test_bare_cancellation_is_still_understood() -> None:
    body = {
        "triggerEvent": "BOOKING_CANCELLED",
        "createdAt": "2025-12-01T15:00:00Z",
        "payload": {"uid": "bk1AbC", "status": "CANCELLED"},
    }
    event = parse_webhook(body, received_at=NOW)
    assert event is not None and event.kind == "cancelled" and event.contact_key == ""


@pytest.mark.parametrize("trigger", ["PING", "MEETING_ENDED", "BOOKING_REQUESTED"])
def test_other_triggers_are_ignored(trigger: str) -> None:
    body = webhook_ping(NOW)
    body["triggerEvent"] = trigger
    assert parse_webhook(body, received_at=NOW) is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("attendees"), "attendees"),
        (lambda p: p.update(attendees=[]), "attendees"),
        (lambda p: p["attendees"][0].pop("email"), "email"),
        (lambda p: p["attendees"][0].update(email="not an address"), "email"),
        (lambda p: p.pop("startTime"), "startTime"),
        (lambda p: p.update(startTime="next tuesday"), "startTime"),
        (lambda p: p.pop("uid"), "uid"),
        (lambda p: p.update(uid="../../etc"), "uid"),
    ],
)
def test_missing_or_bad_fields_are_clear_errors(mutate, message: str) -> None:  # noqa: ANN001
    body = webhook_created("bk1AbC", START, at=NOW)
    mutate(body["payload"])
    with pytest.raises(ValueError, match=message):
        parse_webhook(body, received_at=NOW)


def test_reschedule_without_old_uid_is_an_error() -> None:
    body = webhook_rescheduled("bkNew", START, old_uid="bkOld", old_start=START, at=NOW)
    body["payload"].pop("rescheduleUid")
    with pytest.raises(ValueError, match="rescheduleUid"):
        parse_webhook(body, received_at=NOW)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"payload": {}}'])
def test_not_a_webhook(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_webhook(raw, received_at=NOW)


def test_unsafe_values_are_neutralised() -> None:
    body = webhook_created(
        "bk1AbC",
        START,
        at=NOW,
        name="Jane\r\nBcc: evil@x.com",
        time_zone="../../etc/passwd",
        meeting_url="javascript:alert(1)",
    )
    event = parse_webhook(body, received_at=NOW)
    assert event is not None
    assert "\n" not in event.name and "\r" not in event.name
    assert event.time_zone == "UTC"
    assert event.meeting_url == ""


def test_meeting_link_falls_back_to_location_url() -> None:
    body = webhook_created("bk1AbC", START, at=NOW, meeting_url="")
    body["payload"]["location"] = "https://zoom.us/j/123456"
    event = parse_webhook(body, received_at=NOW)
    assert event is not None and event.meeting_url == "https://zoom.us/j/123456"


def test_missing_created_at_uses_receipt_time() -> None:
    body = webhook_created("bk1AbC", START, at=NOW)
    del body["createdAt"]
    event = parse_webhook(body, received_at=NOW + timedelta(minutes=1))
    assert event is not None and event.event_at == NOW + timedelta(minutes=1)


def test_same_delivery_twice_has_the_same_dedupe_key() -> None:
    body = json.dumps(webhook_created("bk1AbC", START, at=NOW))
    first = parse_webhook(body, received_at=NOW)
    second = parse_webhook(body, received_at=NOW + timedelta(seconds=30))
    assert first is not None and second is not None
    assert first.dedupe_key == second.dedupe_key


# -- API v2 items ---------------------------------------------------------------------------


def test_api_accepted_booking() -> None:
    item = api_booking("bk1AbC", START, created=NOW, updated=NOW + timedelta(minutes=5))
    event = parse_api_booking(item)
    assert event is not None
    assert event.kind == "created"
    assert event.source == "api"
    assert event.start == START
    assert event.contact_key == "jane@example.com"
    assert event.time_zone == "America/Toronto"
    assert event.meeting_url == "https://app.cal.com/video/bk1AbC"
    assert event.event_at == NOW + timedelta(minutes=5)  # updatedAt orders and dedupes
    assert event.booked_at == NOW  # createdAt is when it was booked


def test_api_rescheduled_booking_points_to_the_old_one() -> None:
    item = api_booking("bkNew", START, created=NOW, rescheduled_from="bkOld")
    event = parse_api_booking(item)
    assert event is not None and event.kind == "rescheduled" and event.previous_uid == "bkOld"


def test_api_prisma_style_from_reschedule_field() -> None:
    item = api_booking("bkNew", START, created=NOW)
    item["fromReschedule"] = "bkOld"
    event = parse_api_booking(item)
    assert event is not None and event.previous_uid == "bkOld"


def test_api_cancelled_and_moved_away() -> None:
    cancelled = parse_api_booking(api_booking("bk1", START, created=NOW, status="cancelled"))
    moved = parse_api_booking(
        api_booking("bk2", START, created=NOW, status="cancelled", rescheduled_to="bk3")
    )
    assert cancelled is not None and cancelled.kind == "cancelled"
    assert cancelled.rescheduled_to == ""
    assert moved is not None and moved.kind == "cancelled" and moved.rescheduled_to == "bk3"


def test_api_rejected_is_a_cancellation_and_pending_is_not_yet_a_meeting() -> None:
    rejected = parse_api_booking(api_booking("bk1", START, created=NOW, status="rejected"))
    assert rejected is not None and rejected.kind == "cancelled"
    assert parse_api_booking(api_booking("bk1", START, created=NOW, status="pending")) is None


def test_api_item_without_attendee_is_an_error() -> None:
    item = api_booking("bk1", START, created=NOW)
    item["attendees"] = []
    with pytest.raises(ValueError, match="attendees"):
        parse_api_booking(item)


def test_api_dedupe_key_is_uid_and_updated_at() -> None:
    a = parse_api_booking(api_booking("bk1", START, created=NOW))
    b = parse_api_booking(api_booking("bk1", START, created=NOW))
    c = parse_api_booking(api_booking("bk1", START, created=NOW, updated=NOW + timedelta(1)))
    assert a is not None and b is not None and c is not None
    assert a.dedupe_key == b.dedupe_key != c.dedupe_key
