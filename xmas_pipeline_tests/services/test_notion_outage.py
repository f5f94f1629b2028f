"""Notion down for 10 minutes, and a sync that dies mid-create.

While Notion is down (every request answered 503, or nothing listening at all) the
emails go out on time: sending reads and writes only the store. Every sync pass stops at
its first failed request and gives its contacts back: the queue keeps every contact, and
what the store says it wrote to Notion is what Notion holds. When Notion returns, one
pass brings it in step, each contact written once (new contacts get one create with every
sent date folded in, known ones one update) and nothing else asked, within 10% of the time
those writes take at the rate limit. As in a deployment, `notion import` ran once first
(the CRM and the Email Sequence DB read whole: the sync looks nobody up and creates
without looking first).

The 10 minutes are simulated: send runs and sync passes are given the moments of each
minute (`deliver(now=...)`, `due_plan(..., now)`), and the failing passes' API clients
run on a `VirtualClock` (their retry back-offs, which the pacing limiter waits out), so
they take milliseconds. So does the catch-up, paced at Notion's 3 requests/s on a virtual
clock: what it waits (pacing, any back-off) must stay within 10% of its writes at that
rate, which holds only if it makes no request beyond the writes and none is retried. The
same bound in real time, against the fake's own rate limit, is measured by
`bench/bench_notion.py` (Notion fully in sync after a burst, against writes ÷ 3/s).

A create whose answer is lost (the reply never arrives and Notion goes down before the
page can be looked up, or the process dies between Notion creating the page and the
store recording it) leaves the store knowing a create was started: the next pass finds
the page instead of making a second one.
"""

from __future__ import annotations

import socket
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from xmas_pipeline.adapters.notion.mirror import differences
from xmas_pipeline.adapters.notion.props import page_values
from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.resend_sender import ResendSender
from xmas_pipeline.adapters.sql.journal import SqlSendJournal
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.context import nurture_context
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.services.notion_import import import_from_notion
from xmas_pipeline.services.planning import due_plan
from xmas_pipeline.services.sending import DeliveryReport, Envelope, deliver
from xmas_pipeline_tests.fakes.notion_api import FakeNotion, FaultPlan
from xmas_pipeline_tests.fakes.notion_workspace import (
    VirtualClock,
    Workspace,
    add_contact,
    busos_workspace,
    signup_event,
)
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, FakeResendAPI, running_fake
from xmas_pipeline_tests.support.notion_sync import sync_pass

