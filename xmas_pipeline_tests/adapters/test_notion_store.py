"""The Notion store against the fake Notion API, through the real notion-client code paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from xmas_pipeline.adapters.notion.schema import NotionSchema, SequenceProperties
from xmas_pipeline.adapters.notion.setup import setup_notion
from xmas_pipeline.adapters.notion.store import NotionStore
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import OutcomeRecord, SentRecord, StateStore, StoreSchemaError
from xmas_pipeline.core.sequence_frame import normalise_sequences, sent_column
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import (
    BASE_TIME,
    Workspace,
    add_contact,
    busos_workspace,
    requests_during,
    signup_event,
)
from xmas_pipeline_tests.support import store_contract


@pytest.fixture
def fake() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        yield server


@pytest.fixture
def ws(fake: FakeNotion) -> Workspace:
    return busos_workspace(fake)


@pytest.fixture
def store(ws: Workspace) -> Iterator[NotionStore]:
    made = ws.store()
    yield made
    made.close()


def sent(
    campaign: Campaign, key: str, step: int, at: datetime = BASE_TIME, **extra: object
) -> SentRecord:
    values: dict[str, object] = {
        "message_id": f"{campaign.slug}/{key}/email-{step}",
        "idempotency_key": f"{campaign.slug}/{key}/email-{step}",
        "contact_key": key,
        "kind": "nurture",
        "step_id": f"email-{step}",
        "step_number": step,
        "due_at": at,
        "sent_at": at + timedelta(seconds=3),
        "provider_id": f"re_{step}",
        "segment": "URGENT",
        "completes_sequence": step == campaign.last_step,
    }
    values.update(extra)
    return SentRecord(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("check", store_contract.CONTRACT, ids=lambda c: c.__name__)
def test_store_contract(
    check: Callable[[StateStore, Campaign], None], store: NotionStore, campaign: Campaign
) -> None:
    check(store, campaign)


def test_missing_properties_are_named_before_anything_is_written(
    fake: FakeNotion, campaign: Campaign
) -> None:
    ws = busos_workspace(fake, with_setup=False)
    fake.add_database("unused", {"x": "checkbox"})
    store = ws.store()
    with pytest.raises(StoreSchemaError) as caught:
        store.upsert_signups(campaign, [signup_event(1)])
    missing = caught.value.missing["Email Sequence DB"]
    assert {"Meeting Time", "Booking UID", "Paused", "GPS Score", "Reminder 3 Sent"} <= set(missing)
    assert "Email 1 Sent" not in missing and "Contacts DB" not in caught.value.missing
    assert "xmas-pipeline notion setup" in str(caught.value)
    writes = sum(n for route, n in fake.counts.items() if not route.startswith("GET"))
    assert writes == 0 and fake.rows(ws.sequences) == []


def test_wrong_property_types_are_reported(fake: FakeNotion, campaign: Campaign) -> None:
    ws = busos_workspace(fake)
    fake.edit_properties(ws.contacts, {"Assessment Score": {"rich_text": {}}})
    with pytest.raises(StoreSchemaError) as caught:
        ws.store().prepare(campaign)
    assert caught.value.missing == {
        "Contacts DB": ["Assessment Score (is rich_text, needs number)"]
    }


def test_setup_adds_what_is_missing_and_reports_it(fake: FakeNotion, campaign: Campaign) -> None:
    ws = busos_workspace(fake, with_setup=False)
    store = ws.store()
    report = setup_notion(store, campaign)
    added = report.added["Email Sequence DB"]
    assert "Meeting Time" in added and "Delivery Status" in added and "Exit Reason" in added
    assert report.added["Contacts DB"] == []
    assert report.changed and "Email Sequence DB: added" in report.summary()
    types = fake.property_types(ws.sequences)
    assert types["Meeting Time"] == "date" and types["Paused"] == "checkbox"
    assert types["Delivery Status"] == "select" and types["Last Error"] == "rich_text"
    store.prepare(campaign)  # now complete
    again = setup_notion(ws.store(), campaign)
    assert not again.changed
    assert again.summary().splitlines()[0] == "Email Sequence DB: complete"


def test_signup_updates_the_contact_and_creates_a_full_sequence(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    add_contact(fake, ws, "ada@example.com", **{"Booking Status": "Not Booked"})
    event = signup_event(7, email="Ada@Example.com", red_systems=2, assessment_score=31)
    report = store.upsert_signups(campaign, [event])
    assert report.created == ["ada@example.com"] and report.contact_missing == []

    [contact] = fake.rows(ws.contacts)
    assert contact["Assessment Score"] == 31
    assert contact["Segment"] == "CRITICAL"
    assert contact["Christmas Campaign Status"] == "Nurture Sequence"
    assert contact["Booking Status"] == "Not Booked"

    [page] = fake.rows(ws.sequences)
    assert page["Email"] == "ada@example.com" and page["Name"] == "ada@example.com"
    assert page["First Name"] == "Person7" and page["Business Name"] == "Business 7"
    assert page["Assessment Score"] == 31 and page["Red Systems"] == 2
    assert page["Orange Systems"] == 2 and page["Yellow Systems"] == 1
    assert page["Green Systems"] == 2 and page["GPS Score"] == 55 and page["Money Score"] == 35
    assert page["Weakest System 1"] == "Bookings" and page["Weakest System 2"] == "Follow-up"
    assert page["Revenue Leak Total"] == 4207
    assert page["Segment"] == "CRITICAL" and page["Campaign"] == "Christmas 2025"
    assert datetime.fromisoformat(page["Signup Date"]) == event.received_at
    assert page["Assessment Completed"] is True and page["Sequence Completed"] is False
    assert all(page[f"Email {n} Sent"] is None for n in range(1, 8))


def test_a_signup_without_a_contact_still_gets_its_sequence(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    report = store.upsert_signups(campaign, [signup_event(1)])
    assert report.created == ["person1@example.com"]
    assert report.contact_missing == ["person1@example.com"]
    assert len(fake.rows(ws.sequences)) == 1 and fake.rows(ws.contacts) == []


def test_a_booked_contact_keeps_pre_call_prep(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    add_contact(fake, ws, "b@x.com", **{"Christmas Campaign Status": "Pre-Call Prep"})
    store.upsert_signups(campaign, [signup_event(2, email="b@x.com")])
    [contact] = fake.rows(ws.contacts)
    assert contact["Christmas Campaign Status"] == "Pre-Call Prep"
    assert contact["Assessment Score"] == 42


def test_redelivery_creates_nothing_new(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    add_contact(fake, ws, "person1@example.com")
    events = [signup_event(n) for n in range(1, 6)]
    ws.store().upsert_signups(campaign, events)
    pages_before = fake.counts["POST /v1/pages"]
    # A new run (a fresh store) gets every signup again, plus one duplicate inside the batch.
    fresh = ws.store()
    again = [*events, signup_event(3, at=BASE_TIME + timedelta(days=1))]
    report = fresh.upsert_signups(campaign, again)
    assert report.created == [] and len(report.unchanged) == 6
    assert fake.counts["POST /v1/pages"] == pages_before
    assert fake.counts["PATCH /v1/pages/{id}"] == 1  # only the first run's contact update
    assert len(fake.rows(ws.sequences)) == 5


def test_load_sequences_gives_the_core_frame(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    store.upsert_signups(campaign, [signup_event(n) for n in range(3)])
    store.record_sent(campaign, sent(campaign, "person1@example.com", 1))
    store.set_flags(campaign, "person2@example.com", paused=True, delivery_state="bounced")
    store.set_booking(campaign, "person0@example.com", "bk_1", BASE_TIME + timedelta(days=3))
    # A row made by hand in Notion for another campaign is not part of this one.
    fake.add_row(ws.sequences, {"Email": "other@x.com", "Campaign": "BusinessX Canada"})
    frame = ws.store().load_sequences(campaign)
    steps = len(campaign.steps)
    pd.testing.assert_frame_equal(frame, normalise_sequences(frame, steps))
    assert str(frame["signup_at"].dtype).endswith(", UTC]")
    assert frame["assessment_score"].dtype == "int64" and frame["paused"].dtype == bool
    rows = frame.set_index("contact_key")
    assert sorted(rows.index) == [f"person{n}@example.com" for n in range(3)]
    assert rows.loc["person1@example.com", sent_column(1)] == BASE_TIME + timedelta(seconds=3)
    assert pd.isna(rows.loc["person1@example.com", sent_column(2)])
    assert rows.loc["person2@example.com", "paused"]
    assert rows.loc["person2@example.com", "delivery_state"] == "bounced"
    assert rows.loc["person0@example.com", "booked"]
    assert not rows.loc["person1@example.com", "booked"]
    assert rows.loc["person1@example.com", "signup_at"] == BASE_TIME + timedelta(minutes=1)


def test_an_empty_campaign_loads_an_empty_frame(store: NotionStore, campaign: Campaign) -> None:
    frame = store.load_sequences(campaign)
    assert frame.empty
    pd.testing.assert_frame_equal(frame, normalise_sequences(frame, len(campaign.steps)))


def test_record_sent_is_one_update_and_completes_after_the_last_step(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    ws.store().upsert_signups(campaign, [signup_event(1)])
    store = ws.store()
    store.load_sequences(campaign)
    key = "person1@example.com"
    for step in range(1, campaign.last_step + 1):
        cost = requests_during(
            fake, lambda s=step: store.record_sent(campaign, sent(campaign, key, s))
        )
        assert cost == 1
    [page] = fake.rows(ws.sequences)
    assert page["Sequence Completed"] is True
    assert all(page[f"Email {n} Sent"] for n in range(1, 8))
    assert store.api.calls["pages.update"] == 7


def test_record_sent_without_a_load_reads_all_sequences_once(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    ws.store().upsert_signups(campaign, [signup_event(n) for n in range(30)])
    store = ws.store()
    store.prepare(campaign)
    fake.reset_counts()
    for n in range(30):
        store.record_sent(campaign, sent(campaign, f"person{n}@example.com", 1))
    assert fake.counts == {"POST /v1/data_sources/{id}/query": 1, "PATCH /v1/pages/{id}": 30}


def test_preload_fetches_only_the_named_contacts(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    ws.store().upsert_signups(campaign, [signup_event(n) for n in range(30)])
    store = ws.store()
    store.prepare(campaign)
    fake.reset_counts()
    store.preload(campaign, ["person3@example.com", "person4@example.com"])
    store.record_sent(campaign, sent(campaign, "person3@example.com", 1))
    store.record_sent(campaign, sent(campaign, "person4@example.com", 1))
    assert fake.counts == {"POST /v1/data_sources/{id}/query": 1, "PATCH /v1/pages/{id}": 2}


def test_long_rich_text_is_split_and_joined(
    fake: FakeNotion, ws: Workspace, store: NotionStore, campaign: Campaign
) -> None:
    store.upsert_signups(campaign, [signup_event(1)])
    reason = "".join(f"line {n}: the provider said no 😀\n" for n in range(400))
    assert len(reason) > 2 * 2000
    outcome = OutcomeRecord(
        message_id=f"{campaign.slug}/person1@example.com/email-1",
        contact_key="person1@example.com",
        kind="nurture",
        step_id="email-1",
        step_number=1,
        due_at=BASE_TIME,
        status="failed",
        reason=reason,
        at=BASE_TIME,
    )
    store.record_outcome(campaign, outcome)
    [page] = fake.rows(ws.sequences)
    raw = fake.raw_page(page["_id"])["properties"]["Last Error"]["rich_text"]
    assert len(raw) > 2
    assert page["Last Error"] == f"email-1: {reason}"
    # The same failure again writes nothing; a send afterwards clears it in the same update.
    assert requests_during(fake, lambda: store.record_outcome(campaign, outcome)) == 0
    store.record_sent(campaign, sent(campaign, "person1@example.com", 1))
    assert fake.rows(ws.sequences)[0]["Last Error"] == ""


def test_skipped_outcomes_cost_no_requests(
    fake: FakeNotion, store: NotionStore, campaign: Campaign
) -> None:
    store.upsert_signups(campaign, [signup_event(1)])
    skipped = OutcomeRecord(
        message_id="m",
        contact_key="person1@example.com",
        kind="nurture",
        step_id="email-2",
        step_number=2,
        due_at=BASE_TIME,
        status="skipped",
        reason="paused",
        at=BASE_TIME,
    )
    assert requests_during(fake, lambda: store.record_outcome(campaign, skipped)) == 0


def test_more_than_100_sequences_are_paged(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    ws.store().upsert_signups(campaign, [signup_event(n) for n in range(250)])
    store = ws.store()
    store.prepare(campaign)
    fake.reset_counts()
    frame = store.load_sequences(campaign)
    assert len(frame) == 250 and frame["contact_key"].is_unique
    assert fake.counts == {"POST /v1/data_sources/{id}/query": 3}


def test_property_names_are_configurable(fake: FakeNotion, campaign: Campaign) -> None:
    renamed = SequenceProperties(email="E-mail", email_sent="Mail {n} gesendet", paused="Pause")
    schema = NotionSchema(sequences=renamed)
    ws = busos_workspace(fake)
    changes: dict[str, object] = {"Email": {"name": "E-mail"}, "Paused": {"name": "Pause"}}
    changes.update({f"Email {n} Sent": {"name": f"Mail {n} gesendet"} for n in range(1, 8)})
    fake.edit_properties(ws.sequences, changes)
    with pytest.raises(StoreSchemaError):
        ws.store().prepare(campaign)  # the default names are gone
    store = ws.store(schema=schema)
    store.upsert_signups(campaign, [signup_event(1)])
    store.record_sent(campaign, sent(campaign, "person1@example.com", 1))
    [page] = fake.rows(ws.sequences)
    assert page["E-mail"] == "person1@example.com" and page["Mail 1 gesendet"]
    assert store.load_sequences(campaign)["contact_key"].tolist() == ["person1@example.com"]


def test_duplicate_pages_fold_into_one_and_keep_every_sent_step(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    first = {"Email": "d@x.com", "Campaign": "Christmas 2025", "Signup Date": "2025-11-03"}
    fake.add_row(ws.sequences, {**first, "Email 1 Sent": "2025-11-03T09:00:00.000+00:00"})
    fake.add_row(ws.sequences, {**first, "Email 2 Sent": "2025-11-04T09:00:00.000+00:00"})
    store = ws.store()
    frame = store.load_sequences(campaign)
    assert len(frame) == 1 and store.duplicates == 1
    row = frame.iloc[0]
    assert not pd.isna(row[sent_column(1)]) and not pd.isna(row[sent_column(2)])


def test_exit_stops_the_sequence(fake: FakeNotion, ws: Workspace, campaign: Campaign) -> None:
    ws.store().upsert_signups(campaign, [signup_event(1)])
    store = ws.store()
    store.record_exit(campaign, "person1@example.com", "unsubscribed")
    store.record_exit(campaign, "nobody@example.com", "bounced")  # no page: nothing to do
    [page] = fake.rows(ws.sequences)
    assert page["Exit Reason"] == "unsubscribed" and page["Sequence Completed"] is True
    assert (
        requests_during(
            fake, lambda: store.record_exit(campaign, "person1@example.com", "unsubscribed")
        )
        == 0
    )


def test_sent_log_with_the_analytics_db(fake: FakeNotion, campaign: Campaign) -> None:
    ws = busos_workspace(fake, analytics=True)
    store = ws.store(analytics_db_id=ws.analytics)
    store.upsert_signups(campaign, [signup_event(1, at=BASE_TIME)])
    key = "person1@example.com"
    store.record_sent(campaign, sent(campaign, key, 1, provider_id="re_abc"))
    due2 = BASE_TIME + timedelta(days=1)
    store.record_sent(campaign, sent(campaign, key, 2, at=due2, provider_id="re_def"))
    failed = OutcomeRecord(
        message_id=f"{campaign.slug}/{key}/email-3",
        contact_key=key,
        kind="nurture",
        step_id="email-3",
        step_number=3,
        due_at=BASE_TIME + timedelta(days=3),
        status="failed",
        reason="422 invalid address",
        at=BASE_TIME + timedelta(days=3),
    )
    store.record_outcome(campaign, failed)
    entries = sorted(fake.rows(ws.analytics), key=lambda r: r["At"])
    assert [(e["Step"], e["Status"], e["Resend ID"]) for e in entries] == [
        ("email-1", "sent", "re_abc"),
        ("email-2", "sent", "re_def"),
        ("email-3", "failed", ""),
    ]
    assert entries[2]["Error"] == "422 invalid address" and entries[0]["Email"] == key

    log = ws.store(analytics_db_id=ws.analytics).sent_log(campaign, "2025-11-01", "2025-11-30")
    assert log["step_id"].tolist() == ["email-1", "email-2"]
    assert log["provider_id"].tolist() == ["re_abc", "re_def"]
    assert log["due_at"].tolist() == [BASE_TIME, due2]
    assert str(log["sent_at"].dtype).endswith(", UTC]")
    only_day_two = store.sent_log(campaign, "2025-11-04", "2025-11-04")
    assert only_day_two["message_id"].tolist() == [f"{campaign.slug}/{key}/email-2"]


def test_sent_log_lists_reminders_with_their_booking(
    store: NotionStore, campaign: Campaign
) -> None:
    key = "person1@example.com"
    store.upsert_signups(campaign, [signup_event(1)])
    meeting = datetime(2025, 11, 20, 15, 0, tzinfo=UTC)
    store.set_booking(campaign, key, "bk_9", meeting)
    store.record_sent(
        campaign,
        SentRecord(
            message_id=f"{campaign.slug}/{key}/reminder-2/bk_9",
            idempotency_key=f"{campaign.slug}/{key}/reminder-2/bk_9",
            contact_key=key,
            kind="reminder",
            step_id="reminder-2",
            step_number=2,
            due_at=meeting - timedelta(hours=24),
            sent_at=meeting - timedelta(hours=24),
            provider_id="re_r",
            booking_uid="bk_9",
        ),
    )
    log = store.sent_log(campaign, "2025-11-19", "2025-11-19")
    assert log["message_id"].tolist() == [f"{campaign.slug}/{key}/reminder-2/bk_9"]
    assert log["kind"].tolist() == ["reminder"] and log["booking_uid"].tolist() == ["bk_9"]


def test_the_token_is_not_in_errors(fake: FakeNotion, campaign: Campaign, tmp_path: Path) -> None:
    ws = busos_workspace(fake)
    store = NotionStore(
        token="secret_wrong_token_123",
        contacts_db_id=ws.contacts,
        sequences_db_id=ws.sequences,
        base_url=fake.base_url,
        rate_per_s=float("inf"),
        ledger=SqlStore(f"sqlite:///{tmp_path / 'ledger.db'}"),
    )
    with pytest.raises(RuntimeError) as caught:
        store.prepare(campaign)
    assert "unauthorized" in str(caught.value) or "401" in str(caught.value)
    assert "secret_wrong_token_123" not in str(caught.value)
