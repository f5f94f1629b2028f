"""The Cal.com API v2 client and poller against the fake API over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from xmas_pipeline.adapters.calcom import (
    CalcomAuthError,
    CalcomClient,
    CalcomError,
    PollCursor,
    poll_bookings,
)
from xmas_pipeline_tests.fakes.calcom_api import DEFAULT_API_KEY, FakeCalcomApi
from xmas_pipeline_tests.support.calcom_payloads import api_booking

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def fake() -> Iterator[FakeCalcomApi]:
    with FakeCalcomApi(now=T0) as api:
        yield api


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake: FakeCalcomApi, sleeps: list[float]) -> Iterator[CalcomClient]:
    with CalcomClient(DEFAULT_API_KEY, fake.url, page_size=3, sleep=sleeps.append) as c:
        yield c


def _bookings(count: int, created: datetime = T0) -> list[dict]:
    return [
        api_booking(
            f"bk{i:02d}",
            T0 + (80 + i) * H,
            created=created + i * timedelta(minutes=1),
            email=f"p{i}@example.com",
        )
        for i in range(count)
    ]


def test_pages_through_everything_with_auth_and_version(
    fake: FakeCalcomApi, client: CalcomClient
) -> None:
    fake.put(*_bookings(7))
    uids = [item["uid"] for item in client.list_bookings()]
    assert uids == [f"bk{i:02d}" for i in range(7)]
    assert [r.query["skip"] for r in fake.requests] == ["0", "3", "6"]
    assert {r.query["take"] for r in fake.requests} == {"3"}
    assert {r.authorization for r in fake.requests} == {f"Bearer {DEFAULT_API_KEY}"}
    assert {r.api_version for r in fake.requests} == {"2024-08-13"}


def test_a_refused_key_is_an_auth_error_without_the_key(fake: FakeCalcomApi) -> None:
    with (
        CalcomClient("cal_wrong_secret_key", fake.url) as bad,
        pytest.raises(CalcomAuthError) as err,
    ):
        list(bad.list_bookings())
    assert "cal_wrong_secret_key" not in str(err.value)
    assert "401" in str(err.value)


def test_a_missing_version_header_is_caught_by_the_fake(fake: FakeCalcomApi) -> None:
    old = CalcomClient(DEFAULT_API_KEY, fake.url, api_version="")
    with old, pytest.raises(CalcomError, match="400"):
        list(old.list_bookings())


def test_429_waits_for_retry_after_then_succeeds(
    fake: FakeCalcomApi, client: CalcomClient, sleeps: list[float]
) -> None:
    fake.put(*_bookings(2))
    fake.throttle(2, retry_after="7")
    assert len(list(client.list_bookings())) == 2
    assert sleeps == [7.0, 7.0]
    assert [r.status for r in fake.requests] == [429, 429, 200]


def test_retry_after_is_capped_and_retries_run_out(
    fake: FakeCalcomApi, sleeps: list[float]
) -> None:
    fake.throttle(10, retry_after="3600")
    with (
        CalcomClient(
            DEFAULT_API_KEY, fake.url, max_retries=2, max_wait=30, sleep=sleeps.append
        ) as c,
        pytest.raises(CalcomError, match="429"),
    ):
        list(c.list_bookings())
    assert sleeps == [30.0, 30.0]


def test_server_errors_back_off_then_succeed(
    fake: FakeCalcomApi, client: CalcomClient, sleeps: list[float]
) -> None:
    fake.put(*_bookings(1))
    fake.fail_next(2, status=503)
    assert len(list(client.list_bookings())) == 1
    assert sleeps == [0.5, 1.0]


def test_unreachable_api_is_a_clear_error(sleeps: list[float]) -> None:
    with FakeCalcomApi() as gone:
        url = gone.url
    client = CalcomClient(DEFAULT_API_KEY, url, max_retries=1, sleep=sleeps.append)
    with client, pytest.raises(CalcomError, match="unreachable"):
        list(client.list_bookings())


def test_poll_watermark_overlap_and_dedupe(fake: FakeCalcomApi, client: CalcomClient) -> None:
    fake.put(*_bookings(4))
    first = poll_bookings(client, PollCursor(), first_since=T0 - 24 * H)
    assert [e.uid for e in first.events] == ["bk00", "bk01", "bk02", "bk03"]
    assert {e.kind for e in first.events} == {"created"}
    assert first.cursor.watermark == T0 + timedelta(minutes=3)

    # Nothing changed: the overlap sees the same versions again and drops them.
    cursor = PollCursor.from_json(first.cursor.to_json())
    second = poll_bookings(client, cursor, first_since=T0)
    assert second.events == []
    assert any(r.query.get("afterUpdatedAt") for r in fake.requests)

    # A cancellation (updatedAt set) and a brand-new booking (updatedAt still null).
    cancelled = api_booking(
        "bk01",
        T0 + 81 * H,
        created=T0 + timedelta(minutes=1),
        updated=T0 + H,
        status="cancelled",
        email="p1@example.com",
    )
    new = api_booking("bk09", T0 + 90 * H, created=T0 + 2 * H, email="p9@example.com")
    fake.put(cancelled, new)
    third = poll_bookings(client, second.cursor, first_since=T0)
    assert [(e.uid, e.kind) for e in third.events] == [("bk01", "cancelled"), ("bk09", "created")]
    assert third.cursor.watermark == T0 + 2 * H
    assert poll_bookings(client, third.cursor, first_since=T0).events == []


def test_a_change_inside_the_overlap_is_still_seen(
    fake: FakeCalcomApi, client: CalcomClient
) -> None:
    fake.put(api_booking("bkA", T0 + 80 * H, created=T0))
    first = poll_bookings(client, PollCursor(), first_since=T0 - H)
    # Written with a timestamp just before the watermark (a slow writer, skewed clocks).
    late = api_booking("bkB", T0 + 90 * H, created=T0 - timedelta(minutes=2), email="b@example.com")
    fake.put(late)
    again = poll_bookings(client, first.cursor, first_since=T0)
    assert [e.uid for e in again.events] == ["bkB"]


def test_filters_are_applied_client_side_when_the_api_ignores_them(
    fake: FakeCalcomApi, client: CalcomClient
) -> None:
    fake.ignore_filters = True
    old = api_booking("bkOld", T0 + 80 * H, created=T0 - 48 * H, email="o@example.com")
    fresh = api_booking("bkNew", T0 + 80 * H, created=T0, email="n@example.com")
    fake.put(old, fresh)
    result = poll_bookings(client, PollCursor(), first_since=T0 - H)
    assert [e.uid for e in result.events] == ["bkNew"]


def test_a_bad_item_is_reported_and_the_rest_go_through(
    fake: FakeCalcomApi, client: CalcomClient
) -> None:
    broken = api_booking("bkBad", T0 + 80 * H, created=T0)
    broken["attendees"] = []
    fake.put(broken, api_booking("bkGood", T0 + 80 * H, created=T0, email="g@example.com"))
    result = poll_bookings(client, PollCursor(), first_since=T0 - H)
    assert [e.uid for e in result.events] == ["bkGood"]
    assert result.rejected == [
        ("bkBad", "attendees: missing (a booking needs at least one attendee)")
    ]


def test_pending_bookings_are_not_events_yet(fake: FakeCalcomApi, client: CalcomClient) -> None:
    fake.put(api_booking("bkP", T0 + 80 * H, created=T0, status="pending"))
    result = poll_bookings(client, PollCursor(), first_since=T0 - H)
    assert result.events == [] and result.rejected == []
    assert [i["uid"] for i in result.items] == ["bkP"]


def test_cursor_json_round_trip() -> None:
    cursor = PollCursor(T0, {"bk1|2025-12-01T09:00:00+00:00": "2025-12-01T09:00:00+00:00"})
    assert PollCursor.from_json(cursor.to_json()) == cursor
    assert PollCursor.from_json(None) == PollCursor()
