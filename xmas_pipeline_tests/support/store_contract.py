"""Behaviour every `StateStore` must have. Each function takes a fresh, empty store.

`test_sql_store.py` runs these on SQLite and PostgreSQL; the Notion store's tests run them
against the fake Notion API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import OutcomeRecord, SentRecord, StateStore
from xmas_pipeline.core.sequence_frame import sent_column, sequence_columns
from xmas_pipeline.core.signup import Signup, SignupEvent

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)


def event(email: str, at: datetime = T0, **fields: object) -> SignupEvent:
    data = {"email": email, "first_name": "Jane", "assessment_score": 52, **fields}
    # Each delivery is a file of its own, as in the inbox.
    source = f"test/{email}/{at.isoformat()}"
    return SignupEvent(signup=Signup.model_validate(data), received_at=at, source=source)


def sent(campaign: Campaign, key: str, step: int, at: datetime = T0) -> SentRecord:
    return SentRecord(
        message_id=f"{campaign.slug}/{key}/email-{step}",
        idempotency_key=f"{campaign.slug}/{key}/email-{step}",
        contact_key=key,
        kind="nurture",
        step_id=f"email-{step}",
        step_number=step,
        due_at=at,
        sent_at=at + timedelta(seconds=5),
        provider_id=f"prov-{key}-{step}",
        segment="URGENT",
        completes_sequence=step == campaign.last_step,
    )


def check_signup_creates_a_sequence_with_every_field(store: StateStore, campaign: Campaign) -> None:
    store.prepare(campaign)
    report = store.upsert_signups(
        campaign,
        [
            event(
                "Jane@Example.com",
                business_name="Jane's Café <&>",
                red_systems=1,
                orange_systems=2,
                yellow_systems=3,
                green_systems=4,
                gps_score=61,
                money_score=33,
                weakest_system_1="Bookings",
                weakest_system_2="Follow-up",
                revenue_leak_total=4200,
            )
        ],
    )
    assert report.created == ["jane@example.com"]
    frame = store.load_sequences(campaign)
    assert list(frame.columns) == sequence_columns(len(campaign.steps))
    row = frame.iloc[0]
    assert row["contact_key"] == "jane@example.com"
    assert row["business_name"] == "Jane's Café <&>"
    assert (row["red_systems"], row["orange_systems"], row["yellow_systems"]) == (1, 2, 3)
    assert (row["green_systems"], row["gps_score"], row["money_score"]) == (4, 61, 33)
    assert (row["weakest_system_1"], row["weakest_system_2"]) == ("Bookings", "Follow-up")
    assert row["revenue_leak_total"] == 4200
    assert row["segment"] == "URGENT"
    assert row["signup_at"] == T0
    assert not row["completed"] and not row["booked"] and not row["unsubscribed"]
    assert all(
        row[sent_column(n)] is None or str(row[sent_column(n)]) == "NaT" for n in range(1, 8)
    )


def check_redelivery_never_restarts_a_sequence(store: StateStore, campaign: Campaign) -> None:
    store.upsert_signups(campaign, [event("a@x.com")])
    store.record_sent(campaign, sent(campaign, "a@x.com", 1))
    again = store.upsert_signups(campaign, [event("a@x.com", at=T0 + timedelta(days=1))])
    assert again.unchanged == ["a@x.com"] and not again.created
    refreshed = store.upsert_signups(
        campaign, [event("a@x.com", at=T0 + timedelta(days=2), red_systems=3)]
    )
    assert refreshed.updated == ["a@x.com"]
    frame = store.load_sequences(campaign)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["signup_at"] == T0  # the clock is never restarted
    assert row["segment"] == "CRITICAL"  # the newer assessment is used
    assert row[sent_column(1)] == T0 + timedelta(seconds=5)


def check_record_sent_marks_the_step_and_completion(store: StateStore, campaign: Campaign) -> None:
    store.upsert_signups(campaign, [event("a@x.com"), event("b@x.com")])
    for step in range(1, campaign.last_step + 1):
        store.record_sent(campaign, sent(campaign, "a@x.com", step))
    store.record_sent(campaign, sent(campaign, "b@x.com", 1))
    store.record_sent(campaign, sent(campaign, "b@x.com", 1))  # a repeat is harmless
    frame = store.load_sequences(campaign).set_index("contact_key")
    assert frame.loc["a@x.com", "completed"]
    assert not frame.loc["b@x.com", "completed"]
    assert frame.loc["b@x.com", sent_column(1)] == T0 + timedelta(seconds=5)
    assert str(frame.loc["b@x.com", sent_column(2)]) == "NaT"


def check_exit_and_outcomes(store: StateStore, campaign: Campaign) -> None:
    store.upsert_signups(campaign, [event("a@x.com")])
    store.record_outcome(
        campaign,
        OutcomeRecord(
            message_id=f"{campaign.slug}/a@x.com/email-2",
            contact_key="a@x.com",
            kind="nurture",
            step_id="email-2",
            step_number=2,
            due_at=T0,
            status="skipped",
            reason="booked",
            at=T0,
        ),
    )
    store.record_exit(campaign, "a@x.com", "booked")
    row = store.load_sequences(campaign).iloc[0]
    assert row["completed"] and row["exit_reason"] == "booked"


def check_sent_log_by_due_day(store: StateStore, campaign: Campaign) -> None:
    store.upsert_signups(campaign, [event("a@x.com")])
    store.record_sent(campaign, sent(campaign, "a@x.com", 1, at=T0))
    store.record_sent(campaign, sent(campaign, "a@x.com", 2, at=T0 + timedelta(days=1)))
    log = store.sent_log(campaign, "2025-12-02", "2025-12-02")
    assert log["message_id"].tolist() == [f"{campaign.slug}/a@x.com/email-2"]
    assert len(store.sent_log(campaign, "2025-11-01", "2025-12-31")) == 2


CONTRACT = [
    check_signup_creates_a_sequence_with_every_field,
    check_redelivery_never_restarts_a_sequence,
    check_record_sent_marks_the_step_and_completion,
    check_exit_and_outcomes,
    check_sent_log_by_due_day,
]
