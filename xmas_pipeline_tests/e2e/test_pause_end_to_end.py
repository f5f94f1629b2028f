"""Pausing pauses, for real: `xmas-pipeline dev` in testing mode (a send every minute),
sending paused from the launchpad (the default campaign's `pause_sending`), signups posted
to the intake. Once
they are in the store and the daemon has ticked the send schedule since (email 1 due for
everyone on a real tick; the welcome sensor ticks every 5 s), nothing has been sent;
resumed (`resume_sending`), everything due goes, each message once. The waits poll the
daemon's own tick history, so the test takes as long as the ticks, not fixed minutes.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import httpx
import pytest

from xmas_pipeline.adapters.sql.send_switch import SqlSendSwitch
from xmas_pipeline.core.campaign import load_campaign
from xmas_pipeline_tests.support.dagster_dev import running_dev, wait_for
from xmas_pipeline_tests.support.pipeline_env import default_name, signup

pytestmark = pytest.mark.slow

PEOPLE = ["ann@x.com", "bob@x.com", "cy@x.com"]
SEND_INTERVAL_S = 60  # testing mode's send cron: every minute


def sent_steps(outbox: Path) -> collections.Counter[tuple[str, str]]:
    """(person, step) -> how many emails of that step the person got."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    if outbox.exists():
        for path in outbox.glob("*.eml"):
            _, person, step = path.name.removesuffix(".eml").split("__")[:3]
            counts[(person, step)] += 1
    return counts


@pytest.mark.timeout(900)
def test_paused_sends_nothing_and_resumed_sends_everything_due_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_dev(home, XMAS_TESTING_MODE="true") as dev:
        switch = SqlSendSwitch(f"sqlite:///{home / 'state.db'}")
        campaign = load_campaign(testing_mode=True)
        run = dev.launch(
            default_name("pause_sending"),
            {
                "ops": {
                    default_name("send_switch"): {
                        "config": {"pause": True, "reason": "copy review"}
                    }
                }
            },
        )
        assert wait_for(lambda: switch.state(campaign).paused, timeout=120), dev.log_tail()
        # The switch is committed before the run ends (its check and events come after).
        assert wait_for(lambda: dev.run_status(run) == "SUCCESS", timeout=120), dev.log_tail()

        for person in PEOPLE:
            answer = httpx.post(
                f"{dev.intake_url}/webhook/christmas-signup", json=signup(person, red=2)
            )
            assert answer.status_code == 202, answer.text
        outbox = home / "outbox"
        # Ingestion is a run of its own (on a busy machine starting one takes a while): the
        # daemon's run list says when it is done.
        ingested = wait_for(lambda: "ingest_signups: SUCCESS" in dev.runs(), 300)
        assert ingested, f"{dev.runs()}\n{dev.log_tail()}"
        ingested_at = time.time()

        def ticked() -> bool:
            assert not sent_steps(outbox), f"sent while paused: {sent_steps(outbox)}"
            return len(dev.schedule_ticks(default_name("send_schedule"), after=ingested_at)) >= 1

        # A real tick of the schedule with email 1 due for everyone (the welcome sensor
        # ticks every 5 s meanwhile): nothing goes.
        assert wait_for(ticked, timeout=3 * SEND_INTERVAL_S, interval=2), dev.log_tail()
        assert not sent_steps(outbox)

        dev.launch(
            default_name("resume_sending"),
            {"ops": {default_name("send_switch"): {"config": {"pause": False}}}},
        )
        # By now emails 1-4 are due for everyone; the catch-up sends one per person per run.
        wanted = {(p, f"email-{n}") for p in PEOPLE for n in (1, 2)}
        arrived = wait_for(lambda: wanted <= set(sent_steps(outbox)), timeout=300, interval=3)
        assert arrived, f"{sent_steps(outbox)}\n{dev.log_tail()}"
    counts = sent_steps(outbox)
    assert max(counts.values()) == 1, counts
    # One email per person per run: email-1 went first to everyone, never two at once.
    assert {p for p, step in counts if step == "email-1"} == set(PEOPLE)
