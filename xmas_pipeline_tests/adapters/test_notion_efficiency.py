"""Request budgets, counted by the fake Notion server over 200 contacts (steady state: the
databases already hold another campaign's worth of pages)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta

import pytest

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.ports import SentRecord
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import (
    BASE_TIME,
    Workspace,
    add_contact,
    busos_workspace,
    signup_event,
)

N = 200
SCHEMA_CHECK = 4  # per run: database -> data source, then its schema, for both databases


@pytest.fixture
def fake() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        yield server


@pytest.fixture
def ws(fake: FakeNotion, campaign: Campaign) -> Workspace:
    workspace = busos_workspace(fake, analytics=True)
    # Earlier signups already in both databases: the new ones must not cost more for them.
    workspace.store().upsert_signups(campaign, [signup_event(n) for n in range(1000, 1000 + N)])
    for n in range(N):
        add_contact(fake, workspace, f"person{n}@example.com")
    return workspace


def sent(campaign: Campaign, n: int) -> SentRecord:
    key = f"person{n}@example.com"
    return SentRecord(
        message_id=f"{campaign.slug}/{key}/email-1",
        idempotency_key=f"{campaign.slug}/{key}/email-1",
        contact_key=key,
        kind="nurture",
        step_id="email-1",
        step_number=1,
        due_at=BASE_TIME,
        sent_at=BASE_TIME + timedelta(seconds=n),
        provider_id=f"re_{n}",
    )


def test_new_signups_cost_two_writes_each(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    fake.reset_counts()
    report = ws.store().upsert_signups(campaign, [signup_event(n) for n in range(N)])
    assert len(report.created) == N and not report.contact_missing
    writes = fake.counts["POST /v1/pages"] + fake.counts["PATCH /v1/pages/{id}"]
    assert writes == 2 * N  # one contact update and one page create per new signup
    lookups = fake.counts["POST /v1/data_sources/{id}/query"]
    assert lookups == 2 * math.ceil(N / 100)  # sequences, then contacts, 100 a query
    per_signup = fake.total / N
    print(f"{per_signup:.3f} requests per new signup ({writes / N:.2f} of them writes)")
    assert per_signup <= 2 + (SCHEMA_CHECK + lookups) / N


def test_redelivered_signups_cost_no_writes(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    events = [signup_event(n) for n in range(1000, 1000 + N)]
    fake.reset_counts()
    ws.store().upsert_signups(campaign, events)
    assert fake.counts["POST /v1/pages"] == 0 and fake.counts["PATCH /v1/pages/{id}"] == 0
    assert fake.total == SCHEMA_CHECK + math.ceil(N / 100)


def test_sending_costs_at_most_1_05_requests_per_email(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    ws.store().upsert_signups(campaign, [signup_event(n) for n in range(N)])
    fake.reset_counts()
    store = ws.store()  # a send run: check, load once, one update per email
    store.load_sequences(campaign)
    for n in range(N):
        store.record_sent(campaign, sent(campaign, n))
    assert fake.counts["PATCH /v1/pages/{id}"] == N
    assert fake.counts["POST /v1/data_sources/{id}/query"] == math.ceil(2 * N / 100)
    per_email = fake.total / N
    print(f"{per_email:.3f} requests per email sent")
    assert per_email <= 1.05


def test_the_send_log_adds_one_request_per_email(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    ws.store().upsert_signups(campaign, [signup_event(n) for n in range(N)])
    store = ws.store(analytics_db_id=ws.analytics)
    store.load_sequences(campaign)
    fake.reset_counts()
    for n in range(N):
        store.record_sent(campaign, sent(campaign, n))
    assert fake.counts == {"PATCH /v1/pages/{id}": N, "POST /v1/pages": N}
    assert len(fake.rows(ws.analytics)) == N
