"""People's edits in Notion brought into the store (`apply_notion_edits`), against the fake
Notion API (its clock frozen and moved by the tests) and the SQL store on SQLite and
PostgreSQL: what each kind of edit does, what a poll costs, and that our own writes coming
back change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from xmas_pipeline.adapters.notion.http import NotionCallError
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.bookings import BookingEvent
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import SentRecord, StoreSchemaError
from xmas_pipeline.services.notion_edits import EditsReport, apply_notion_edits, cursor_state
from xmas_pipeline.services.notion_sync import CONTACTS_COMPLETE, SyncReport
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import (
    Workspace,
    add_contact,
    busos_workspace,
    signup_event,
)
from xmas_pipeline_tests.support.notion_sync import sync_pass

T0 = datetime(2025, 11, 3, 10, 0, 20, tzinfo=UTC)  # Notion's clock, as the fake keeps it
QUERY = "POST /v1/data_sources/{id}/query"


@dataclass
class Rig:
    store: SqlStore
    fake: FakeNotion
    ws: Workspace
    campaign: Campaign

    @property
    def pages(self) -> SqlNotionPages:
        return SqlNotionPages(self.store.url, engine=self.store.engine)

    @property
    def queue(self) -> SqlNotionQueue:
        return SqlNotionQueue(self.store.url, engine=self.store.engine)

    def sync(self) -> SyncReport:
        return sync_pass(self.store, self.ws.client(), self.campaign, "run-test")

    def edits(self, templates: bool = True, **options: Any) -> EditsReport:
        """One tick's work, with a fresh client (nothing cached in memory)."""
        notion = self.ws.client(**options)
        try:
            return apply_notion_edits(
                store=self.store,
                pages=self.pages,
                notion=notion,
                campaign=self.campaign,
                templates_db_id=self.ws.templates if templates else None,
                now=lambda: self.fake.now(),
            )
        finally:
            notion.close()

    def later(self, minutes: float) -> None:
        self.fake.advance(timedelta(minutes=minutes))

    def page_of(self, n: int) -> str:
        key = f"person{n}@example.com"
        return self.pages.sequence_pages(self.campaign, [key])[key].page_id

    def row(self, n: int) -> dict[str, Any]:
        rows = {r["Email"]: r for r in self.fake.rows(self.ws.sequences)}
        return rows[f"person{n}@example.com"]

    def snap(self, n: int) -> Any:
        key = f"person{n}@example.com"
        return self.store.contact_snapshots(self.campaign, [key])[key]

    def sent(self, n: int, step: int) -> None:
        key = f"person{n}@example.com"
        mid = f"{self.campaign.slug}/{key}/email-{step}"
        at = T0 + timedelta(days=step)
        self.store.record_sent(
            self.campaign,
            SentRecord(mid, mid, key, "nurture", f"email-{step}", step, at, at, f"re_{n}_{step}"),
        )

    def template(self, name: str, subject: str = "Subject", body: str = "<p>Body</p>") -> str:
        assert self.ws.templates
        return self.fake.add_row(
            self.ws.templates,
            {"Template Name": name, "Subject Line": subject, "Email Body HTML": body},
        )

    def templates(self) -> dict[str, tuple[str, str, str]]:
        return {t.name: (t.page_id, t.subject, t.html) for t in self.pages.notion_templates()}


@pytest.fixture
def rig(sql_store: SqlStore, campaign: Campaign) -> Iterator[Rig]:
    with FakeNotion() as fake:
        fake.freeze(T0)
        yield Rig(sql_store, fake, busos_workspace(fake, templates=True), campaign)


