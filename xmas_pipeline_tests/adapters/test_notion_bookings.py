"""The Notion store's bookings (SQL ledger + Notion mirror) against the fake Notion API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xmas_pipeline.adapters.notion.store import NotionStore
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.bookings import BookingEvent, parse_webhook
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import parse_email_event
from xmas_pipeline.core.ports import OutcomeRecord, SentRecord, StateStore
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import (
    Workspace,
    add_contact,
    busos_workspace,
    requests_during,
    signup_event,
)
from xmas_pipeline_tests.support.calcom_payloads import (
    webhook_cancelled,
    webhook_created,
    webhook_rescheduled,
)

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
START = T0 + 80 * H
JANE = "person1@example.com"


@pytest.fixture
def fake() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        yield server


@pytest.fixture
def ws(fake: FakeNotion) -> Workspace:
    return busos_workspace(fake)


@pytest.fixture
def store(ws: Workspace, tmp_path: Path) -> Iterator[NotionStore]:
    ledger = SqlStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    made = ws.store(ledger=ledger)
    yield made
    made.close()
    ledger.dispose()


def booking(body: dict) -> BookingEvent:
    event = parse_webhook(body, received_at=T0)
    assert event is not None
    return event


def created(uid: str = "bkN1", start: datetime = START, email: str = JANE) -> BookingEvent:
    return booking(webhook_created(uid, start, at=T0, email=email, name="Person One"))


def page_of(fake: FakeNotion, database: str, email_prop: str, email: str) -> dict:
    (page,) = [row for row in fake.rows(database) if row[email_prop] == email]
    return page


def test_a_booking_updates_the_contact_and_the_sequence_page(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    add_contact(fake, ws, JANE, **{"Christmas Campaign Status": "Nurture Sequence"})
    store.upsert_signups(campaign, [signup_event(1)])
    report = store.upsert_booking_events(campaign, [created()])
    assert report.new_events == 1 and report.contact_missing == []

    contact = page_of(fake, ws.contacts, "email", JANE)
    assert contact["Booking Status"] == "Booked"
    assert contact["Christmas Campaign Status"] == "Pre-Call Prep"
    assert contact["Diagnostic Call Date"].startswith("2025-12-04T17:00")
    sequence = page_of(fake, ws.sequences, "Email", JANE)
    assert sequence["Booking UID"] == "bkN1"
    assert sequence["Meeting Time"].startswith("2025-12-04T17:00")
    assert bool(store.load_sequences(campaign).iloc[0]["booked"]) is True
    assert store.load_bookings(campaign)["booking_uid"].tolist() == ["bkN1"]


def test_a_redelivery_writes_nothing_to_notion(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    add_contact(fake, ws, JANE)
    store.upsert_signups(campaign, [signup_event(1)])
    store.upsert_booking_events(campaign, [created()])
    before = fake.rows(ws.contacts)
    writes = requests_during(fake, lambda: store.upsert_booking_events(campaign, [created()]))
    assert writes == 1  # one contacts query; no page updated
    assert fake.rows(ws.contacts) == before


def test_cancellation_and_reschedule_are_mirrored(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    add_contact(fake, ws, JANE)
    store.upsert_signups(campaign, [signup_event(1)])
    store.upsert_booking_events(campaign, [created()])
    later = START + 24 * H
    store.upsert_booking_events(
        campaign,
        [
            booking(
                webhook_rescheduled(
                    "bkN2", later, old_uid="bkN1", old_start=START, at=T0 + H, email=JANE
                )
            )
        ],
    )
    assert page_of(fake, ws.sequences, "Email", JANE)["Booking UID"] == "bkN2"
    assert page_of(fake, ws.contacts, "email", JANE)["Diagnostic Call Date"].startswith(
        "2025-12-05T17:00"
    )
    store.upsert_booking_events(
        campaign, [booking(webhook_cancelled("bkN2", later, at=T0 + 2 * H, email=JANE))]
    )
    assert page_of(fake, ws.contacts, "email", JANE)["Booking Status"] == "Not Booked"
    sequence = page_of(fake, ws.sequences, "Email", JANE)
    assert not sequence["Booking UID"] and sequence["Meeting Time"] is None
    assert bool(store.load_sequences(campaign).iloc[0]["booked"]) is False


def test_a_completed_call_is_not_undone_by_a_rerun(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    add_contact(fake, ws, JANE)
    store.upsert_booking_events(campaign, [created()])
    contact_id = next(r["_id"] for r in fake.rows(ws.contacts) if r["email"] == JANE)
    # Someone marks the call done in Notion.
    store.api.update_page(contact_id, {"Booking Status": {"select": {"name": "Completed"}}})
    store.upsert_booking_events(campaign, [created()])
    assert page_of(fake, ws.contacts, "email", JANE)["Booking Status"] == "Completed"


def test_a_booker_without_contact_or_sequence_is_kept_in_the_ledger(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    report = store.upsert_booking_events(campaign, [created(email="walk.in@example.com")])
    assert report.contact_missing == ["walk.in@example.com"]
    assert fake.rows(ws.sequences) == []
    mid = f"{campaign.slug}/walk.in@example.com/reminder-1/bkN1"
    record = SentRecord(
        message_id=mid,
        idempotency_key=mid,
        contact_key="walk.in@example.com",
        kind="reminder",
        step_id="reminder-1",
        step_number=1,
        due_at=START - 72 * H,
        sent_at=START - 72 * H,
        provider_id="re_1",
        booking_uid="bkN1",
    )
    store.record_sent(campaign, record)  # no page: the ledger is the record, no error
    log = store.load_reminder_log(campaign)
    assert log[["booking_uid", "step_number", "status"]].values.tolist() == [["bkN1", 1, "sent"]]


def test_reminders_are_recorded_in_both_places(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    store.upsert_signups(campaign, [signup_event(1)])
    store.upsert_booking_events(campaign, [created()])
    mid = f"{campaign.slug}/{JANE}/reminder-1/bkN1"
    base = {
        "message_id": mid,
        "contact_key": JANE,
        "kind": "reminder",
        "step_id": "reminder-1",
        "step_number": 1,
        "due_at": START - 72 * H,
        "booking_uid": "bkN1",
    }
    store.record_sent(
        campaign,
        SentRecord(**base, idempotency_key=mid, sent_at=START - 72 * H, provider_id="re_1"),
    )
    skip = {**base, "message_id": mid.replace("reminder-1", "reminder-2"), "step_id": "reminder-2"}
    skip["step_number"] = 2
    store.record_outcome(
        campaign, OutcomeRecord(**skip, status="skipped", reason="superseded", at=T0)
    )
    assert page_of(fake, ws.sequences, "Email", JANE)["Reminder 1 Sent"] is not None
    log = store.load_reminder_log(campaign).sort_values("step_number")
    assert log[["step_number", "status", "reason"]].values.tolist() == [
        [1, "sent", ""],
        [2, "skipped", "superseded"],
    ]


def test_flags_reach_the_page_and_never_weaken(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    store.upsert_signups(campaign, [signup_event(1)])
    store.set_contact_flags(campaign, JANE, JANE, delivery_state="complained")
    store.set_contact_flags(campaign, JANE, JANE, delivery_state="bounced")
    store.set_contact_flags(
        campaign, "walk.in@example.com", "walk.in@example.com", unsubscribed=True
    )
    assert page_of(fake, ws.sequences, "Email", JANE)["Delivery Status"] == "complained"
    flags = store.load_contact_flags(campaign).set_index("contact_key")
    assert flags.loc[JANE, "delivery_state"] == "complained"
    assert bool(flags.loc["walk.in@example.com", "unsubscribed"]) is True
    event = parse_email_event(
        {
            "type": "email.delivered",
            "created_at": T0.isoformat(),
            "data": {"email_id": "re_9", "to": [JANE]},
        },
        received_at=T0,
    )
    assert event is not None
    assert store.record_delivery_event(campaign, event) is True
    assert store.record_delivery_event(campaign, event) is False


def test_the_notion_store_is_a_whole_state_store(store: NotionStore, campaign: Campaign) -> None:
    """Both halves of the interface, with nothing to probe for: bookings and delivery
    status come from the SQL ledger the store is built with."""
    assert isinstance(store, StateStore)
    assert isinstance(store.ledger, SqlStore)
    assert store.load_bookings(campaign).empty
    assert store.delivery_status(campaign).empty
