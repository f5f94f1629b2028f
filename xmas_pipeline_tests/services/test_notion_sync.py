"""The Notion sync against the fake Notion API (its validation, 404s and timeouts): what
each page gets, what each pass costs in requests, and what happens when Notion refuses or
loses a write."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.adapters.sql.tables import notion_queue
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import ContactPageRecord, OutcomeRecord, SentRecord
from xmas_pipeline.services.notion_sync import (
    CONTACTS_COMPLETE,
    SEQUENCES_COMPLETE,
    SyncReport,
    sync_to_notion,
)
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import (
    Workspace,
    add_contact,
    busos_workspace,
    signup_event,
)

NOW = datetime(2025, 11, 3, 10, 0, tzinfo=UTC)


@dataclass
class Rig:
    store: SqlStore
    fake: FakeNotion
    ws: Workspace
    campaign: Campaign

    @property
    def queue(self) -> SqlNotionQueue:
        return SqlNotionQueue(self.store.url, engine=self.store.engine)

    @property
    def pages(self) -> SqlNotionPages:
        return SqlNotionPages(self.store.url, engine=self.store.engine)

    def sync(self, client: NotionSync | None = None) -> SyncReport:
        """One pass, as one run does it: a fresh client (nothing cached in memory)."""
        notion = client or self.ws.client(analytics_db_id=self.ws.analytics)
        try:
            return sync_to_notion(
                snapshots=self.store.contact_snapshots,
                queue=self.queue,
                pages=self.pages,
                notion=notion,
                campaign=self.campaign,
                holder="run-test",
            )
        finally:
            if client is None:
                notion.close()

    def counted(self) -> tuple[SyncReport, int]:
        before = self.fake.total
        report = self.sync()
        return report, self.fake.total - before

    def sent(self, n: int, step: int, at: datetime = NOW) -> None:
        key = f"person{n}@example.com"
        mid = f"{self.campaign.slug}/{key}/email-{step}"
        self.store.record_sent(
            self.campaign,
            SentRecord(mid, mid, key, "nurture", f"email-{step}", step, at, at, f"re_{n}_{step}"),
        )

    def sequence_rows(self) -> dict[str, dict[str, object]]:
        return {str(r["Email"]): r for r in self.fake.rows(self.ws.sequences)}


@pytest.fixture
def rig(tmp_path: Path, campaign: Campaign) -> Iterator[Rig]:
    with FakeNotion() as fake:
        store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
        # As after `notion import` on empty databases: no page exists that the store lacks.
        SqlNotionPages(store.url, engine=store.engine).set_state(SEQUENCES_COMPLETE, "yes")
        yield Rig(store, fake, busos_workspace(fake), campaign)


def test_a_new_contact_gets_one_page_with_everything_known(rig: Rig) -> None:
    add_contact(rig.fake, rig.ws, "person1@example.com")
    rig.store.upsert_signups(rig.campaign, [signup_event(1)])
    rig.sent(1, 1)  # the welcome went before the sync ran
    report, requests = rig.counted()
    # 4 schema lookups (2 per database, once), 1 CRM lookup, 1 create, 1 contact update.
    assert requests == 7 and report.requests == 7
    assert (report.created, report.sequence_updates, report.contact_updates) == (1, 0, 1)
    row = rig.sequence_rows()["person1@example.com"]
    assert row["First Name"] == "Person1" and row["Segment"] == "URGENT"
    assert row["Campaign"] == "Christmas 2025" and row["Assessment Completed"] is True
    assert str(row["Email 1 Sent"]).startswith("2025-11-03T10:00:00")
    [contact] = rig.fake.rows(rig.ws.contacts)
    assert contact["Christmas Campaign Status"] == "Nurture Sequence"
    assert contact["Segment"] == "URGENT" and contact["Assessment Score"] == 41
    assert rig.queue.stats(rig.campaign).depth == 0


def test_nothing_queued_costs_nothing_and_each_email_one_request(rig: Rig) -> None:
    rig.store.upsert_signups(rig.campaign, [signup_event(n) for n in range(1, 4)])
    rig.sync()
    report, requests = rig.counted()
    assert requests == 0 and report.contacts == 0  # the schema came from the store
    rig.sent(1, 1)
    report, requests = rig.counted()
    assert requests == 1 and report.sequence_updates == 1
    # Three changes to one contact between two passes: one write.
    rig.sent(2, 1)
    rig.sent(2, 2, NOW + timedelta(days=1))
    rig.store.set_contact_flags(rig.campaign, "person2@example.com", paused=True)
    report, requests = rig.counted()
    assert requests == 1 and report.contacts == 1
    row = rig.sequence_rows()["person2@example.com"]
    assert row["Email 1 Sent"] and row["Email 2 Sent"] and row["Paused"] is True


def test_the_crm_is_looked_up_once_per_contact_and_never_once_read_whole(rig: Rig) -> None:
    rig.store.upsert_signups(rig.campaign, [signup_event(n) for n in range(1, 151)])
    report, _ = rig.counted()
    assert (
        report.contact_lookups == 150 and rig.fake.counts["POST /v1/data_sources/{id}/query"] == 2
    )
    rig.sent(1, 1)
    report, requests = rig.counted()
    assert report.contact_lookups == 0 and requests == 1  # known absent: not asked again
    rig.pages.set_state(CONTACTS_COMPLETE, "yes")
    rig.store.upsert_signups(rig.campaign, [signup_event(200)])
    report, requests = rig.counted()
    assert report.contact_lookups == 0 and requests == 1  # the create alone


def _booking(kind: str, uid: str, start: datetime, **extra: object) -> BookingEvent:
    return BookingEvent.model_validate(
        {
            "uid": uid,
            "kind": kind,
            "contact_key": "person1@example.com",
            "email": "person1@example.com",
            "name": "Person One",
            "start": start,
            "end": start + timedelta(minutes=30),
            "event_at": NOW + timedelta(minutes=len(uid) + (kind == "cancelled")),
            "source": "webhook",
            **extra,
        }
    )


def test_bookings_reach_both_pages_and_an_after_call_status_is_left_alone(rig: Rig) -> None:
    add_contact(rig.fake, rig.ws, "person1@example.com")
    rig.store.upsert_signups(rig.campaign, [signup_event(1)])
    call = NOW + timedelta(days=3)
    rig.store.upsert_booking_events(rig.campaign, [_booking("created", "bk-1", call)])
    rig.sync()
    row = rig.sequence_rows()["person1@example.com"]
    assert row["Booking UID"] == "bk-1" and str(row["Meeting Time"]).startswith(
        call.date().isoformat()
    )
    [contact] = rig.fake.rows(rig.ws.contacts)
    assert contact["Booking Status"] == "Booked"
    assert contact["Christmas Campaign Status"] == "Pre-Call Prep"

    # After the call, someone marks it Completed in Notion (the edits sensor records what it
    # reads); a re-read of the same booking must not put "Booked" back.
    seen = {**_plain(contact), "Booking Status": "Completed"}
    rig.pages.save_contact_pages(
        {"person1@example.com": ContactPageRecord(str(contact["_id"]), seen)}
    )
    rig.store.set_contact_flags(rig.campaign, "person1@example.com", paused=False)  # requeue
    report, _ = rig.counted()
    assert report.contact_updates == 0

    # A cancellation clears the booking from the sequence page.
    rig.store.upsert_booking_events(rig.campaign, [_booking("cancelled", "bk-1", call)])
    rig.sync()
    row = rig.sequence_rows()["person1@example.com"]
    assert not row["Booking UID"] and not row["Meeting Time"]


def _plain(row: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in row.items() if k != "_id"}


def test_a_page_deleted_in_notion_is_made_again(rig: Rig) -> None:
    rig.store.upsert_signups(rig.campaign, [signup_event(1)])
    rig.sync()
    [page_id] = [str(r["_id"]) for r in rig.fake.rows(rig.ws.sequences)]
    del rig.fake.pages[page_id.replace("-", "")]
    rig.sent(1, 1)
    report = rig.sync()
    assert [key for key, _ in report.failed] == ["person1@example.com"]
    assert "404" in report.failed[0][1]
    # Not settled: it comes back once its wait is over.
    stats = rig.queue.stats(rig.campaign)
    assert stats.depth == 1 and stats.failing == 1
    _ready_now(rig)
    report = rig.sync()
    assert report.created == 1 and not report.failed
    assert rig.sequence_rows()["person1@example.com"]["Email 1 Sent"]


def _ready_now(rig: Rig) -> None:

    with rig.store.engine.begin() as conn:
        conn.execute(notion_queue.update().values(next_try_at=None))


def test_a_create_whose_answer_was_lost_is_found_not_repeated(rig: Rig) -> None:
    rig.store.upsert_signups(rig.campaign, [signup_event(1), signup_event(2)])
    # The process died right after Notion created person1's page: the store only knows a
    # create was started.
    rig.pages.start_create(rig.campaign, "person1@example.com")
    client = rig.ws.client()
    client.prepare(rig.campaign)
    client.api.create_page(
        client.source("Email Sequence DB").id,
        client.encode_values(
            "Email Sequence DB", {"Email": "person1@example.com", "Campaign": "Christmas 2025"}
        ),
        lambda: None,
    )
    client.close()
    # And a create that Notion takes but whose reply never comes back in time.
    rig.fake.inject("timeout", route="POST /v1/pages", applied=True)
    report = rig.sync(rig.ws.client(timeout_s=0.3))
    assert report.found == 1 and report.created == 1 and not report.failed
    rows = rig.sequence_rows()
    assert sorted(rows) == ["person1@example.com", "person2@example.com"]
    assert rows["person1@example.com"]["First Name"] == "Person1"  # completed by an update


def test_a_refused_value_is_retried_later_with_its_error(rig: Rig) -> None:
    rig.store.upsert_signups(rig.campaign, [signup_event(1)])
    rig.sync()
    rig.fake.edit_properties(rig.ws.sequences, {"Paused": None})  # someone deleted a column
    rig.store.set_contact_flags(rig.campaign, "person1@example.com", paused=True)
    report = rig.sync()
    assert report.failed and not report.stopped
    stats = rig.queue.stats(rig.campaign)
    assert stats.failing == 1 and "Paused" in stats.errors[0][2]


def test_notion_unavailable_stops_the_pass_and_loses_nothing(rig: Rig) -> None:
    rig.store.upsert_signups(rig.campaign, [signup_event(n) for n in range(1, 6)])
    rig.sync()
    for n in range(1, 6):
        rig.sent(n, 1)
    rig.fake.inject("503", times=2)  # both attempts of the first write
    report = rig.sync(rig.ws.client(max_attempts=2))
    assert report.stopped.startswith("Notion unavailable") and report.contacts == 0
    stats = rig.queue.stats(rig.campaign)
    assert stats.depth == 5 and stats.ready == 5 and stats.failing == 0
    report = rig.sync()
    assert report.contacts == 5 and report.sequence_updates == 5
    assert all(r["Email 1 Sent"] for r in rig.sequence_rows().values())


def test_the_send_log_gets_one_page_per_message(tmp_path: Path, campaign: Campaign) -> None:
    with FakeNotion() as fake:
        ws = busos_workspace(fake, analytics=True)
        rig = Rig(SqlStore(f"sqlite:///{tmp_path / 'state.db'}"), fake, ws, campaign)
        rig.store.upsert_signups(campaign, [signup_event(1), signup_event(2)])
        rig.sent(1, 1)
        rig.store.record_outcome(
            campaign,
            OutcomeRecord(
                message_id=f"{campaign.slug}/person2@example.com/email-1",
                contact_key="person2@example.com",
                kind="nurture",
                step_id="email-1",
                step_number=1,
                due_at=NOW,
                status="failed",
                reason="invalid address",
                at=NOW,
            ),
        )
        report = rig.sync()
        assert report.logged == 2
        logged = {(r["Message ID"], r["Status"]) for r in fake.rows(ws.analytics or "")}
        assert logged == {
            (f"{campaign.slug}/person1@example.com/email-1", "sent"),
            (f"{campaign.slug}/person2@example.com/email-1", "failed"),
        }
        assert (
            rig.sequence_rows()["person2@example.com"]["Last Error"] == "email-1: invalid address"
        )
        assert rig.sync().logged == 0  # once each


def test_before_the_import_a_page_the_first_tool_made_is_reused(rig: Rig) -> None:
    rig.pages.set_state(SEQUENCES_COMPLETE, "")
    old = rig.fake.add_row(
        rig.ws.sequences,
        {
            "Name": "Person 1 (old tool)",
            "Email": "person1@example.com",
            "Campaign": "Christmas 2025",
        },
    )
    rig.store.upsert_signups(rig.campaign, [signup_event(1), signup_event(2)])
    report = rig.sync()
    assert (report.found, report.created) == (1, 1)  # each create looked first
    rows = rig.sequence_rows()
    assert len(rows) == 2 and str(rows["person1@example.com"]["_id"]) == old
    assert rows["person1@example.com"]["Name"] == "Person 1 (old tool)"  # its title kept
    assert rows["person1@example.com"]["First Name"] == "Person1"
