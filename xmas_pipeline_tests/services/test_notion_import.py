"""`notion import`: the first run against databases an earlier tool filled. Nobody it
emailed is emailed the same step again, no contact gets a second page, and the sync that
follows writes only what really differs (counted by the fake Notion)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from xmas_pipeline.adapters.sql.journal import SqlSendJournal
from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign, message_id
from xmas_pipeline.core.ports import ALREADY_SENT, OutgoingEmail, SentRecord
from xmas_pipeline.core.signup import SignupEvent
from xmas_pipeline.services.notion_import import ImportReport, import_from_notion
from xmas_pipeline.services.notion_sync import SyncReport
from xmas_pipeline.services.planning import due_plan
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import (
    Workspace,
    add_contact,
    busos_workspace,
    signup_event,
)
from xmas_pipeline_tests.support.notion_sync import sync_pass

NOW = datetime.now(UTC).replace(microsecond=0)  # Notion keeps milliseconds at most
START = NOW - timedelta(days=14)  # every nurture step of the campaign is due


@pytest.fixture
def fake() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        yield server


def page_of(campaign: Campaign, event: SignupEvent, steps: int = 0, **extra: Any) -> dict[str, Any]:
    """An Email Sequence page as the earlier tool left it: steps 1..`steps` sent."""
    s = event.signup
    values: dict[str, Any] = {
        "Name": event.contact_key,
        "Email": s.email,
        "First Name": s.first_name,
        "Business Name": s.business_name,
        "Assessment Score": s.assessment_score,
        "Red Systems": s.red_systems,
        "Orange Systems": s.orange_systems,
        "Yellow Systems": s.yellow_systems,
        "Green Systems": s.green_systems,
        "GPS Score": s.gps_score,
        "Money Score": s.money_score,
        "Weakest System 1": s.weakest_system_1,
        "Weakest System 2": s.weakest_system_2,
        "Revenue Leak Total": s.revenue_leak_total,
        "Segment": s.segment.value,
        "Campaign": campaign.notion_select,
        "Signup Date": event.received_at,
        "Assessment Completed": True,
        "Sequence Completed": steps == campaign.last_step,
    }
    for n in range(1, steps + 1):
        values[f"Email {n} Sent"] = (
            event.received_at + campaign.step(n).delay + timedelta(minutes=3)
        )
    return {**values, **extra}


def seed(
    fake: FakeNotion,
    ws: Workspace,
    campaign: Campaign,
    event: SignupEvent,
    steps: int = 0,
    **extra: Any,
) -> str:
    return fake.add_row(ws.sequences, page_of(campaign, event, steps, **extra))


def seed_crm(fake: FakeNotion, ws: Workspace, event: SignupEvent, **extra: Any) -> str:
    values = {
        "Assessment Score": event.signup.assessment_score,
        "Segment": event.signup.segment.value,
        "Christmas Campaign Status": "Nurture Sequence",
        **extra,
    }
    return add_contact(fake, ws, event.signup.email, **values)


def created_at(fake: FakeNotion, page_id: str, moment: datetime) -> None:
    """Set a page's creation time (the fake stamps every seeded page with the same minute)."""
    stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    fake.pages[page_id.replace("-", "")]["created_time"] = stamp


def run_import(store: SqlStore, ws: Workspace, campaign: Campaign) -> ImportReport:
    client = ws.client()
    try:
        return import_from_notion(store=store, notion=client, campaign=campaign)
    finally:
        client.close()


def run_sync(store: SqlStore, ws: Workspace, campaign: Campaign) -> SyncReport:
    return sync_pass(store, ws.client(), campaign)


def queue_depth(store: SqlStore, campaign: Campaign) -> int:
    return SqlNotionQueue(store.url, engine=store.engine).stats(campaign).depth


def sent_steps(store: SqlStore, campaign: Campaign) -> dict[str, set[int]]:
    log = store.sent_log(campaign, "2000-01-01", "2100-01-01")
    nurture = log.loc[log["kind"] == "nurture"]
    out: dict[str, set[int]] = {}
    for key, step in zip(nurture["contact_key"], nurture["step_number"], strict=True):
        out.setdefault(key, set()).add(int(step))
    return out


def planned(store: SqlStore, campaign: Campaign, now: datetime = NOW) -> dict[str, list[str]]:
    """What a send run would send now: contact -> message ids."""
    plan, _ = due_plan(store, campaign, now)
    sends = plan.loc[plan["action"] == "send"]
    out: dict[str, list[str]] = {}
    for key, mid in zip(sends["contact_key"], sends["message_id"], strict=True):
        out.setdefault(key, []).append(mid)
    return out