@contextmanager
def store_writes(store: SqlStore) -> Iterator[list[str]]:
    """Every statement that changes the store's data, but the cursors' (`notion_state`)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and "notion_state" not in statement:
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)


def settled(rig: Rig, signups: int) -> None:
    """Contacts signed up, synced to Notion, and the first look at Notion taken."""
    rig.store.upsert_signups(rig.campaign, [signup_event(n) for n in range(1, signups + 1)])
    rig.sync()
    rig.edits()


def test_a_poll_with_nothing_changed_costs_one_request_per_database(rig: Rig) -> None:
    # 300 sequences: three pages of 100 to read whole the first time (the count is the
    # same rule at any size; the test ran on 1,000 before).
    people = 300
    rig.store.upsert_signups(rig.campaign, [signup_event(n) for n in range(1, people + 1)])
    for email in ("person1@example.com", "person2@example.com", "stranger@example.com"):
        add_contact(rig.fake, rig.ws, email)
    rig.template("email-1")
    rig.template("email-2.critical")
    rig.sync()
    assert len(rig.fake.rows(rig.ws.sequences)) == people
    rig.later(2)
    rig.fake.reset_counts()
    first = rig.edits()
    # The first look reads each database whole: a query per 100 sequences, 1 + 1 more, and
    # the Templates DB's schema (2 requests; the sync had cached the other two).
    queries = -(-people // 100) + 2
    assert rig.fake.counts[QUERY] == queries and first.requests == queries + 2
    # The CRM pages of person1 and 2 are as the sync left them: only the stranger is new.
    assert (first.contacts, first.templates, first.paused) == (1, 2, 0)
    assert first.pages == people + 3 + 2
    assert rig.pages.state(CONTACTS_COMPLETE) == "yes"
    for minutes in (0, 1, 10):  # at 10, the templates are read whole: one request still
        rig.later(minutes)
        rig.fake.reset_counts()
        with store_writes(rig.store) as writes:
            report = rig.edits()
        assert rig.fake.counts == {QUERY: 3} and report.requests == 3
        assert report.summary() == "nothing changed (0 changed pages read; 3 Notion requests)"
        assert writes == []
    rig.fake.reset_counts()
    rig.edits(templates=False)
    assert rig.fake.total == 2


def test_paused_goes_both_ways_and_a_hand_unsubscribe_is_never_undone(rig: Rig) -> None:
    settled(rig, 2)
    rig.later(1)
    rig.fake.edit_row(rig.page_of(1), {"Paused": True})
    report = rig.edits()
    assert report.paused == 1 and report.summary().startswith("1 paused, 1 hand-edited")
    assert rig.snap(1).paused and not rig.snap(2).paused
    # The flag is the store's now: the sync, told of it, has nothing left to write.
    assert rig.queue.stats(rig.campaign).depth == 1
    rig.fake.reset_counts()
    assert rig.sync().contacts == 1 and rig.fake.total == 0

    rig.later(1)
    rig.fake.edit_row(rig.page_of(1), {"Paused": False})
    rig.fake.edit_row(rig.page_of(2), {"Unsubscribed": True})
    report = rig.edits()
    assert (report.unpaused, report.unsubscribed) == (1, 1)
    assert not rig.snap(1).paused and rig.snap(2).unsubscribed
    rig.sync()

    rig.later(1)
    rig.fake.edit_row(rig.page_of(2), {"Unsubscribed": False})  # unticked: not undone
    report = rig.edits()
    assert report.unsubscribed == 0 and report.hand_edits == 1 and report.put_back == 1
    # Queued by the edit alone: the next sync puts the store's value back, in one update.
    assert rig.snap(2).unsubscribed and rig.queue.stats(rig.campaign).depth == 1
    rig.fake.reset_counts()
    rig.sync()
    assert rig.row(2)["Unsubscribed"] is True
    assert rig.fake.counts == {"PATCH /v1/pages/{id}": 1}


def test_our_own_writes_coming_back_change_nothing(rig: Rig) -> None:
    settled(rig, 150)
    rig.later(2)
    for n in range(1, 151):
        rig.sent(n, 1)
    assert rig.sync().sequence_updates == 150
    rig.fake.reset_counts()
    with store_writes(rig.store) as writes:
        report = rig.edits()
    assert report.pages == 150  # they come back: the sync's updates moved last_edited_time
    assert writes == [] and rig.queue.stats(rig.campaign).depth == 0
    assert report.summary().startswith("nothing changed")
    assert rig.fake.counts == {QUERY: 4}  # 150 pages are 2 requests
    rig.fake.reset_counts()
    assert rig.sync().contacts == 0 and rig.fake.total == 0  # and no request follows


def test_edits_in_the_cursors_minute_are_applied_once_and_never_lost(rig: Rig) -> None:
    settled(rig, 3)  # the cursor is at this minute now
    rig.fake.edit_row(rig.page_of(1), {"Paused": True})
    report = rig.edits()
    assert (report.pages, report.paused) == (1, 1)
    with store_writes(rig.store) as writes:
        again = rig.edits()  # the same minute is read again: person1 comes back unchanged
    assert (again.pages, again.paused, writes) == (0, 0, [])

    rig.fake.edit_row(rig.page_of(2), {"Paused": True})  # still that minute
    report = rig.edits()
    assert (report.pages, report.paused) == (1, 1)
    rig.fake.edit_row(rig.page_of(1), {"Paused": False})  # person1 again, same minute
    report = rig.edits()
    assert (report.pages, report.unpaused) == (1, 1)
    assert [rig.snap(n).paused for n in (1, 2, 3)] == [False, True, False]

    # An edit Notion stamps with the minute before the cursor's (its clock a little behind,
    # or indexed late) is still found.
    rig.later(3)
    rig.edits()
    rig.fake.freeze(rig.fake.now() - timedelta(minutes=1))
    rig.fake.edit_row(rig.page_of(3), {"Paused": True})
    report = rig.edits()
    assert report.paused == 1 and rig.snap(3).paused
    rig.later(5)
    rig.fake.reset_counts()
    assert rig.edits().pages == 0 and rig.fake.total == 3


def test_a_hand_edit_of_what_the_pipeline_owns_is_put_back_at_the_next_sync(rig: Rig) -> None:
    rig.store.upsert_signups(rig.campaign, [signup_event(1)])
    rig.sent(1, 1)
    rig.sync()
    rig.edits()
    rig.later(1)
    rig.fake.edit_row(rig.page_of(1), {"Email 1 Sent": None, "First Name": "Bob"})
    with store_writes(rig.store) as writes:
        report = rig.edits()
    # The sync's diff base, and the contact queued: nothing else changes in the store.
    assert report.hand_edits == 1 and report.put_back == 1 and len(writes) == 2
    assert rig.queue.stats(rig.campaign).depth == 1 and rig.snap(1).nurture_sent
    rig.fake.reset_counts()
    rig.sync()  # nothing else changed for the contact: the edit alone brings this sync
    row = rig.row(1)
    assert row["Email 1 Sent"] and row["First Name"] == "Person1"
    assert rig.fake.counts == {"PATCH /v1/pages/{id}": 1}  # both values in one update
    # The sync's own write, read back by the next tick, is no edit: nothing more to do.
    rig.later(1)
    report = rig.edits()
    assert report.hand_edits == 0 and report.put_back == 0
    assert rig.queue.stats(rig.campaign).depth == 0


def test_edits_of_what_people_own_are_kept_and_queue_nothing(rig: Rig) -> None:
    settled(rig, 1)
    rig.later(1)
    # A row renamed (the title is set on create only) and a note in a property the
    # pipeline does not write: kept in Notion, nothing queued, nothing written back.
    rig.fake.edit_row(rig.page_of(1), {"Name": "Person One (VIP)"})
    report = rig.edits()
    assert report.hand_edits == 1 and report.put_back == 0
    assert rig.queue.stats(rig.campaign).depth == 0
    rig.fake.reset_counts()
    rig.sync()
    assert rig.fake.total == 0 and rig.row(1)["Name"] == "Person One (VIP)"


def test_a_hand_edit_of_a_crm_value_the_pipeline_owns_is_put_back(rig: Rig) -> None:
    add_contact(rig.fake, rig.ws, "person1@example.com")
    settled(rig, 1)
    [crm] = rig.fake.rows(rig.ws.contacts)
    segment = crm["Segment"]
    assert segment
    rig.later(1)
    crm_page = rig.pages.contact_pages(["person1@example.com"])["person1@example.com"].page_id
    rig.fake.edit_row(crm_page, {"Segment": "OPTIMIZE" if segment != "OPTIMIZE" else "URGENT"})
    report = rig.edits()
    assert report.contacts == 1 and report.put_back == 1 and report.new_contacts == 0
    rig.fake.reset_counts()
    rig.sync()
    [crm] = rig.fake.rows(rig.ws.contacts)
    assert crm["Segment"] == segment
    assert rig.fake.counts == {"PATCH /v1/pages/{id}": 1}


def _booking(uid: str, start: datetime, seen_at: datetime) -> BookingEvent:
    return BookingEvent.model_validate(
        {
            "uid": uid,
            "kind": "created",
            "contact_key": "person1@example.com",
            "email": "person1@example.com",
            "name": "Person One",
            "start": start,
            "end": start + timedelta(minutes=30),
            "event_at": seen_at,
            "source": "calcom-api-v2",
        }
    )


@pytest.mark.parametrize("status", ["Completed", "No-Show"])
def test_an_after_call_status_set_by_hand_survives_the_booking_read_again(
    rig: Rig, status: str
) -> None:
    crm_page = add_contact(rig.fake, rig.ws, "person1@example.com")
    rig.store.upsert_signups(rig.campaign, [signup_event(1)])
    call = T0 + timedelta(days=3)
    rig.store.upsert_booking_events(rig.campaign, [_booking("bk-1", call, T0)])
    rig.sync()
    [crm] = rig.fake.rows(rig.ws.contacts)
    assert crm["Booking Status"] == "Booked"
    rig.edits()
    rig.later(1)
    rig.fake.edit_row(crm_page, {"Booking Status": status})
    report = rig.edits()
    assert report.contacts == 1 and report.new_contacts == 0
    seen = rig.pages.contact_pages(["person1@example.com"])["person1@example.com"]
    assert seen.values["Booking Status"] == status
    # Cal.com's poll reads the booking again, and the contact moves on: the sync writes the
    # sequence page but leaves the CRM's status alone.
    again = _booking("bk-1", call, T0 + timedelta(hours=1))
    rig.store.upsert_booking_events(rig.campaign, [again])
    rig.sent(1, 1)
    report = rig.sync()
    assert report.sequence_updates == 1 and report.contact_updates == 0
    [crm] = rig.fake.rows(rig.ws.contacts)
    assert crm["Booking Status"] == status


def test_a_crm_contact_appearing_is_filled_in_without_any_lookup(rig: Rig) -> None:
    settled(rig, 1)  # the first look read the whole CRM: an address it lacks is absent
    assert rig.pages.state(CONTACTS_COMPLETE) == "yes"
    rig.store.upsert_signups(rig.campaign, [signup_event(2)])
    assert rig.sync().contact_lookups == 0
    rig.later(1)
    add_contact(rig.fake, rig.ws, "person2@example.com")  # someone adds them to the CRM
    add_contact(rig.fake, rig.ws, "stranger@example.com")  # not a contact of the store
    report = rig.edits()
    assert (report.contacts, report.new_contacts) == (2, 1)
    report = rig.sync()
    assert report.contact_updates == 1 and report.contact_lookups == 0
    crm = {r["email"]: r for r in rig.fake.rows(rig.ws.contacts)}
    assert crm["person2@example.com"]["Christmas Campaign Status"] == "Nurture Sequence"
    assert crm["stranger@example.com"]["Christmas Campaign Status"] is None


def test_pages_the_store_does_not_know_are_left_alone(rig: Rig) -> None:
    settled(rig, 1)
    rig.later(1)
    values = {"Email": "someone@example.com", "Paused": True, "Unsubscribed": True}
    rig.fake.add_row(rig.ws.sequences, {**values, "Campaign": "Christmas 2025"})
    rig.fake.add_row(rig.ws.sequences, {**values, "Campaign": "BusinessX Canada"})  # not read
    with store_writes(rig.store) as writes:
        report = rig.edits()
    assert (report.pages, report.not_ours, report.paused, writes) == (1, 1, 0, [])


def test_templates_edited_emptied_renamed_and_trashed(rig: Rig) -> None:
    welcome = rig.template("email-1", "Welcome")
    quick = rig.template("email-2", "Quick wins")
    report = rig.edits()
    assert report.templates == 2 and set(rig.templates()) == {"email-1", "email-2"}

    rig.later(1)
    rig.fake.edit_row(welcome, {"Subject Line": "Welcome, {{ name }}"})
    assert rig.edits().templates == 1
    assert rig.templates()["email-1"][1] == "Welcome, {{ name }}"

    rig.later(1)
    newer = rig.template("email-2", "Quick wins, rewritten")  # a second page of that name
    assert rig.edits().templates == 1
    assert rig.templates()["email-2"][0] == newer  # the one edited last

    rig.later(1)
    rig.fake.edit_row(newer, {"Email Body HTML": ""})  # emptied: the older page again
    rig.fake.reset_counts()
    report = rig.edits()
    assert rig.templates()["email-2"] == (quick, "Quick wins", "<p>Body</p>")
    assert rig.fake.counts[QUERY] == 4  # the Templates DB read whole to find it

    rig.later(1)
    rig.fake.edit_row(quick, {}, in_trash=True)  # a query no longer returns it...
    assert rig.edits().templates_dropped == 0 and "email-2" in rig.templates()
    rig.later(5)
    rig.fake.reset_counts()
    report = rig.edits()  # ...the sweep's whole read notices, for the same one request
    assert report.templates_dropped == 1 and "email-2" not in rig.templates()
    assert rig.fake.counts == {QUERY: 3}

    rig.later(1)
    rig.fake.edit_row(welcome, {"Template Name": "email-9"})
    report = rig.edits()
    assert (report.templates, report.templates_dropped) == (1, 1)
    assert set(rig.templates()) == {"email-9"}


def test_a_templates_db_missing_a_property_is_named(rig: Rig) -> None:
    assert rig.ws.templates
    rig.fake.edit_properties(rig.ws.templates, {"Email Body HTML": None})
    with pytest.raises(StoreSchemaError) as caught:
        rig.edits()
    assert caught.value.missing == {"Templates DB": ["Email Body HTML"]}


def test_notion_failing_leaves_every_cursor_where_it_was(rig: Rig) -> None:
    settled(rig, 2)
    rig.later(1)
    rig.fake.edit_row(rig.page_of(1), {"Paused": True})
    before = rig.pages.state(cursor_state("Email Sequence DB"))
    rig.fake.inject("503", times=2, route=QUERY)
    with pytest.raises(NotionCallError):
        rig.edits(max_attempts=2)
    assert rig.pages.state(cursor_state("Email Sequence DB")) == before
    assert not rig.snap(1).paused
    assert rig.edits().paused == 1
