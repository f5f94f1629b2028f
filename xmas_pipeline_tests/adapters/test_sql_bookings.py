"""The SQL store's bookings, contact updates, reminder log, flags and email events,
on SQLite and PostgreSQL (the `sql_store` fixture runs each test on both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from threading import Thread

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.bookings import BookingEvent, parse_webhook
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.email_events import parse_email_event
from xmas_pipeline.core.ports import OutcomeRecord, SentRecord
from xmas_pipeline_tests.support.calcom_payloads import (
    webhook_cancelled,
    webhook_created,
    webhook_rescheduled,
)
from xmas_pipeline_tests.support.store_contract import event as signup_event

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
START = T0 + 80 * H


def parsed(body: dict) -> BookingEvent:
    event = parse_webhook(body, received_at=T0)
    assert event is not None
    return event


def test_a_booking_marks_the_contact_booked(sql_store: SqlStore, campaign: Campaign) -> None:
    sql_store.upsert_signups(campaign, [signup_event("jane@example.com")])
    report = sql_store.upsert_booking_events(
        campaign, [parsed(webhook_created("bkA", START, at=T0))]
    )
    assert report.new_events == 1 and report.bookings == ["bkA"]
    (update,) = report.updates
    assert update.booking_status == "Booked" and update.call_date == START

    frame = sql_store.load_bookings(campaign)
    row = frame.iloc[0]
    assert (row["booking_uid"], row["status"], row["start"]) == ("bkA", "active", START)
    assert row["time_zone"] == "America/Toronto"
    assert row["meeting_url"] == "https://app.cal.com/video/bkA"
    contact = sql_store.load_contact_bookings(campaign).iloc[0]
    assert contact["booking_status"] == "Booked"
    assert contact["call_date"] == START
    assert contact["campaign_status"] == "Pre-Call Prep"
    assert contact["booking_uid"] == "bkA"
    assert bool(sql_store.load_sequences(campaign).iloc[0]["booked"]) is True


def test_the_same_webhook_twice_changes_nothing(sql_store: SqlStore, campaign: Campaign) -> None:
    body = webhook_created("bkA", START, at=T0)
    sql_store.upsert_booking_events(campaign, [parsed(body)])
    before = sql_store.load_bookings(campaign)
    again = sql_store.upsert_booking_events(campaign, [parsed(body), parsed(body)])
    assert (again.new_events, again.repeats, again.updates) == (0, 2, [])
    assert sql_store.load_bookings(campaign).equals(before)


def test_cancellation_makes_the_contact_not_booked(sql_store: SqlStore, campaign: Campaign) -> None:
    sql_store.upsert_signups(campaign, [signup_event("jane@example.com")])
    sql_store.upsert_booking_events(campaign, [parsed(webhook_created("bkA", START, at=T0))])
    report = sql_store.upsert_booking_events(
        campaign, [parsed(webhook_cancelled("bkA", START, at=T0 + H))]
    )
    assert [u.booking_status for u in report.updates] == ["Not Booked"]
    assert sql_store.load_bookings(campaign).iloc[0]["status"] == "cancelled"
    contact = sql_store.load_contact_bookings(campaign).iloc[0]
    assert contact["booking_status"] == "Not Booked"
    assert contact["campaign_status"] == "Pre-Call Prep"  # a cancellation leaves it as it was
    assert bool(sql_store.load_sequences(campaign).iloc[0]["booked"]) is False


def test_reschedule_moves_the_call_date(sql_store: SqlStore, campaign: Campaign) -> None:
    sql_store.upsert_booking_events(campaign, [parsed(webhook_created("bkA", START, at=T0))])
    later = START + 24 * H
    sql_store.upsert_booking_events(
        campaign,
        [parsed(webhook_rescheduled("bkB", later, old_uid="bkA", old_start=START, at=T0 + H))],
    )
    frame = sql_store.load_bookings(campaign).set_index("booking_uid")
    assert frame.loc["bkA", "status"] == "rescheduled"
    assert frame.loc["bkB", "status"] == "active" and frame.loc["bkB", "previous_uid"] == "bkA"
    contact = sql_store.load_contact_bookings(campaign).iloc[0]
    assert contact["call_date"] == later and contact["booking_uid"] == "bkB"
    only_b = sql_store.load_bookings(campaign, ["bkB"])
    assert only_b["booking_uid"].tolist() == ["bkB"]
    assert sql_store.load_bookings(campaign, []).empty


def test_a_booker_who_never_signed_up_is_kept(sql_store: SqlStore, campaign: Campaign) -> None:
    body = webhook_created("bkS", START, at=T0, email="stranger@example.com")
    report = sql_store.upsert_booking_events(campaign, [parsed(body)])
    assert report.updates[0].contact_key == "stranger@example.com"
    assert sql_store.load_sequences(campaign).empty
    assert sql_store.load_contact_bookings(campaign)["contact_key"].tolist() == [
        "stranger@example.com"
    ]


def test_reminder_log_has_sent_and_held(sql_store: SqlStore, campaign: Campaign) -> None:
    due = START - 72 * H
    mid = f"{campaign.slug}/jane@example.com/reminder-1/bkA"
    sql_store.record_sent(
        campaign,
        SentRecord(
            message_id=mid,
            idempotency_key=mid,
            contact_key="jane@example.com",
            kind="reminder",
            step_id="reminder-1",
            step_number=1,
            due_at=due,
            sent_at=due + timedelta(seconds=5),
            provider_id="p1",
            booking_uid="bkA",
        ),
    )
    sql_store.record_outcome(
        campaign,
        OutcomeRecord(
            message_id=mid.replace("reminder-1", "reminder-2"),
            contact_key="jane@example.com",
            kind="reminder",
            step_id="reminder-2",
            step_number=2,
            due_at=START - 24 * H,
            status="skipped",
            reason="superseded",
            at=T0,
            booking_uid="bkA",
        ),
    )
    log = sql_store.load_reminder_log(campaign).sort_values("step_number")
    assert log[["booking_uid", "step_number", "status", "reason"]].values.tolist() == [
        ["bkA", 1, "sent", ""],
        ["bkA", 2, "skipped", "superseded"],
    ]
    assert log["due_at"].tolist() == [due, START - 24 * H]


def test_flags_for_contacts_with_and_without_a_sequence(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    sql_store.upsert_signups(campaign, [signup_event("jane@example.com")])
    sql_store.set_contact_flags(campaign, "jane@example.com", delivery_state="complained")
    sql_store.set_contact_flags(campaign, "jane@example.com", delivery_state="bounced")
    sql_store.set_contact_flags(
        campaign, "stranger@example.com", "stranger@example.com", unsubscribed=True
    )
    sequence = sql_store.load_sequences(campaign).iloc[0]
    assert sequence["delivery_state"] == "complained"  # never weakened by a later bounce
    flags = sql_store.load_contact_flags(campaign).set_index("contact_key")
    assert flags.loc["jane@example.com", "delivery_state"] == "complained"
    assert bool(flags.loc["stranger@example.com", "unsubscribed"]) is True
    assert bool(flags.loc["stranger@example.com", "paused"]) is False


def _resend(kind: str, email_id: str, at: datetime, **data: object) -> dict:
    return {
        "type": kind,
        "created_at": at.isoformat(),
        "data": {
            "created_at": at.isoformat(),
            "email_id": email_id,
            "from": "BusOS <hello@example.com>",
            "to": ["jane@example.com"],
            "subject": "Your results",
            "tags": {"campaign": "christmas-2025", "step": "email-1", "segment": "URGENT"},
            **data,
        },
    }


def test_delivery_status_only_moves_up(sql_store: SqlStore, campaign: Campaign) -> None:
    mid = f"{campaign.slug}/jane@example.com/email-1"
    sql_store.record_sent(
        campaign,
        SentRecord(
            message_id=mid,
            idempotency_key=mid,
            contact_key="jane@example.com",
            kind="nurture",
            step_id="email-1",
            step_number=1,
            due_at=T0,
            sent_at=T0,
            provider_id="re_123",
        ),
    )
    events = [
        parse_email_event(_resend("email.delivered", "re_123", T0 + H), received_at=T0),
        parse_email_event(_resend("email.opened", "re_123", T0 + 2 * H), received_at=T0),
        parse_email_event(_resend("email.delivered", "re_123", T0 + 3 * H), received_at=T0),
    ]
    assert [sql_store.record_delivery_event(campaign, e) for e in events] == [True, True, True]
    assert sql_store.record_delivery_event(campaign, events[1]) is False  # a repeat
    status = sql_store.delivery_status(campaign).iloc[0]
    assert (status["provider_id"], status["message_id"], status["status"]) == (
        "re_123",
        mid,
        "opened",
    )
    bounce = parse_email_event(
        _resend(
            "email.bounced",
            "re_123",
            T0 + 4 * H,
            bounce={"message": "550 no such user", "subType": "General", "type": "Permanent"},
        ),
        received_at=T0,
    )
    sql_store.record_delivery_event(campaign, bounce)
    assert sql_store.delivery_status(campaign).iloc[0]["status"] == "bounced"


def test_concurrent_create_and_cancel_end_cancelled(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    sql_store.prepare(campaign)  # the schema exists before runs race (as in production)
    create = parsed(webhook_created("bkA", START, at=T0))
    cancel = parsed(webhook_cancelled("bkA", START, at=T0 + H))
    errors: list[BaseException] = []

    def run(events: list[BookingEvent]) -> None:
        try:
            other = SqlStore(sql_store.url)  # its own engine, like another run's process
            other.upsert_booking_events(campaign, events)
            other.dispose()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [Thread(target=run, args=([e],)) for e in (cancel, create)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sql_store.load_bookings(campaign).iloc[0]["status"] == "cancelled"
    assert sql_store.load_contact_bookings(campaign).iloc[0]["booking_status"] == "Not Booked"