def pages_of_100(rows: int) -> int:
    return -(-rows // 100)


# The README's figure is for 2,000 contacts (the real-process tier runs it); the fast tier
# imports 400, still several pages of each database.
@pytest.mark.parametrize(
    "people", [pytest.param(400, id="400"), pytest.param(2000, id="2000", marks=pytest.mark.slow)]
)
def test_importing_existing_pages_creates_no_duplicates(
    unpaced_campaign: Campaign, fake: FakeNotion, tmp_path: Path, people: int
) -> None:
    campaign = unpaced_campaign
    store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
    ws = busos_workspace(fake)
    events = [signup_event(n, at=START + timedelta(minutes=n)) for n in range(people)]
    steps = {e.contact_key: n % (campaign.last_step + 1) for n, e in enumerate(events)}
    for event in events:
        seed(fake, ws, campaign, event, steps[event.contact_key])
        seed_crm(fake, ws, event)
    # 50 contacts the older tool created twice; half the copies show one more step.
    later = NOW + timedelta(hours=1)
    shown = dict(steps)
    for i, event in enumerate(events[::40]):
        key = event.contact_key
        more = steps[key] + (1 if i % 2 == 0 and steps[key] < campaign.last_step else 0)
        created_at(fake, seed(fake, ws, campaign, event, more), later)
        shown[key] = more
    extra_dates = sum(shown[k] > steps[k] for k in shown)
    fake.reset_counts()

    report = run_import(store, ws, campaign)

    copies = people // 40
    reads = pages_of_100(people + copies) + pages_of_100(people)
    assert report.pages == people + copies and report.contacts == people
    assert len(report.duplicate_pages) == copies and report.without_email == 0
    assert report.skipped == [] and report.notes == []
    assert report.created == people and report.crm_contacts == people
    assert report.emails == sum(shown.values())
    # 4 schema reads and the pages of 100 of both databases (21 + 20 for 2,000): no more.
    assert report.requests == fake.total == 4 + reads
    sequences = store.load_sequences(campaign)
    assert len(sequences) == people and sequences["contact_key"].is_unique
    by_key = sent_steps(store, campaign)
    assert {k: len(by_key.get(k, set())) for k in shown} == shown

    # The sync that follows: no page created, only the kept pages a copy had more dates for.
    fake.reset_counts()
    sync = run_sync(store, ws, campaign)
    assert not sync.failed and not sync.stopped
    assert sync.created == 0 and sync.found == 0 and fake.counts["POST /v1/pages"] == 0
    assert sync.contact_lookups == 0 and sync.contact_updates == 0
    assert sync.sequence_updates == extra_dates == fake.total
    assert queue_depth(store, campaign) == 0
    assert len(fake.rows(ws.sequences)) == people + copies  # the copies are left alone

    # A send run plans each contact's next step: nothing the old tool sent.
    plan = planned(store, campaign)
    expected = {
        k: [message_id(campaign.slug, k, f"email-{n + 1}")]
        for k, n in shown.items()
        if n < campaign.last_step
    }
    assert plan == expected

    # Run twice: nothing changes, nothing is queued.
    fake.reset_counts()
    again = run_import(store, ws, campaign)
    assert not again.changed, again.summary()
    assert again.requests == reads  # the schema comes from the store now
    assert queue_depth(store, campaign) == 0
    assert sent_steps(store, campaign) == by_key


def test_a_contact_emailed_steps_1_to_3_gets_email_4_next(
    sql_store: SqlStore, unpaced_campaign: Campaign, fake: FakeNotion
) -> None:
    campaign = unpaced_campaign
    ws = busos_workspace(fake)
    alice = signup_event(1, email="alice@example.com", at=NOW - timedelta(days=8))
    seed(fake, ws, campaign, alice, steps=3)
    seed_crm(fake, ws, alice)

    report = run_import(sql_store, ws, campaign)

    assert report.created == 1 and report.emails == 3
    log = sql_store.sent_log(campaign, "2000-01-01", "2100-01-01")
    ids = [message_id(campaign.slug, "alice@example.com", f"email-{n}") for n in (1, 2, 3)]
    assert sorted(log["message_id"]) == ids
    assert list(log["idempotency_key"]) == list(log["message_id"])
    assert set(log["provider_id"]) == {"imported"}
    seq = sql_store.load_sequences(campaign).iloc[0]
    assert seq["signup_at"] == alice.received_at  # the page's signup date is the clock
    assert planned(sql_store, campaign) == {
        "alice@example.com": [message_id(campaign.slug, "alice@example.com", "email-4")]
    }
    # The send journal refuses an imported step too, whoever plans it.
    email = OutgoingEmail(ids[0], ids[0], "alice@example.com", "x@example.com", "s", "h", "t")
    claim = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder="r").begin(
        campaign, [({"message_id": ids[0]}, email)]
    )
    assert claim.entry is None and claim.left_out[0][2] == ALREADY_SENT


