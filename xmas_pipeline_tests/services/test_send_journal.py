"""Exactly once with batches: the send journal replays a chunk whose fate is unknown, and
its claims keep two overlapping send runs from sending one message twice.

Runs the real send path (`deliver` -> ResendSender -> the fake Resend API) on the SQL
store. A batch has one idempotency key for the whole chunk, so a chunk that was accepted
but not recorded must be sent again as the same chunk, never re-chunked; and a message
must never be in two different batches.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from xmas_pipeline.adapters.resend_sender import ResendSender
from xmas_pipeline.adapters.sql.journal import SqlSendJournal
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.context import nurture_context
from xmas_pipeline.core.due import compute_due
from xmas_pipeline.core.ports import (
    ALREADY_SENT,
    IN_FLIGHT_ELSEWHERE,
    OutgoingEmail,
    SentRecord,
)
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.core.send_plan import with_profile as plan_with_fields
from xmas_pipeline.services.sending import Envelope, deliver
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, running_fake
from xmas_pipeline_tests.support.store_contract import event


class FlakyStore(SqlStore):
    """An SQL store whose status writes fail while `down` is set (a crash's effect)."""

    down = False

    def record_sent(self, campaign: Campaign, record: SentRecord) -> None:
        if self.down:
            raise ConnectionError("store unreachable")
        super().record_sent(campaign, record)


def run_once(store: SqlStore, sender: ResendSender, campaign: Campaign, journal: SqlSendJournal):  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    sequences = store.load_sequences(campaign)
    plan = plan_with_fields(compute_due(sequences, campaign, now), sequences)
    return deliver(
        store=store,
        sender=sender,
        renderer=Renderer(load_template_dir()),
        campaign=campaign,
        plan=plan,
        context_for=lambda row: nurture_context(row, campaign),
        envelope=Envelope(from_email="BusOS <hello@example.com>"),
        journal=journal,
    )


@pytest.fixture
def store(tmp_path: Path) -> FlakyStore:
    return FlakyStore(f"sqlite:///{tmp_path / 'state.db'}")


def test_accepted_but_unrecorded_batch_is_replayed_not_resent(
    store: FlakyStore, campaign: Campaign, tmp_path: Path
) -> None:
    journal = SqlSendJournal(store.url, engine=store.engine, holder="run-1")
    store.upsert_signups(campaign, [event(f"p{i}@x.com") for i in range(3)])
    with running_fake(rate_limit=None) as fake:
        sender = ResendSender(DEFAULT_API_KEY, base_url=fake.base_url, rate_per_s=1000)
        store.down = True
        first = run_once(store, sender, campaign, journal)
        assert len(first.retry) == 3 and not first.sent  # accepted, not recorded
        assert len(journal.pending(campaign)) == 1
        assert len(fake.accepted) == 3

        # Meanwhile a fourth person signed up: the next run's due list differs, which
        # would give a different batch (and key) if the journal did not replay the first.
        store.down = False
        store.upsert_signups(campaign, [event("p3@x.com")])
        second = run_once(store, sender, campaign, journal)
        assert len(second.sent) == 4
        assert journal.pending(campaign) == []
        sender.close()
    assert sorted(fake.deliveries().values()) == [1, 1, 1, 1]
    assert len(store.sent_log(campaign, "2025-01-01", "2099-01-01")) == 4


def test_a_timed_out_batch_the_provider_took_is_not_sent_twice(
    store: FlakyStore, campaign: Campaign, tmp_path: Path
) -> None:
    journal = SqlSendJournal(store.url, engine=store.engine, holder="run-1")
    store.upsert_signups(campaign, [event(f"q{i}@x.com") for i in range(2)])
    with running_fake(rate_limit=None) as fake:
        sender = ResendSender(
            DEFAULT_API_KEY, base_url=fake.base_url, rate_per_s=1000, timeout_s=0.5, max_attempts=1
        )
        fake.hold_next(1)  # Resend takes the batch, the reply never comes in time
        first = run_once(store, sender, campaign, journal)
        assert not first.sent and len(first.retry) == 2
        fake.release()
        assert len(journal.pending(campaign)) == 1

        store.upsert_signups(campaign, [event("q2@x.com")])
        second = run_once(store, sender, campaign, journal)
        assert len(second.sent) == 3
        sender.close()
    assert sorted(fake.deliveries().values()) == [1, 1, 1]


def _mail(key: str) -> OutgoingEmail:
    return OutgoingEmail(
        message_id=key.split("/resend")[0],
        idempotency_key=key,
        to="a@x.com",
        from_email="BusOS <hello@example.com>",
        subject="Hi",
        html="<p>Hi</p>",
        text="Hi",
        tags={"step": "email-1"},
        headers={"List-Unsubscribe": "<https://x/u>"},
    )


def _row(message_id: str) -> dict[str, object]:
    return {
        "message_id": message_id,
        "contact_key": "a@x.com",
        "email": "a@x.com",
        "kind": "nurture",
        "step_id": "email-1",
        "step_number": 1,
        "segment": "URGENT",
        "due_at": datetime(2025, 12, 1, tzinfo=UTC) + timedelta(minutes=1),
        "due_day": "2025-12-01",
        "booking_uid": None,
    }


def test_journal_round_trips_rows_and_emails(sql_store: SqlStore, campaign: Campaign) -> None:
    journal = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder="run-a")
    message = "christmas-2025/a@x.com/email-1"
    claim = journal.begin(campaign, [(_row(message), _mail(message))])
    assert claim.entry is not None and claim.left_out == []
    [entry] = journal.pending(campaign)
    [(found_row, found_mail)] = entry.chunk
    assert entry.entry_id == claim.entry.entry_id and entry.holder == "run-a"
    assert found_mail == _mail(message)
    assert found_row["due_at"] == _row(message)["due_at"] and found_row["booking_uid"] == ""
    journal.finish(entry)
    assert journal.pending(campaign) == []


