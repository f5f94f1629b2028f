"""After a Resend incident: only a batch whose fate is unknown is replayed exactly as it
was; a batch Resend definitely refused is planned again under the rules.

The real send path (`deliver` with the gate of `services.planning`, the send journal, the
ResendSender) against the fake Resend API, on the SQL store. Two batches of two: Resend
refuses the first with a 429 whose Retry-After is too long to wait for, and takes the
second but its answer is lost (a timeout). Meanwhile one recipient of each unsubscribes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from xmas_pipeline.adapters.resend_sender import ResendSender
from xmas_pipeline.adapters.sql.journal import SqlSendJournal
from xmas_pipeline.adapters.sql.send_switch import SqlSendSwitch
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.context import message_context
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.services.planning import due_plan, send_gate
from xmas_pipeline.services.sending import DeliveryReport, Envelope, deliver
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, FakeResendAPI, running_fake
from xmas_pipeline_tests.support.store_contract import event

PEOPLE = ["a@x.com", "b@x.com", "c@x.com", "d@x.com"]  # batches [a, b] and [c, d]


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    return SqlStore(f"sqlite:///{tmp_path / 'state.db'}")


def send_run(
    store: SqlStore, sender: ResendSender, campaign: Campaign, holder: str
) -> DeliveryReport:
    """One send run as `deliveries` makes it: plan, gate, journal; earlier runs ended."""
    plan, _ = due_plan(store, campaign, datetime.now(UTC))
    return deliver(
        store=store,
        sender=sender,
        renderer=Renderer(load_template_dir()),
        campaign=campaign,
        plan=plan,
        context_for=lambda row: message_context(row, campaign),
        envelope=Envelope(from_email="BusOS <hello@example.com>"),
        batch_size=2,
        gate=send_gate(store, campaign, SqlSendSwitch(store.url, engine=store.engine)),
        journal=SqlSendJournal(store.url, engine=store.engine, holder=holder),
    )


def sender_for(fake: FakeResendAPI) -> ResendSender:
    # One attempt per request, a short timeout: the incident settles each batch's fate at
    # once (a lost answer, or a refusal to wait an hour for).
    return ResendSender(
        DEFAULT_API_KEY, base_url=fake.base_url, rate_per_s=1000, timeout_s=0.5, max_attempts=1
    )


def received(fake: FakeResendAPI, step: str = "email-1") -> dict[str, int]:
    """How many times each person was sent `step` (every step is due: one per run)."""
    counts: dict[str, int] = dict.fromkeys(PEOPLE, 0)
    for email in fake.accepted:
        if email.tags.get("step") == step:
            for to in email.to:
                counts[to.lower()] += 1
    return counts


def nothing_twice(fake: FakeResendAPI) -> bool:
    seen = [(to.lower(), e.tags.get("step")) for e in fake.accepted for to in e.to]
    return len(seen) == len(set(seen))


def test_the_refused_batch_is_replanned_and_the_lost_answer_replayed(
    store: SqlStore, testing_campaign: Campaign
) -> None:
    campaign = testing_campaign
    store.upsert_signups(campaign, [event(p) for p in PEOPLE])
    with running_fake(rate_limit=None) as fake:
        sender = sender_for(fake)
        # The first batch [a, b]: 429 with an hour's Retry-After (nothing sent).
        fake.script(429, "rate_limit_exceeded", "Too many requests", {"retry-after": "3600"})
        fake.hold_next(1)  # the second batch [c, d]: taken by Resend, the answer lost
        first = send_run(store, sender, campaign, holder="run-1")
        assert not first.sent and len(first.retry) == 4
        fake.release()
        # During the incident, a recipient of each batch unsubscribes.
        for person in ("b@x.com", "c@x.com"):
            store.set_contact_flags(campaign, person, unsubscribed=True)

        second = send_run(store, sender, campaign, holder="run-2")
        third = send_run(store, sender, campaign, holder="run-3")
        sender.close()

    # Nobody is sent anything twice.
    assert nothing_twice(fake)
    counts = received(fake)
    # The refused batch is planned again under the rules: its unsubscribed recipient gets
    # nothing, the other goes.
    assert counts["b@x.com"] == 0 and counts["a@x.com"] == 1
    # The batch whose answer was lost is replayed exactly (Resend recognises it): both had
    # it from the first attempt, before c unsubscribed, and nothing more goes to c.
    assert counts["c@x.com"] == 1 and counts["d@x.com"] == 1
    assert received(fake, "email-2")["c@x.com"] == 0
    assert second.replayed == 2 and third.replayed == 0
    skipped = {item["contact_key"]: item["reason"] for item in second.skipped}
    assert skipped == {"b@x.com": "unsubscribed"}
    sent = store.sent_log(campaign, "2000-01-01", "2999-12-31")
    firsts = sent[sent["step_id"] == "email-1"]
    assert sorted(firsts["contact_key"]) == ["a@x.com", "c@x.com", "d@x.com"]


def test_a_batch_whose_fate_is_unknown_goes_again_as_it_was(
    store: SqlStore, testing_campaign: Campaign
) -> None:
    """The window the README states: a batch that may have been taken (here a 5xx, which
    Resend in fact answered before sending) is replayed exactly, so an unsubscribe that
    arrives before the replay does not take its recipient out of it."""
    campaign = testing_campaign
    store.upsert_signups(campaign, [event(p) for p in PEOPLE[:2]])
    with running_fake(rate_limit=None) as fake:
        sender = sender_for(fake)
        fake.script(500, "internal_server_error", "Something went wrong")
        first = send_run(store, sender, campaign, holder="run-1")
        assert len(first.retry) == 2 and not fake.accepted
        store.set_contact_flags(campaign, "b@x.com", unsubscribed=True)
        second = send_run(store, sender, campaign, holder="run-2")
        sender.close()
    assert second.replayed == 2 and nothing_twice(fake)
    assert received(fake) == {"a@x.com": 1, "b@x.com": 1, "c@x.com": 0, "d@x.com": 0}