def test_running_twice_changes_nothing_and_bad_pages_are_reported(
    sql_store: SqlStore, unpaced_campaign: Campaign, fake: FakeNotion
) -> None:
    campaign = unpaced_campaign
    ws = busos_workspace(fake)
    people = [signup_event(n, at=START + timedelta(hours=n)) for n in range(6)]
    for n, event in enumerate(people):
        seed(fake, ws, campaign, event, steps=n)
        seed_crm(fake, ws, event)
    # Two copies of one contact, typed in another case: one contact, the oldest page kept.
    first = people[2]
    copy = seed(fake, ws, campaign, first, steps=4, Email=first.signup.email.upper(), Name="copy")
    created_at(fake, copy, NOW + timedelta(hours=1))
    # No Signup Date: the sequence starts when the page was made.
    undated = signup_event(20, email="undated@example.com")
    page = seed(fake, ws, campaign, undated, **{"Signup Date": None})
    created_at(fake, page, START)
    # Values that are not a signup: reported, not imported.
    bad = signup_event(21, email="bad@example.com")
    seed(fake, ws, campaign, bad, **{"Assessment Score": 150})
    fake.add_row(ws.sequences, {"Name": "no address", "Campaign": campaign.notion_select})
    # Email 2 without email 1: imported as shown, and said.
    gappy = signup_event(22, email="gappy@example.com", at=START)
    seed(fake, ws, campaign, gappy, **{"Email 2 Sent": START + timedelta(days=1)})
    # Another campaign's page is not this import's.
    other = signup_event(23, email="other@example.com", at=START)
    seed(fake, ws, campaign, other, Campaign="BusinessX Canada")

    report = run_import(sql_store, ws, campaign)

    assert report.pages == 11 and report.without_email == 1
    assert report.contacts == 9 and report.duplicate_pages == [copy]
    assert [k for k, _ in report.skipped] == ["bad@example.com"]
    assert "assessment_score" in report.skipped[0][1]
    assert report.notes == [
        ("gappy@example.com", "email 1 not shown as sent before email 2: they go next")
    ]
    assert report.created == 8
    sequences = sql_store.load_sequences(campaign).set_index("contact_key")
    assert abs(sequences.loc["undated@example.com", "signup_at"] - START) < timedelta(seconds=1)
    assert sent_steps(sql_store, campaign)[first.contact_key] == {1, 2, 3, 4}

    sync = run_sync(sql_store, ws, campaign)
    assert sync.created == 0 and not sync.failed
    # The kept page gets the copy's 4th date; the undated one its start; nothing else.
    assert sync.sequence_updates == 2

    fake.reset_counts()
    again = run_import(sql_store, ws, campaign)
    assert not again.changed, again.summary()
    assert again.skipped == report.skipped
    assert queue_depth(sql_store, campaign) == 0
    assert fake.counts["POST /v1/pages"] == 0 and fake.counts["PATCH /v1/pages/{id}"] == 0
    assert run_sync(sql_store, ws, campaign).requests == 0


def test_the_store_wins_for_a_contact_it_already_has(
    sql_store: SqlStore, unpaced_campaign: Campaign, fake: FakeNotion
) -> None:
    campaign = unpaced_campaign
    ws = busos_workspace(fake)
    # Bob signed up through the pipeline, which sent him steps 1 and 2.
    bob = signup_event(3, email="bob@example.com", at=NOW - timedelta(days=6), first_name="Bob")
    sql_store.upsert_signups(campaign, [bob])
    for n in (1, 2):
        sent = bob.received_at + campaign.step(n).delay
        mid = message_id(campaign.slug, bob.contact_key, f"email-{n}")
        record = SentRecord(mid, mid, bob.contact_key, "nurture", f"email-{n}", n, sent, sent, "re")
        sql_store.record_sent(campaign, record)
    # His page (an older signup) shows steps 1 and 3 and another first name.
    older = signup_event(3, email="bob@example.com", at=NOW - timedelta(days=9), first_name="Rob")
    page = seed(fake, ws, campaign, older, steps=1, **{"Email 3 Sent": NOW - timedelta(days=1)})

    report = run_import(sql_store, ws, campaign)

    assert report.kept == 1 and report.created == 0 and report.emails == 1
    seq = sql_store.load_sequences(campaign).iloc[0]
    assert seq["signup_at"] == bob.received_at and seq["first_name"] == "Bob"
    assert sent_steps(sql_store, campaign) == {"bob@example.com": {1, 2, 3}}
    assert planned(sql_store, campaign) == {
        "bob@example.com": [message_id(campaign.slug, "bob@example.com", "email-4")]
    }

    fake.reset_counts()
    sync = run_sync(sql_store, ws, campaign)
    assert sync.created == 0 and sync.sequence_updates == 1 and fake.total == 1
    row = next(r for r in fake.rows(ws.sequences) if r["_id"] == page)
    assert row["First Name"] == "Bob" and row["Email 2 Sent"] and row["Email 3 Sent"]


