"""What Notion costs when little happens, at 10,000 sequences in the store (both engines):
a send run with nothing due makes no Notion request (sending reads and writes only the
store), a sync pass with nothing queued makes none either (the databases' schema is kept
in the store), and a sync pass after one email makes exactly one (that page's update).
The issue allows at most 2 for each of the first two."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.adapters.sql.tables import messages, sequences
from xmas_pipeline.core.campaign import Campaign, message_id
from xmas_pipeline.core.context import nurture_context
from xmas_pipeline.core.ports import OutgoingEmail, SendResult
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.core.sequence_frame import PROFILE_FIELDS
from xmas_pipeline.services.notion_sync import SyncReport
from xmas_pipeline.services.planning import due_plan
from xmas_pipeline.services.sending import DeliveryReport, Envelope, deliver
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import (
    Workspace,
    add_contact,
    busos_workspace,
    signup_event,
)
from xmas_pipeline_tests.support.notion_sync import sync_pass

SEQUENCES = 10_000
WATCHED = "watched@example.com"  # the one contact this test follows through Notion


class AcceptingSender:
    """Accepts every email: what the provider costs is measured elsewhere."""

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    def send(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        self.sent += emails
        return [
            SendResult(e.message_id, e.idempotency_key, "sent", provider_id=f"re_{len(self.sent)}")
            for e in emails
        ]


def seed_welcomed(store: SqlStore, campaign: Campaign, count: int, at: datetime) -> None:
    """`count` sequences signed up at `at` and welcomed then, in two bulk statements
    (`upsert_signups` makes two statements a signup: ~8 s for 10,000 on SQLite here).
    Their Notion pages count as in step: none of them is queued."""
    seq_rows, sent_rows = [], []
    for n in range(count):
        event = signup_event(n, at=at)
        key = event.contact_key
        profile = {f: getattr(event.signup, f) for f in PROFILE_FIELDS}
        seq_rows.append(
            {
                "campaign": campaign.slug,
                "contact_key": key,
                "email": key,
                **profile,
                "segment": event.signup.segment.value,
                "time_zone": "",
                "signup_at": at,
                "signup_day": at.strftime("%Y-%m-%d"),
                "source": event.source,
                "updated_at": at,
            }
        )
        welcome = message_id(campaign.slug, key, "email-1")
        sent_rows.append(
            {
                "idempotency_key": welcome,
                "campaign": campaign.slug,
                "message_id": welcome,
                "contact_key": key,
                "kind": "nurture",
                "step_id": "email-1",
                "step_number": 1,
                "segment": event.signup.segment.value,
                "due_at": at,
                "due_day": at.strftime("%Y-%m-%d"),
                "sent_at": at,
                "provider_id": f"re_seed_{n}",
            }
        )
    store.prepare(campaign)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(sequences), seq_rows)
        conn.execute(sa.insert(messages), sent_rows)


def send_run(
    store: SqlStore, campaign: Campaign, now: datetime, only: str | None = None
) -> tuple[pd.DataFrame, DeliveryReport]:
    """A send run as `deliveries` makes it: the plan from the store, then the send path
    (`only`: one contact's rows, to send one email out of many due)."""
    plan, _ = due_plan(store, campaign, now)
    if only is not None:
        plan = plan[plan["contact_key"] == only]
    report = deliver(
        store=store,
        sender=AcceptingSender(),
        renderer=Renderer(load_template_dir()),
        campaign=campaign,
        plan=plan,
        context_for=lambda row: nurture_context(row, campaign),
        envelope=Envelope(from_email="BusOS <hello@example.com>"),
        now=now,
    )
    return plan, report


def sync(store: SqlStore, ws: Workspace, campaign: Campaign, holder: str) -> SyncReport:
    """One pass with a fresh client, as each sync run makes one (nothing in memory)."""
    return sync_pass(store, ws.client(), campaign, holder)


@pytest.mark.timeout(120)
def test_idle_runs_cost_no_notion_request_at_ten_thousand_sequences(
    sql_store: SqlStore, unpaced_campaign: Campaign
) -> None:
    campaign = unpaced_campaign  # no send window: the second email falls due at any hour
    signed_up = datetime.now(UTC) - timedelta(hours=1)
    seed_welcomed(sql_store, campaign, SEQUENCES - 1, signed_up)
    with FakeNotion() as fake:
        ws = busos_workspace(fake)
        add_contact(fake, ws, WATCHED)
        # The watched contact comes the ordinary way: ingested, welcomed, synced.
        sql_store.upsert_signups(campaign, [signup_event(0, email=WATCHED, at=signed_up)])
        plan, report = send_run(sql_store, campaign, datetime.now(UTC))
        assert len(plan) == 1 and len(report.sent) == 1
        first = sync(sql_store, ws, campaign, "sync-1")
        assert (first.created, first.contact_updates, first.failed) == (1, 1, [])
        assert len(sql_store.load_sequences(campaign)) == SEQUENCES

        # A send run with nothing due: the store only.
        fake.reset_counts()
        plan, report = send_run(sql_store, campaign, datetime.now(UTC))
        assert plan.empty and not report.sent
        assert fake.total == 0, fake.counts

        # A sync pass with nothing queued: the schema comes from the store.
        idle = sync(sql_store, ws, campaign, "sync-2")
        assert (idle.contacts, idle.requests) == (0, 0)
        assert fake.total == 0, fake.counts

        # One email: one page update, only what changed.
        day_later = signed_up + timedelta(hours=24, minutes=1)
        plan, report = send_run(sql_store, campaign, day_later, only=WATCHED)
        assert [r["step_id"] for r in report.sent] == ["email-2"]
        one = sync(sql_store, ws, campaign, "sync-3")
        assert (one.contacts, one.sequence_updates, one.requests) == (1, 1, 1)
        assert dict(fake.counts) == {"PATCH /v1/pages/{id}": 1}
        (page,) = fake.rows(ws.sequences)
        assert page["Email"] == WATCHED and page["Email 2 Sent"]
