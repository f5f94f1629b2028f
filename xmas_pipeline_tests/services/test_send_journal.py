"""Exactly once with batches: the send journal replays a chunk whose fate is unknown.

Runs the real send path (`deliver` -> ResendSender -> the fake Resend API) on the SQL
store. A batch has one idempotency key for the whole chunk, so a chunk that was accepted
but not recorded must be sent again as the same chunk, never re-chunked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xmas_pipeline.adapters.resend_sender import ResendSender
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.context import nurture_context
from xmas_pipeline.core.due import compute_due
from xmas_pipeline.core.ports import SentRecord
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.core.send_plan import with_profile as plan_with_fields
from xmas_pipeline.services.send_journal import SendJournal
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


def run_once(store: SqlStore, sender: ResendSender, campaign: Campaign, journal: SendJournal):  # type: ignore[no-untyped-def]
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
    journal = SendJournal(tmp_path / "journal")
    store.upsert_signups(campaign, [event(f"p{i}@x.com") for i in range(3)])
    with running_fake(rate_limit=None) as fake:
        sender = ResendSender(DEFAULT_API_KEY, base_url=fake.base_url, rate_per_s=1000)
        store.down = True
        first = run_once(store, sender, campaign, journal)
        assert len(first.retry) == 3 and not first.sent  # accepted, not recorded
        assert len(journal.pending()) == 1
        assert len(fake.accepted) == 3

        # Meanwhile a fourth person signed up: the next run's due list differs, which
        # would give a different batch (and key) if the journal did not replay the first.
        store.down = False
        store.upsert_signups(campaign, [event("p3@x.com")])
        second = run_once(store, sender, campaign, journal)
        assert len(second.sent) == 4
        assert journal.pending() == []
        sender.close()
    assert sorted(fake.deliveries().values()) == [1, 1, 1, 1]
    assert len(store.sent_log(campaign, "2025-01-01", "2099-01-01")) == 4


def test_a_timed_out_batch_the_provider_took_is_not_sent_twice(
    store: FlakyStore, campaign: Campaign, tmp_path: Path
) -> None:
    journal = SendJournal(tmp_path / "journal")
    store.upsert_signups(campaign, [event(f"q{i}@x.com") for i in range(2)])
    with running_fake(rate_limit=None) as fake:
        sender = ResendSender(
            DEFAULT_API_KEY, base_url=fake.base_url, rate_per_s=1000, timeout_s=0.5, max_attempts=1
        )
        fake.hold_next(1)  # Resend takes the batch, the reply never comes in time
        first = run_once(store, sender, campaign, journal)
        assert not first.sent and len(first.retry) == 2
        fake.release()
        assert len(journal.pending()) == 1

        store.upsert_signups(campaign, [event("q2@x.com")])
        second = run_once(store, sender, campaign, journal)
        assert len(second.sent) == 3
        sender.close()
    assert sorted(fake.deliveries().values()) == [1, 1, 1]


def test_journal_round_trips_rows_and_emails(tmp_path: Path, campaign: Campaign) -> None:
    from xmas_pipeline.core.ports import OutgoingEmail

    journal = SendJournal(tmp_path / "j")
    row = {
        "message_id": "christmas-2025/a@x.com/email-1",
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
    mail = OutgoingEmail(
        message_id=row["message_id"],
        idempotency_key=row["message_id"],
        to="a@x.com",
        from_email="BusOS <hello@example.com>",
        subject="Hi",
        html="<p>Hi</p>",
        text="Hi",
        tags={"step": "email-1"},
        headers={"List-Unsubscribe": "<https://x/u>"},
    )
    path = journal.begin([(row, mail)])
    [(found_path, [(found_row, found_mail)])] = journal.pending()
    assert found_path == path and found_mail == mail
    assert found_row["due_at"] == row["due_at"] and found_row["booking_uid"] == ""
    journal.finish(path)
    assert journal.pending() == []