def test_exits_flags_and_reminders(
    sql_store: SqlStore, unpaced_campaign: Campaign, fake: FakeNotion
) -> None:
    campaign = unpaced_campaign
    ws = busos_workspace(fake)
    people = {
        name: signup_event(n, email=f"{name}@example.com", at=START)
        for n, name in enumerate(["carol", "dave", "erin", "frank", "gina", "hank", "ivy"])
    }
    meeting = (NOW + timedelta(hours=48)).replace(microsecond=0)
    extras: dict[str, dict[str, Any]] = {
        "carol": {"Unsubscribed": True},
        "dave": {"Paused": True},
        "erin": {"Delivery Status": "bounced"},
        "frank": {"Sequence Completed": True, "Exit Reason": "booked"},
        "gina": {
            "Booking UID": "bk-gina",
            "Meeting Time": meeting,
            "Reminder 1 Sent": NOW - timedelta(hours=20),
        },
        "hank": {"Reminder 1 Sent": NOW - timedelta(hours=20)},
        "ivy": {},
    }
    for name, event in people.items():
        seed(fake, ws, campaign, event, steps=2, **extras[name])
    seed_crm(fake, ws, people["ivy"], **{"Booking Status": "Booked"})
    # The store already knows Gina's booking (Cal.com told it).
    booked_at = NOW - timedelta(hours=48)
    sql_store.upsert_booking_events(
        campaign,
        [
            BookingEvent(
                uid="bk-gina",
                kind="created",
                contact_key="gina@example.com",
                email="gina@example.com",
                name="Gina",
                start=meeting,
                end=meeting + timedelta(minutes=30),
                meeting_url="https://cal.example.com/m/1",
                event_at=booked_at,
                booked_at=booked_at,
            )
        ],
    )
    reminder_1 = message_id(campaign.slug, "gina@example.com", "reminder-1", "bk-gina")
    assert reminder_1 in planned(sql_store, campaign)["gina@example.com"]

    report = run_import(sql_store, ws, campaign)

    # Ivy's booking comes from the CRM; Gina's sequence starts booked, since the store knew
    # her booking before the import created it.
    assert report.exits == 1 and report.flags == 3 and report.booked == 1
    assert report.reminders == 1
    assert [k for k, _ in report.notes] == ["hank@example.com"]
    assert "Booking UID" in report.notes[0][1]
    seqs = sql_store.load_sequences(campaign).set_index("contact_key")
    assert seqs.loc["carol@example.com", "unsubscribed"]
    assert seqs.loc["dave@example.com", "paused"]
    assert seqs.loc["erin@example.com", "delivery_state"] == "bounced"
    assert seqs.loc["frank@example.com", "completed"]
    assert seqs.loc["frank@example.com", "exit_reason"] == "booked"
    assert seqs.loc["gina@example.com", "booked"] and seqs.loc["ivy@example.com", "booked"]
    log = sql_store.load_reminder_log(campaign)
    assert list(zip(log["booking_uid"], log["step_number"], log["status"], strict=True)) == [
        ("bk-gina", 1, "sent")
    ]
    # Only Hank gets nurture email 3; nobody gets Gina's first reminder again.
    assert planned(sql_store, campaign) == {
        "hank@example.com": [message_id(campaign.slug, "hank@example.com", "email-3")]
    }

    fake.reset_counts()
    sync = run_sync(sql_store, ws, campaign)
    assert sync.created == 0 and not sync.failed
    # Hank's reminder date needs a booking the store does not know: the sync clears it.
    assert fake.total == sync.sequence_updates <= 1
    assert not run_import(sql_store, ws, campaign).changed


def test_pages_of_the_original_tool_cost_at_most_one_update_each(
    unpaced_campaign: Campaign, fake: FakeNotion, tmp_path: Path
) -> None:
    """The original server filled only its own columns: the ones `notion setup` added are
    empty, so the first sync may write the store's values there, once per page."""
    campaign = unpaced_campaign
    store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
    ws = busos_workspace(fake)
    added = ("GPS Score", "Money Score", "Revenue Leak Total", "Weakest System 1")
    added += ("Weakest System 2",)
    for n in range(20):
        values = page_of(campaign, signup_event(n, at=START), steps=n % 4)
        fake.add_row(ws.sequences, {k: v for k, v in values.items() if k not in added})

    report = run_import(store, ws, campaign)
    assert report.created == 20 and not report.skipped

    fake.reset_counts()
    sync = run_sync(store, ws, campaign)
    assert sync.created == 0 and fake.counts["POST /v1/pages"] == 0
    assert fake.total == sync.sequence_updates <= 20
    assert run_sync(store, ws, campaign).requests == 0
