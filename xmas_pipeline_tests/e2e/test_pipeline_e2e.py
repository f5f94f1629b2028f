"""End to end through a real Dagster instance: inbox files -> sequences -> outbox.

Time travel: a signup file's modification time is its arrival time, so a file written
"10 minutes ago" starts a sequence whose every testing-mode step is already due.
"""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest

from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    check_results,
    make_env,
    materializations,
    signup,
    today,
    unpaced_campaign_file,
)

PEOPLE = [
    signup("crit@x.com", red=3, first_name="<script>alert(1)</script>"),
    signup("urg@x.com", red=1, first_name="Tom & Jerry", business_name='"Quotes" Ltd'),
    signup("opt@x.com", red=0, orange=1, first_name="Zoë"),
]


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true")


def read_eml(env: PipelineEnv, name: str) -> email.message.EmailMessage:
    return email.message_from_bytes((env.outbox / name).read_bytes(), policy=policy.default)


def test_three_signups_get_segmented_welcomes_then_the_whole_sequence(env: PipelineEnv) -> None:
    for person in PEOPLE:
        env.drop_signup(person)
    with in_memory_instance() as instance:
        ingest = env.ingest(today(), instance)
        assert ingest.success
        assert materializations(ingest, "email_sequences")[0]["new sequences"] == 3

        first = env.send(today(), instance, catch_up=True)
        assert first.success
        assert check_results(first)["every_template_renders"] is True
        assert env.outbox_files() == [
            "christmas-2025__crit@x.com__email-1.eml",
            "christmas-2025__opt@x.com__email-1.eml",
            "christmas-2025__urg@x.com__email-1.eml",
        ]
        segments = {}
        for name in env.outbox_files():
            message = read_eml(env, name)
            html = message.get_body(("html",)).get_content()
            assert "{{" not in html and "{%" not in html
            segments[message["To"]] = message["X-Tag-Segment"]
            assert message["X-Tag-Step"] == "email-1"
            assert message["X-Tag-Campaign"] == "christmas-2025"
        assert segments == {
            "crit@x.com": "CRITICAL",
            "urg@x.com": "URGENT",
            "opt@x.com": "OPTIMIZE",
        }
        crit = (env.outbox / "christmas-2025__crit@x.com__email-1.html").read_text()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in crit and "<script>" not in crit
        urg = (env.outbox / "christmas-2025__urg@x.com__email-1.html").read_text()
        assert "Tom &amp; Jerry" in urg

        # Nothing else is due yet (email 2 comes a minute after signup).
        again = env.send(today(), instance, catch_up=True)
        assert materializations(again, "deliveries")[0]["sent"] == 0
        assert len(env.outbox_files()) == 3


def test_catch_up_sends_one_step_per_run_until_complete(env: PipelineEnv) -> None:
    for person in PEOPLE:
        env.drop_signup(person, age=timedelta(minutes=10))
    with in_memory_instance() as instance:
        env.ingest(today(), instance)
        for step in range(1, 8):
            result = env.send(today(), instance, catch_up=True)
            meta = materializations(result, "deliveries")[0]
            assert meta["sent"] == 3, f"run {step}"
            assert meta["sent by step"] == {f"email-{step}": 3}
        # Everything sent: more runs, a re-materialized partition and a re-delivered
        # signup send nothing more.
        env.drop_signup(PEOPLE[0])
        assert env.ingest(today(), instance).success
        for _ in range(2):
            assert (
                materializations(env.send(today(), instance, catch_up=True), "deliveries")[0][
                    "sent"
                ]
                == 0
            )
    files = env.outbox_files()
    assert len(files) == 21 and len(set(files)) == 21
    sequences = env.store().load_sequences(env.campaign)
    assert sequences["completed"].all()
    log = env.store().sent_log(env.campaign, "2025-11-01", "2099-01-01")
    assert len(log) == 21 and log["message_id"].is_unique


def test_same_signup_twice_in_one_day_gives_one_sequence(env: PipelineEnv) -> None:
    env.drop_signup(PEOPLE[1])
    env.drop_signup(PEOPLE[1])
    with in_memory_instance() as instance:
        result = env.ingest(today(), instance)
        meta = materializations(result, "email_sequences")[0]
        assert meta["new sequences"] == 1 and meta["unchanged"] == 1
        env.send(today(), instance, catch_up=True)
        env.send(today(), instance, catch_up=True)
    assert env.outbox_files() == ["christmas-2025__urg@x.com__email-1.eml"]


