"""Rate limits and faults: Retry-After is honoured, safe calls are retried, creates are never
duplicated, and a write that fails for good raises so the message stays due."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from xmas_pipeline.adapters.notion.http import NotionApi, NotionCallError
from xmas_pipeline.adapters.notion.store import NotionStore
from xmas_pipeline.adapters.notion.workspace import NotionStoreError
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.due import compute_due
from xmas_pipeline.core.exit_rules import SEND
from xmas_pipeline.core.ports import SentRecord
from xmas_pipeline_tests.fakes.notion_api import FakeNotion, FaultPlan
from xmas_pipeline_tests.fakes.notion_workspace import (
    BASE_TIME,
    VirtualClock,
    Workspace,
    add_contact,
    busos_workspace,
    signup_event,
)

KEY = "person1@example.com"


@pytest.fixture
def fake() -> Iterator[FakeNotion]:
    with FakeNotion(faults=FaultPlan(slow_s=1.5)) as server:
        yield server


@pytest.fixture
def ws(fake: FakeNotion) -> Workspace:
    return busos_workspace(fake)


def store_with_clock(ws: Workspace, **options: object) -> tuple[NotionStore, VirtualClock]:
    clock = VirtualClock()
    return ws.store(sleep=clock.sleep, clock=clock.now, **options), clock


def sent(campaign: Campaign, key: str, step: int) -> SentRecord:
    mid = f"{campaign.slug}/{key}/email-{step}"
    return SentRecord(
        message_id=mid,
        idempotency_key=mid,
        contact_key=key,
        kind="nurture",
        step_id=f"email-{step}",
        step_number=step,
        due_at=BASE_TIME,
        sent_at=BASE_TIME + timedelta(hours=step),
        provider_id=f"re_{step}",
        completes_sequence=step == campaign.last_step,
    )


def ready(ws: Workspace, campaign: Campaign, **options: object) -> tuple[NotionStore, VirtualClock]:
    ws.store().upsert_signups(campaign, [signup_event(1)])
    store, clock = store_with_clock(ws, **options)
    store.load_sequences(campaign)
    return store, clock


@pytest.mark.parametrize("status", ["429", "529"])
def test_retry_after_is_honoured(
    fake: FakeNotion, ws: Workspace, campaign: Campaign, status: str
) -> None:
    store, clock = ready(ws, campaign)
    fake.reset_counts()
    fake.inject(status, route="PATCH /v1/pages/{id}", retry_after_s=7)
    store.record_sent(campaign, sent(campaign, KEY, 1))
    assert clock.sleeps == [7.0]
    assert fake.counts["PATCH /v1/pages/{id}"] == 2
    assert fake.rows(ws.sequences)[0]["Email 1 Sent"]


def test_the_limiter_paces_requests(fake: FakeNotion, ws: Workspace, campaign: Campaign) -> None:
    store, clock = ready(ws, campaign, rate_per_s=3.0)
    for step in (1, 2, 3):
        store.record_sent(campaign, sent(campaign, KEY, step))
    # On the virtual clock nothing else takes time: each request after the first waited 1/3 s.
    assert store.api.requests_sent == 8  # 4 to check the schema, 1 load, 3 updates
    assert clock.sleeps == pytest.approx([1 / 3] * 7)


def test_the_servers_own_rate_limit_is_waited_out(campaign: Campaign) -> None:
    clock = VirtualClock()  # shared: the server's limiter refills as the store sleeps
    with FakeNotion(rate_limit=3.0, burst=3, clock=clock.now) as fake:
        ws = busos_workspace(fake)
        unpaced = ws.store(sleep=clock.sleep, clock=clock.now)
        unpaced.upsert_signups(campaign, [signup_event(n) for n in range(6)])
        assert fake.statuses[429] > 0
        assert set(clock.sleeps) == {1.0}  # each wait is the server's Retry-After
        assert len(fake.rows(ws.sequences)) == 6

        fake.reset_counts()
        clock.time += 1.0  # the next run starts a moment later, the bucket full again
        paced = ws.store(sleep=clock.sleep, clock=clock.now, rate_per_s=3.0)
        paced.upsert_signups(campaign, [signup_event(n) for n in range(6, 12)])
        assert fake.statuses[429] == 0 and fake.statuses[200] == fake.total


def test_server_errors_on_updates_are_retried_with_backoff(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    store, clock = ready(ws, campaign, timeout_s=0.3)
    fake.inject("500", times=2, route="PATCH /v1/pages/{id}", applied=False)
    fake.inject("timeout", route="PATCH /v1/pages/{id}")
    store.record_sent(campaign, sent(campaign, KEY, 1))
    assert len(clock.sleeps) == 3 and all(0 < s <= 20 for s in clock.sleeps)
    assert clock.sleeps[1] > clock.sleeps[0] * 0.9  # growing backoff (with jitter)
    assert fake.rows(ws.sequences)[0]["Email 1 Sent"]


def test_when_retries_run_out_the_message_is_not_marked_sent(
    fake: FakeNotion, ws: Workspace, campaign: Campaign
) -> None:
    store, _ = ready(ws, campaign, max_attempts=4)
    fake.inject("500", times=4, route="PATCH /v1/pages/{id}", applied=False)
    with pytest.raises(NotionCallError) as caught:
        store.record_sent(campaign, sent(campaign, KEY, 1))
    assert caught.value.attempts == 4 and caught.value.status == 500
    assert fake.rows(ws.sequences)[0]["Email 1 Sent"] is None
    store.record_sent(campaign, sent(campaign, KEY, 1))  # the next run finishes it
    assert fake.rows(ws.sequences)[0]["Email 1 Sent"]


def test_validation_errors_are_not_retried(fake: FakeNotion, ws: Workspace) -> None:
    clock = VirtualClock()
    api = NotionApi(fake.token, fake.base_url, rate_per_s=float("inf"), sleep=clock.sleep)
    page = fake.add_row(ws.sequences, {"Email": "x@x.com"})
    fake.reset_counts()
    with pytest.raises(NotionCallError) as caught:
        api.update_page(page, {"Emial": {"email": "y@x.com"}})
    assert caught.value.attempts == 1 and "is not a property that exists" in str(caught.value)
    assert fake.total == 1 and clock.sleeps == []


def test_an_unreachable_server_is_retried_then_reported() -> None:
    with FakeNotion() as gone:
        url = gone.base_url  # a port nobody listens on once the fake has stopped
    clock = VirtualClock()
    api = NotionApi("t", url, rate_per_s=float("inf"), max_attempts=3, sleep=clock.sleep)
    with pytest.raises(NotionCallError) as caught:
        api.retrieve_database("db")
    assert caught.value.attempts == 3 and len(clock.sleeps) == 2


@pytest.mark.parametrize(
    ("kind", "applied", "creates"),
    [("timeout", True, 1), ("500", True, 1), ("500", False, 2), ("429", False, 2)],
)
def test_a_failed_create_is_looked_up_before_it_is_sent_again(
    fake: FakeNotion,
    ws: Workspace,
    campaign: Campaign,
    kind: str,
    applied: bool,
    creates: int,
) -> None:
    store, _ = store_with_clock(ws, timeout_s=0.3)
    store.prepare(campaign)
    fake.inject(kind, route="POST /v1/pages", applied=applied)
    report = store.upsert_signups(campaign, [signup_event(1)])
    assert report.created == [KEY]
    assert len(fake.rows(ws.sequences)) == 1
    assert fake.counts["POST /v1/pages"] == creates
    assert store.api.recovered == (1 if applied else 0)


@pytest.mark.parametrize("attempts", [6, 2], ids=["6-attempts", "2-attempts"])
def test_with_20_percent_of_calls_failing_every_email_goes_out_once(
    ws: Workspace, fake: FakeNotion, unpaced_campaign: Campaign, attempts: int
) -> None:
    """With 2 attempts a call fails for good 4% of the time, so the give-up path is taken."""
    campaign = unpaced_campaign
    people = 20
    for n in range(0, people, 2):
        add_contact(fake, ws, f"person{n}@example.com")
    fake.set_faults(
        FaultPlan(rate=0.2, kinds=("429", "500", "529", "timeout"), seed=11, slow_s=1.0)
    )

    # Signups: a failed run is simply run again (a new run is a new store).
    events = [signup_event(n) for n in range(people)]
    for _ in range(10):
        try:
            run_store = store_with_clock(ws, timeout_s=0.25, max_attempts=attempts)[0]
            run_store.upsert_signups(campaign, events)
            break
        except NotionStoreError:
            continue
    else:
        pytest.fail("signups never finished")

    # Sends: the provider deduplicates by idempotency key, like Resend.
    provider: Counter[str] = Counter()
    recorded: Counter[str] = Counter()
    left_due = 0
    now = BASE_TIME + timedelta(days=30)
    for _ in range(30):
        store, _clock = store_with_clock(ws, timeout_s=0.25, max_attempts=attempts)
        try:
            due = compute_due(store.load_sequences(campaign), campaign, now)
        except NotionCallError:
            continue  # the run fails before sending anything; the next one catches up
        if due.empty:
            break
        for row in due.itertuples():
            assert row.action == SEND
            provider[row.message_id] += 1
            record = sent(campaign, row.contact_key, row.step_number)
            try:
                store.record_sent(campaign, record)
            except NotionCallError:
                left_due += 1  # not marked sent: due again next run, same key
                continue
            recorded[row.message_id] += 1
    else:
        pytest.fail("the sends never finished")

    expected = {
        f"{campaign.slug}/person{n}@example.com/email-{s}"
        for n in range(people)
        for s in range(1, 8)
    }
    assert set(recorded) == expected and set(recorded.values()) == {1}
    assert set(provider) == expected  # every message reached the provider...
    assert sum(provider.values()) - len(expected) == left_due  # ...re-sent only when unrecorded
    rows = fake.rows(ws.sequences)
    assert len(rows) == people  # no duplicate sequence pages
    assert all(r["Sequence Completed"] for r in rows)
    assert all(r[f"Email {s} Sent"] for r in rows for s in range(1, 8))
    contacts = fake.rows(ws.contacts)
    assert all(c["Christmas Campaign Status"] == "Nurture Sequence" for c in contacts)
    injected = fake.faults_injected
    print(f"faults {dict(injected)} of {fake.total} requests; {left_due} sends left due")
    assert all(injected[kind] > 0 for kind in ("429", "500", "529", "timeout"))
    assert sum(injected.values()) > 0.12 * fake.total