RATE = 3.0  # Notion's limit, requests/s
SLACK = 1.10  # the catch-up may take 10% more than its writes at the rate limit
BEFORE = 20  # contacts signed up and synced before the outage
DURING = 20  # contacts signed up during it
OUTAGE_MINUTES = 10


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the sync may catch it)."""


def dead_url() -> str:
    """An address where nothing listens: Notion "stopped" (connections refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def client(
    ws: Workspace, cls: type[NotionSync] = NotionSync, base_url: str = "", **options: Any
) -> NotionSync:
    """A sync client on the workspace (by default unpaced, on a virtual clock, like
    `Workspace.client`), of `cls` and at `base_url` when given."""
    options.setdefault("rate_per_s", float("inf"))
    options.setdefault("timeout_s", 5.0)
    if "sleep" not in options:
        clock = VirtualClock()
        options["sleep"], options["clock"] = clock.sleep, clock.now
    return cls(
        token=ws.fake.token,
        contacts_db_id=ws.contacts,
        sequences_db_id=ws.sequences,
        base_url=base_url or ws.fake.base_url,
        **options,
    )


def send_run(
    store: SqlStore, resend: FakeResendAPI, campaign: Campaign, now: datetime, run: int
) -> tuple[int, DeliveryReport]:
    """A send run at `now`: how many emails were due, and what the send path did."""
    plan, _ = due_plan(store, campaign, now)
    with ResendSender(DEFAULT_API_KEY, base_url=resend.base_url, rate_per_s=1000) as sender:
        report = deliver(
            store=store,
            sender=sender,
            renderer=Renderer(load_template_dir()),
            campaign=campaign,
            plan=plan,
            context_for=lambda row: nurture_context(row, campaign),
            envelope=Envelope(from_email="BusOS <hello@example.com>"),
            now=now,
            journal=SqlSendJournal(store.url, engine=store.engine, holder=f"send-{run}"),
        )
    return len(plan), report


def notion_import(store: SqlStore, ws: Workspace, campaign: Campaign) -> None:
    """What a deployment runs once before going live (`xmas-pipeline notion import`)."""
    notion = client(ws)
    try:
        import_from_notion(store=store, notion=notion, campaign=campaign)
    finally:
        notion.close()


def assert_store_matches_notion(
    store: SqlStore, fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    """Nothing half-recorded: every page the store says it wrote holds what the store
    says it wrote; every page in Notion is one the store recorded, or one whose create
    it marked as started (the next pass looks it up before creating)."""
    keys = list(store.load_sequences(campaign)["contact_key"])
    records = SqlNotionPages(store.url, engine=store.engine).sequence_pages(campaign, keys)
    recorded = {r.page_id: key for key, r in records.items() if r.page_id}
    for page_id in recorded:
        notion_values = page_values(fake.raw_page(page_id))
        assert differences(notion_values, records[recorded[page_id]].written) == {}
    for row in fake.rows(ws.sequences):
        record = records.get(row["Email"])
        assert row["_id"] in recorded or (record is not None and record.create_started), row


@pytest.mark.parametrize("outage", ["every request 503", "nothing listening"])
def test_ten_minutes_without_notion_delay_no_email_and_lose_nothing(
    campaign: Campaign, tmp_path: Path, outage: str
) -> None:
    testing = campaign.for_testing()  # a step a minute: 7 emails within the outage
    store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
    queue = SqlNotionQueue(store.url, engine=store.engine)
    t0 = datetime.now(UTC)
    before = [signup_event(n, at=t0) for n in range(BEFORE)]
    during = [signup_event(n, at=t0 + timedelta(minutes=2)) for n in range(BEFORE, BEFORE + DURING)]
    everyone = sorted(e.contact_key for e in before + during)
    with FakeNotion() as fake, running_fake(rate_limit=None) as resend:
        ws = busos_workspace(fake)
        for key in everyone:
            add_contact(fake, ws, key)
        notion_import(store, ws, testing)
        # Before: signed up, welcomed, synced (the schema is now kept in the store).
        store.upsert_signups(testing, before)
        send_run(store, resend, testing, t0, 0)
        first = sync_pass(store, client(ws), testing, "sync-0")
        assert (first.created, first.contact_updates, first.failed) == (BEFORE, BEFORE, [])

        if outage == "every request 503":
            fake.set_faults(FaultPlan(rate=1.0, kinds=("503",)))
            down_url = ""
        else:
            down_url = dead_url()
        notion_before = fake.rows(ws.sequences)
        for minute in range(1, OUTAGE_MINUTES + 1):
            now = t0 + timedelta(minutes=minute)
            if minute == 2:
                store.upsert_signups(testing, during)  # ingestion goes on
            due, report = send_run(store, resend, testing, now, minute)
            # On time: each email goes out in the run of the minute it falls due (step
            # k at minute k - 1 after signing up).
            expected = BEFORE * (minute <= 6) + DURING * (2 <= minute <= 8)
            assert due == expected and len(report.sent) == due, (minute, report.problems())
            assert due_plan(store, testing, now)[0].empty
            # The sensor tries again every minute or so: each pass stops at once.
            down = sync_pass(store, client(ws, base_url=down_url), testing, f"sync-{minute}")
            assert down.stopped.startswith("Notion unavailable"), down
            assert (down.contacts, down.created, down.failed) == (0, 0, [])
            stats = queue.stats(testing)
            # Everyone with a change is still queued, free for the next pass.
            assert stats.ready == stats.depth > 0 and stats.failing == 0
        assert_store_matches_notion(store, fake, ws, testing)
        assert fake.rows(ws.sequences) == notion_before  # nothing reached Notion
        assert queue.stats(testing).depth == len(everyone)

        # Every email of every sequence went out once, none waiting for Notion.
        accepted = Counter((mail.to[0], mail.tags["step"]) for mail in resend.accepted)
        assert len(accepted) == len(everyone) * 7 and set(accepted.values()) == {1}

        # Notion is back: one pass, each contact written once, paced at Notion's limit.
        fake.set_faults(FaultPlan())
        fake.reset_counts()
        clock = VirtualClock()
        back = sync_pass(
            store, client(ws, rate_per_s=RATE, sleep=clock.sleep, clock=clock.now), testing, "back"
        )
        took = clock.time - 1000.0  # what the pacing and any back-off waited, in seconds
        assert not back.stopped and not back.failed
        assert (back.contacts, back.created, back.found) == (len(everyone), DURING, 0)
        assert (back.sequence_updates, back.contact_updates) == (BEFORE, DURING)
        writes = back.created + back.sequence_updates + back.contact_updates
        assert dict(fake.counts) == {
            "POST /v1/pages": DURING,
            "PATCH /v1/pages/{id}": writes - DURING,
        }
        assert back.requests == writes and fake.statuses[429] == 0
        assert took <= SLACK * writes / RATE, (took, writes)
        assert queue.stats(testing).depth == 0

        rows = fake.rows(ws.sequences)
        assert sorted(row["Email"] for row in rows) == everyone  # one page each
        for row in rows:
            assert all(row[f"Email {n} Sent"] for n in range(1, 8)), row
            assert row["Sequence Completed"]
        assert_store_matches_notion(store, fake, ws, testing)


def losing_the_first_create(fake: FakeNotion) -> type[NotionSync]:
    """A client whose first create is taken by Notion, its reply never arrives, and
    Notion goes down before the page can be looked up."""

    class LosesTheFirstCreate(NotionSync):
        tripped = False

        def create_sequence(
            self, campaign: Campaign, email: str, values: dict[str, Any], look_first: bool
        ) -> tuple[dict[str, Any], bool]:
            if not self.tripped:
                self.tripped = True
                fake.inject("timeout", route="POST /v1/pages")  # applied, reply held back
                fake.set_faults(FaultPlan(rate=1.0, kinds=("503",), slow_s=0.5))
            return super().create_sequence(campaign, email, values, look_first)

    return LosesTheFirstCreate


class DiesAfterTheFirstCreate(NotionSync):
    """The process dies after Notion created the page, before the store recorded it."""

    def create_sequence(
        self, campaign: Campaign, email: str, values: dict[str, Any], look_first: bool
    ) -> tuple[dict[str, Any], bool]:
        page, _ = super().create_sequence(campaign, email, values, look_first)
        raise Crash(page["id"])


@pytest.mark.parametrize("lost", ["reply lost, then Notion down", "process dies"])
def test_a_create_whose_answer_is_lost_is_found_not_made_again(
    campaign: Campaign, tmp_path: Path, lost: str
) -> None:
    people = 3
    store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
    queue = SqlNotionQueue(store.url, engine=store.engine)
    events = [signup_event(n, at=datetime.now(UTC)) for n in range(people)]
    with FakeNotion(faults=FaultPlan(slow_s=0.5)) as fake:
        ws = busos_workspace(fake)
        for event in events:
            add_contact(fake, ws, event.contact_key)
        notion_import(store, ws, campaign)
        store.upsert_signups(campaign, events)
        if lost == "process dies":
            broken = client(ws, DiesAfterTheFirstCreate)
            with pytest.raises(Crash):
                sync_pass(store, broken, campaign, "sync-dead")
            # Nothing lost: every contact still queued (held by the dead run, freed as
            # `notion_email_sequence` frees them when its run starts).
            assert queue.stats(campaign).depth == people
            assert queue.release(campaign, alive=lambda _holder: False) == people
        else:
            # A short timeout: the held-back create reply is given up on.
            broken = client(ws, losing_the_first_create(fake), timeout_s=0.2)
            report = sync_pass(store, broken, campaign, "sync-1")
            assert report.stopped.startswith("Notion unavailable") and not report.created
            assert queue.stats(campaign).ready == people
        assert len(fake.rows(ws.sequences)) == 1  # Notion made the page...
        assert_store_matches_notion(store, fake, ws, campaign)  # ...the store knows a create began

        fake.set_faults(FaultPlan())
        again = sync_pass(store, client(ws), campaign, "sync-2")
        assert (again.found, again.created, again.failed) == (1, people - 1, [])
        rows = fake.rows(ws.sequences)
        assert sorted(row["Email"] for row in rows) == sorted(e.contact_key for e in events)
        assert queue.stats(campaign).depth == 0
        assert_store_matches_notion(store, fake, ws, campaign)