def test_crash_between_send_and_status_heals_without_a_duplicate(env: PipelineEnv) -> None:
    """The sender accepted, the status write never happened: the next run re-sends under
    the same key, and the outbox (like Resend) drops the duplicate."""
    env.drop_signup(PEOPLE[2])
    with in_memory_instance() as instance:
        env.ingest(today(), instance)
        env.send(today(), instance, catch_up=True)
        store = env.store()
        with store.engine.begin() as conn:
            # The status write lost, email already out: the message's row, and the move of
            # the sequence's next due time written in the same transaction.
            conn.exec_driver_sql("DELETE FROM messages")
            conn.exec_driver_sql("UPDATE sequences SET next_due_at = signup_at")
        eml = env.outbox / "christmas-2025__opt@x.com__email-1.eml"
        before = eml.stat().st_mtime_ns
        result = env.send(today(), instance, catch_up=True)
        assert materializations(result, "deliveries")[0]["sent"] == 1
    assert eml.stat().st_mtime_ns == before  # not written twice
    assert env.outbox_files() == ["christmas-2025__opt@x.com__email-1.eml"]
    assert len(env.store().sent_log(env.campaign, "2025-11-01", "2099-01-01")) == 1


def test_backfill_semantics_forced_and_unforced(tmp_path: Path) -> None:
    # The real cadence (0h, 24h, 72h, ...), at any hour: without the window and the gap.
    env = make_env(tmp_path / "home", XMAS_CAMPAIGN_FILE=unpaced_campaign_file(tmp_path))
    now = datetime.now(UTC)
    two_days_ago = (now - timedelta(days=2)).strftime("%Y-%m-%d")
    yesterday = (now - timedelta(days=1)).strftime("%Y-%m-%d")
    env.drop_signup(signup("early@x.com", red=2), age=timedelta(days=2, minutes=1))
    env.drop_signup(signup("late@x.com", orange=2))
    with in_memory_instance() as instance:
        # The sensor would ingest each received day; here both files sit in today's
        # folder, with arrival times two days apart.
        env.ingest(today(), instance)
        env.send(today(), instance, catch_up=True)  # early: email-1 (due 2 days ago); late: email-1
        env.send(today(), instance, catch_up=True)  # early: email-2 (due yesterday)
        assert set(env.outbox_files()) == {
            "christmas-2025__early@x.com__email-1.eml",
            "christmas-2025__early@x.com__email-2.eml",
            "christmas-2025__late@x.com__email-1.eml",
        }

        # Unforced backfill of a fully sent day: nothing missing, nothing sent.
        unforced = env.send(two_days_ago, instance)
        assert materializations(unforced, "deliveries")[0]["sent"] == 0

        # Forced backfill of that one day: exactly that day's message, under a fresh key.
        forced = env.send(two_days_ago, instance, force=True)
        meta = materializations(forced, "deliveries")[0]
        assert meta["sent"] == 1 and meta["forced"] is True
        resent = [f for f in env.outbox_files() if "resend-" in f]
        assert len(resent) == 1 and resent[0].startswith(
            "christmas-2025__early@x.com__email-1__resend-"
        )

        # Forced over yesterday: early's email-2 only.
        forced2 = env.send(yesterday, instance, force=True)
        assert materializations(forced2, "deliveries")[0]["sent by step"] == {"email-2": 1}

        # A paused contact is not re-sent to, forced or not.
        env.store().set_flags(env.campaign, "early@x.com", paused=True)
        paused = env.send(two_days_ago, instance, force=True)
        assert materializations(paused, "deliveries")[0]["sent"] == 0
    log = env.store().sent_log(env.campaign, "2025-11-01", "2099-01-01")
    assert log["forced"].sum() == 2 and len(log) == 5


def test_deliveries_on_its_own_works_from_the_current_state(env: PipelineEnv) -> None:
    """Materializing `deliveries` alone (the asset's own dialog, not the job) must not act
    on the due list stored by an earlier run."""
    env.drop_signup(PEOPLE[0])
    with in_memory_instance() as instance:
        env.ingest(today(), instance)
        env.send(today(), instance, catch_up=True)
        env.drop_signup(PEOPLE[1])
        env.ingest(today(), instance)
        job = env.defs.resolve_job_def(env.name("send_due_emails"))
        alone = job.execute_in_process(
            partition_key=today(),
            instance=instance,
            asset_selection=[env.key("deliveries")],
            run_config={"ops": {env.name("deliveries"): {"config": {"catch_up": True}}}},
            raise_on_error=False,
        )
        assert alone.success
        assert materializations(alone, "deliveries")[0]["sent"] == 1
    assert env.outbox_files() == [
        "christmas-2025__crit@x.com__email-1.eml",
        "christmas-2025__urg@x.com__email-1.eml",
    ]


def test_deliveries_alone_on_a_fresh_instance_sends_what_is_due(env: PipelineEnv) -> None:
    """No send run ever ran on this instance (no stored plan, no stored templates): the
    asset's own Materialize button, through the implicit asset job, still sends."""
    env.drop_signup(PEOPLE[0])
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
    with in_memory_instance() as fresh:
        job = env.defs.get_implicit_global_asset_job_def()
        alone = job.execute_in_process(
            partition_key=today(),
            instance=fresh,
            asset_selection=[env.key("deliveries")],
            run_config={"ops": {env.name("deliveries"): {"config": {"catch_up": True}}}},
            raise_on_error=False,
        )
        assert alone.success
        assert materializations(alone, "deliveries")[0]["sent"] == 1
    assert env.outbox_files() == ["christmas-2025__crit@x.com__email-1.eml"]