def test_claims_keep_a_message_in_one_open_batch(sql_store: SqlStore, campaign: Campaign) -> None:
    first = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder="run-a")
    second = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder="run-b")
    ids = [f"christmas-2025/p{i}@x.com/email-1" for i in range(4)]
    a = first.begin(campaign, [(_row(m), _mail(m)) for m in ids[:3]])
    # Planned at another moment, cut differently: overlaps the first batch on two.
    b = second.begin(campaign, [(_row(m), _mail(m)) for m in ids[1:]])
    assert a.entry is not None and b.entry is not None
    assert [e.idempotency_key for _, e in b.entry.chunk] == [ids[3]]
    assert [(e.idempotency_key, why) for _, e, why in b.left_out] == [
        (ids[1], IN_FLIGHT_ELSEWHERE),
        (ids[2], IN_FLIGHT_ELSEWHERE),
    ]
    # The first batch settles: its messages are recorded sent, its claims freed. A third
    # run still planning with an old list must not take them again.
    for message in ids[:3]:
        sql_store.record_sent(campaign, _sent(message))
    first.finish(a.entry)
    third = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder="run-c")
    c = third.begin(campaign, [(_row(m), _mail(m)) for m in ids[:3]])
    assert c.entry is None
    assert {why for _, _, why in c.left_out} == {ALREADY_SENT}
    # A forced re-send has its own key: it is not "already sent".
    forced = f"{ids[0]}/resend-abc"
    d = third.begin(campaign, [(_row(ids[0]), _mail(forced))])
    assert d.entry is not None and d.left_out == []


def _sent(message_id: str) -> SentRecord:
    key = message_id.split("/")[1]
    return SentRecord(
        message_id=message_id,
        idempotency_key=message_id,
        contact_key=key,
        kind="nurture",
        step_id="email-1",
        step_number=1,
        due_at=datetime(2025, 12, 1, tzinfo=UTC),
        sent_at=datetime(2025, 12, 1, 0, 1, tzinfo=UTC),
        provider_id=f"prov-{key}",
    )


