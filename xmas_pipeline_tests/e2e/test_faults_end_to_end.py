"""Both services failing at once: 20% of Notion and of Resend calls fail (429, 500/529,
timeouts). Send runs repeat until nothing is due, each followed by a Notion sync: every
email reaches Resend exactly once, sending never waits for Notion, and once the faults
stop Notion holds one page per contact with every sent date."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from xmas_pipeline.adapters.resend_sender import ResendSender
from xmas_pipeline.adapters.sql.journal import SqlSendJournal
from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.context import nurture_context
from xmas_pipeline.core.due import compute_due
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.core.send_plan import with_profile as plan_with_fields
from xmas_pipeline.services.notion_sync import SyncReport
from xmas_pipeline.services.sending import Envelope, deliver
from xmas_pipeline_tests.fakes.notion_api import FakeNotion, FaultPlan
from xmas_pipeline_tests.fakes.notion_workspace import Workspace, busos_workspace, signup_event
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, running_fake
from xmas_pipeline_tests.support.notion_sync import sync_pass

PEOPLE = 40


def _sync(store: SqlStore, ws: Workspace, campaign: Campaign, run: int) -> SyncReport:
    return sync_pass(store, ws.client(timeout_s=0.4, max_attempts=3), campaign, f"sync-{run}")


def test_twenty_percent_faults_on_both_services(campaign: Campaign, tmp_path: Path) -> None:
    testing = campaign.for_testing()
    store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
    journal = SqlSendJournal(store.url, engine=store.engine)
    queue = SqlNotionQueue(store.url, engine=store.engine)
    with (
        FakeNotion(faults=FaultPlan(slow_s=0.6)) as notion,
        running_fake(rate_limit=None, hang_s=0.6) as resend,
    ):
        ws = busos_workspace(notion)
        store.upsert_signups(testing, [signup_event(n) for n in range(PEOPLE)])
        notion.set_faults(FaultPlan(rate=0.2, seed=11, slow_s=0.6))
        resend.fault_rate, resend.fault_kinds = 0.2, ("500", "429", "timeout")

        runs = 0
        while runs < 30:
            runs += 1
            sender = ResendSender(
                DEFAULT_API_KEY,
                base_url=resend.base_url,
                rate_per_s=1000,
                timeout_s=0.4,
                max_attempts=3,
                backoff_s=0.01,
                max_backoff_s=0.05,
            )
            sequences = store.load_sequences(testing)  # the store: never Notion
            plan = plan_with_fields(compute_due(sequences, testing, datetime.now(UTC)), sequences)
            if plan.empty and not journal.pending(testing):
                break
            deliver(
                store=store,
                sender=sender,
                renderer=Renderer(load_template_dir()),
                campaign=testing,
                plan=plan,
                context_for=lambda row: nurture_context(row, testing),
                envelope=Envelope(from_email="BusOS <hello@example.com>"),
                journal=journal,
            )
            sender.close()
            _sync(store, ws, testing, runs)  # may stop early: Notion is failing
        notion.set_faults(FaultPlan())
        final = _sync(store, ws, testing, 99)
        rows = notion.rows(ws.sequences)
        accepted = resend.accepted

    assert plan.empty, f"still due after {runs} runs"
    # The signups are old enough for all 7 steps: one step per person per run.
    per_message = Counter((mail.to[0], mail.tags["step"]) for mail in accepted)
    assert len(per_message) == PEOPLE * 7
    assert set(per_message.values()) == {1}, "an email went out twice"
    assert not final.stopped and not final.failed
    assert queue.stats(testing).depth == 0
    # One page per contact, however many creates timed out, every sent date on it.
    assert sorted(row["Email"] for row in rows) == sorted(
        f"person{n}@example.com" for n in range(PEOPLE)
    )
    for row in rows:
        assert all(row[f"Email {n} Sent"] for n in range(1, 8)) and row["Sequence Completed"]
