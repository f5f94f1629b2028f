"""The one-off `resend_contact` job: chosen steps to one person, now, under fresh keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from xmas_pipeline.core.bookings import parse_webhook
from xmas_pipeline_tests.support.calcom_payloads import webhook_created
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import PipelineEnv, make_env, signup, today


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true")


def resend(
    env: PipelineEnv, instance: dg.DagsterInstance, email: str, steps: list[str]
) -> dg.ExecuteInProcessResult:
    job = env.defs.resolve_job_def(env.name("resend_contact"))
    return job.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={
            "ops": {env.name("resend_to_contact"): {"config": {"email": email, "steps": steps}}}
        },
    )


def failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    [event] = result.get_step_failure_events()
    data = event.step_failure_data.user_failure_data
    assert data is not None, event.step_failure_data.error
    return str(data.description)


def output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


def started(env: PipelineEnv, instance: dg.DagsterInstance, *emails: str, runs: int = 2) -> None:
    """Each contact signed up 10 minutes ago (testing mode: all steps due) and got
    `runs` emails."""
    for email in emails:
        env.drop_signup(signup(email, red=2), age=timedelta(minutes=10))
    assert env.ingest(today(), instance).success
    for _ in range(runs):
        assert env.send(today(), instance, catch_up=True).success


def test_resends_one_step_under_a_fresh_recorded_key(env: PipelineEnv) -> None:
    with in_memory_instance() as instance:
        started(env, instance, "jane@x.com")
        before = set(env.outbox_files())
        result = resend(env, instance, "  Jane@X.com ", ["email-1"])
        assert result.success, result.get_step_failure_events()
        meta = output_metadata(result)
        assert meta["sent"] == 1 and meta["failed"] == 0 and meta["contact"] == "jane@x.com"

        [new] = set(env.outbox_files()) - before
        run = result.run_id
        assert new == f"christmas-2025__jane@x.com__email-1__resend-{run}.eml"
        log = env.store().sent_log(env.campaign, "2025-11-01", "2099-01-01")
        forced = log[log["forced"]]
        assert forced["idempotency_key"].tolist() == [
            f"christmas-2025/jane@x.com/email-1/resend-{run}"
        ]
        assert forced["message_id"].tolist() == ["christmas-2025/jane@x.com/email-1"]

        # The sequence carries on where it was: the next send run sends email-3.
        nxt = env.send(today(), instance, catch_up=True)
        assert nxt.success
        assert "christmas-2025__jane@x.com__email-3.eml" in env.outbox_files()


def test_resends_several_steps_and_again_with_new_keys(env: PipelineEnv) -> None:
    with in_memory_instance() as instance:
        started(env, instance, "sam@x.com")
        first = resend(env, instance, "sam@x.com", ["email-2", "email-1", "email-2"])
        second = resend(env, instance, "sam@x.com", ["email-2"])
        assert first.success and second.success
        assert output_metadata(first)["sent"] == 2
    resent = [f for f in env.outbox_files() if "resend-" in f]
    assert len(resent) == 3
    assert sum("email-2__resend-" in f for f in resent) == 2


REFUSALS = [
    ("nobody@x.com", ["email-1"], "no contact nobody@x.com"),
    ("not an address", ["email-1"], "is not an email address"),
    ("jane@x.com", ["email-9"], "unknown step(s) email-9"),
    ("jane@x.com", ["welcome"], "unknown step(s) welcome"),
    ("jane@x.com", [], "no steps given"),
    ("jane@x.com", ["reminder-1"], "jane@x.com has no active booking"),
    ("gone@x.com", ["email-1"], "gone@x.com has unsubscribed"),
    ("bounced@x.com", ["email-1"], "bounced@x.com's address is marked bounced"),
    ("spam@x.com", ["email-1"], "spam@x.com's address is marked complained"),
]


def test_refuses_what_cannot_or_must_not_be_sent(env: PipelineEnv) -> None:
    with in_memory_instance() as instance:
        people = ("jane@x.com", "gone@x.com", "bounced@x.com", "spam@x.com")
        started(env, instance, *people, runs=1)
        store = env.store()
        store.set_flags(env.campaign, "gone@x.com", unsubscribed=True)
        store.set_flags(env.campaign, "bounced@x.com", delivery_state="bounced")
        store.set_flags(env.campaign, "spam@x.com", delivery_state="complained")
        before = env.outbox_files()
        for email, steps, reason in REFUSALS:
            assert reason in failure(resend(env, instance, email, steps)), (email, steps)
    assert env.outbox_files() == before
    assert not env.store().sent_log(env.campaign, "2025-11-01", "2099-01-01")["forced"].any()


def test_refuses_a_step_not_yet_due(tmp_path: Path) -> None:
    env = make_env(tmp_path / "home")  # the real cadence: email-2 is a day after signup
    with in_memory_instance() as instance:
        started(env, instance, "jane@x.com", runs=1)
        result = resend(env, instance, "jane@x.com", ["email-2"])
        assert "email-2 is not due for jane@x.com until" in failure(result)
    assert env.outbox_files() == ["christmas-2025__jane@x.com__email-1.eml"]


def test_the_job_never_overlaps_a_send_run(env: PipelineEnv) -> None:
    job = env.defs.resolve_job_def(env.name("resend_contact"))
    assert job.tags["xmas/send"] == "1"
    assert "email" in (job.description or "")


def test_resends_a_reminder_for_the_contacts_booking(env: PipelineEnv) -> None:
    now = datetime.now(UTC)
    start = now + timedelta(minutes=4)  # testing mode: reminder 1 fell due 2 minutes ago
    with in_memory_instance() as instance:
        started(env, instance, "jane@x.com", runs=1)
        body = webhook_created("bk-42", start, at=now - timedelta(minutes=1), email="jane@x.com")
        event = parse_webhook(body, received_at=now)
        assert event is not None
        env.store().upsert_booking_events(env.campaign, [event])
        result = resend(env, instance, "jane@x.com", ["reminder-1"])
        assert result.success, result.get_step_failure_events()
        early = resend(env, instance, "jane@x.com", ["reminder-3"])  # due 1 minute before
        assert "reminder-3 is not due for jane@x.com until" in failure(early)
    run = result.run_id
    assert f"christmas-2025__jane@x.com__reminder-1__bk-42__resend-{run}.eml" in env.outbox_files()
    html = env.outbox / f"christmas-2025__jane@x.com__reminder-1__bk-42__resend-{run}.html"
    assert "https://app.cal.com/video/bk-42" in html.read_text()