def test_two_overlapping_send_runs_send_each_message_once(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    """300 due messages, two send runs at once with no pool between them, planned at
    different moments (so their batches are cut differently): each message accepted once."""
    people = [f"o{i:03d}@x.com" for i in range(300)]
    sql_store.upsert_signups(campaign, [event(p) for p in people])
    now = datetime.now(UTC)
    sequences = sql_store.load_sequences(campaign)
    early = plan_with_fields(compute_due(sequences, campaign, now), sequences)
    # The second run planned later and in another order: its batches of 100 differ.
    late = early.sample(frac=1.0, random_state=7).reset_index(drop=True)
    with running_fake(rate_limit=None, latency_s=0.05) as fake:
        barrier = threading.Barrier(2)
        reports = {}

        def run(name: str, plan: pd.DataFrame) -> None:
            sender = ResendSender(DEFAULT_API_KEY, base_url=fake.base_url, rate_per_s=1000)
            journal = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder=name)
            barrier.wait()
            reports[name] = deliver(
                store=sql_store,
                sender=sender,
                renderer=Renderer(load_template_dir()),
                campaign=campaign,
                plan=plan,
                context_for=lambda row: nurture_context(row, campaign),
                envelope=Envelope(from_email="BusOS <hello@example.com>"),
                journal=journal,
                batch_size=37,
                # Both runs are going: neither may take the other's open batch for a
                # crash's leftover.
                holder_alive=lambda holder: holder in ("run-a", "run-b"),
            )
            sender.close()

        threads = [
            threading.Thread(target=run, args=("run-a", early)),
            threading.Thread(target=run, args=("run-b", late)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        accepted = fake.deliveries()
    sent = len(reports["run-a"].sent) + len(reports["run-b"].sent)
    elsewhere = len(reports["run-a"].elsewhere) + len(reports["run-b"].elsewhere)
    assert sent == 300 and sent + elsewhere == 600
    assert len(accepted) == 300 and set(accepted.values()) == {1}
    assert len(sql_store.sent_log(campaign, "2000-01-01", "2999-12-31")) == 300


def test_an_open_batch_is_left_to_its_running_holder_and_replayed_once_it_ended(
    sql_store: SqlStore, campaign: Campaign
) -> None:
    """run-a wrote a batch and is still sending it: run-b leaves it alone (its messages
    are in flight elsewhere). Once run-a has ended without settling it, the next run
    replays it under the same key, and the provider takes each message once."""
    sql_store.upsert_signups(campaign, [event(f"h{i}@x.com") for i in range(3)])
    now = datetime.now(UTC)
    sequences = sql_store.load_sequences(campaign)
    plan = plan_with_fields(compute_due(sequences, campaign, now), sequences)
    live = {"run-a"}
    with running_fake(rate_limit=None) as fake:
        sender = ResendSender(DEFAULT_API_KEY, base_url=fake.base_url, rate_per_s=1000)

        def run(holder: str):  # type: ignore[no-untyped-def]
            return deliver(
                store=sql_store,
                sender=sender,
                renderer=Renderer(load_template_dir()),
                campaign=campaign,
                plan=plan,
                context_for=lambda row: nurture_context(row, campaign),
                envelope=Envelope(from_email="BusOS <hello@example.com>"),
                journal=SqlSendJournal(sql_store.url, engine=sql_store.engine, holder=holder),
                holder_alive=lambda h: h in live,
            )

        # run-a's batch, as run-a left it mid-send: recorded, handed to the provider.
        a = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder="run-a")
        rows = plan.to_dict("records")
        emails = [(row, replace(_mail(row["message_id"]), to=row["email"])) for row in rows]
        claim = a.begin(campaign, emails)
        assert claim.entry is not None
        sender.send([email for _, email in claim.entry.chunk])

        b = run("run-b")
        assert not b.sent and len(b.elsewhere) == 3
        assert {r["reason"] for r in b.elsewhere} == {IN_FLIGHT_ELSEWHERE}
        [still_open] = a.pending(campaign)
        assert still_open.holder == "run-a"

        live.clear()  # run-a died; the watchdog marked it failed
        c = run("run-c")
        assert len(c.sent) == 3 and not c.elsewhere
        assert a.pending(campaign) == []
        sender.close()
    assert sorted(fake.deliveries().values()) == [1, 1, 1]
    assert len(sql_store.sent_log(campaign, "2000-01-01", "2999-12-31")) == 3


def test_only_one_run_adopts_an_abandoned_batch(sql_store: SqlStore, campaign: Campaign) -> None:
    dead = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder="run-dead")
    message = "christmas-2025/a@x.com/email-1"
    claim = dead.begin(campaign, [(_row(message), _mail(message))])
    assert claim.entry is not None
    [entry] = dead.pending(campaign)
    first = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder="run-1")
    second = SqlSendJournal(sql_store.url, engine=sql_store.engine, holder="run-2")
    adopted = first.adopt(entry)
    assert adopted is not None and adopted.holder == "run-1"
    assert second.adopt(entry) is None  # it saw the entry under its old holder: too late
    [now_held] = second.pending(campaign)
    assert now_held.holder == "run-1" and now_held.entry_id == entry.entry_id
    first.finish(adopted)
    assert second.adopt(now_held) is None  # settled
