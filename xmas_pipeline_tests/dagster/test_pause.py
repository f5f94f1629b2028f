"""The pause switch: one per campaign, read by every send path, visible in the UI.

While paused nothing goes by the schedule, the welcome sensor or a `deliveries`
materialized by hand, and a run under way stops before its next batch; a backfill and
`resend_contact` are explicit requests and still send. Resuming catches up with one email
per person per run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from xmas_pipeline.adapters.outbox import OutboxSender
from xmas_pipeline.adapters.sql.send_switch import SqlSendSwitch
from xmas_pipeline.core.context import message_context
from xmas_pipeline.core.render import Renderer, load_template_dir
from xmas_pipeline.services.planning import due_plan, send_gate
from xmas_pipeline.services.sending import Envelope, deliver
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true")


def switch(
    env: PipelineEnv, instance: dg.DagsterInstance, job: str, reason: str = ""
) -> dg.ExecuteInProcessResult:
    config = {
        "ops": {
            env.name("send_switch"): {"config": {"pause": job == "pause_sending", "reason": reason}}
        }
    }
    return env.defs.resolve_job_def(env.name(job)).execute_in_process(
        instance=instance, run_config=config, raise_on_error=False
    )


def sensor_context(env: PipelineEnv, instance: dg.DagsterInstance, cursor: str | None) -> Any:
    return dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=env.resources("store")
    )


def test_pausing_stops_the_schedule_the_welcome_sensor_and_a_run_by_hand(
    env: PipelineEnv,
) -> None:
    with in_memory_instance() as instance:
        welcome = env.defs.resolve_sensor_def("send_after_signups_sensor")
        first = sensor_context(env, instance, None)
        welcome(first)  # the first look starts its clock

        paused = switch(env, instance, "pause_sending", "Black Friday copy under review")
        assert paused.success
        shown = materializations(paused, "send_switch")[0]
        assert shown["state"] == "paused" and shown["reason"] == "Black Friday copy under review"
        assert shown["since"] and shown["by"].startswith("run ")
        [check] = [
            e.asset_check_evaluation_data
            for e in paused.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        assert not check.passed and "Black Friday copy under review" in (check.description or "")

        env.drop_signup(signup("new@x.com", red=2))
        assert env.ingest(today(), instance).success
        # The welcome sensor sees the new sequence and does not start a send.
        skipped = welcome(sensor_context(env, instance, first.cursor))
        assert isinstance(skipped, dg.SkipReason)
        assert "paused" in (skipped.skip_message or "")
        # The schedule skips, saying why.
        schedule = env.defs.resolve_schedule_def(env.name("send_schedule"))
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime.now(UTC),
            resources=env.resources("store"),
        ) as context:
            tick = schedule.evaluate_tick(context)
        assert not tick.run_requests
        assert "Black Friday copy under review" in (tick.skip_message or "")
        # A send run launched by hand (or by anything else) sends nothing and says why.
        run = env.send(today(), instance, catch_up=True)
        assert run.success and env.outbox_files() == []
        assert "paused" in materializations(run, "deliveries")[0]["sending"]

        resumed = switch(env, instance, "resume_sending")
        assert materializations(resumed, "send_switch")[0]["state"] == "sending"
        again = env.send(today(), instance, catch_up=True)
        assert materializations(again, "deliveries")[0]["sent"] == 1
        assert env.outbox_files() == ["christmas-2025__new@x.com__email-1.eml"]


def test_a_pause_needs_a_reason(env: PipelineEnv) -> None:
    with in_memory_instance() as instance:
        result = switch(env, instance, "pause_sending", "  ")
        assert not result.success
        assert not SqlSendSwitch(env.settings.database_url).state(env.campaign).paused


def test_backfills_and_the_one_off_resend_still_send_while_paused(env: PipelineEnv) -> None:
    with in_memory_instance() as instance:
        dropped = env.drop_signup(signup("jane@x.com", red=2), age=timedelta(minutes=10))
        assert env.ingest(today(), instance).success
        assert switch(env, instance, "pause_sending", "checking the copy").success

        # The backfill's day is the signup's (yesterday in the first ten minutes of a day).
        signed_up = datetime.fromtimestamp(Path(dropped.path).stat().st_mtime, UTC)
        backfill = env.defs.resolve_job_def(env.name("send_due_emails")).execute_in_process(
            partition_key=signed_up.strftime("%Y-%m-%d"),
            instance=instance,
            run_config={"ops": {env.name("deliveries"): {"config": {}}}},
            tags={"dagster/backfill": "bf1"},
        )
        assert materializations(backfill, "deliveries")[0]["sent"] == 1

        resend = env.defs.resolve_job_def(env.name("resend_contact")).execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    env.name("resend_to_contact"): {
                        "config": {"email": "jane@x.com", "steps": ["email-1"]}
                    }
                }
            },
        )
        assert resend.success
        assert len(env.outbox_files()) == 2
    descriptions = {
        name: env.defs.resolve_job_def(env.name(name)).description or ""
        for name in ("send_due_emails", "resend_contact")
    }
    assert all("while sending is paused" in text for text in descriptions.values())


def test_a_pause_stops_a_run_under_way_before_its_next_batch(env: PipelineEnv) -> None:
    for n in range(5):
        env.drop_signup(signup(f"p{n}@x.com"), age=timedelta(minutes=10))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
    store = env.store()
    plan, _ = due_plan(store, env.campaign, datetime.now(UTC))
    switch_ = SqlSendSwitch(env.settings.database_url)
    gate = send_gate(store, env.campaign, switch_)
    outbox = OutboxSender(env.outbox)

    class PausingSender:
        """The outbox; someone pauses sending while the first batch is on its way."""

        def send(self, emails: list[Any]) -> list[Any]:
            switch_.set(env.campaign, paused=True, reason="wrong subject line", by="ops")
            return outbox.send(emails)

    report = deliver(
        store=store,
        sender=PausingSender(),
        renderer=Renderer(load_template_dir()),
        campaign=env.campaign,
        plan=plan,
        context_for=lambda row: message_context(row, env.campaign),
        envelope=Envelope(from_email=env.settings.from_email),
        batch_size=2,
        gate=gate,
    )
    assert len(report.sent) == 2 and "wrong subject line" in report.paused
    assert len(env.outbox_files()) == 2
    # What was not sent stays due: nothing was recorded as skipped or failed.
    assert not report.skipped and not report.failed
    later, _ = due_plan(store, env.campaign, datetime.now(UTC))
    assert (later["step_id"] == "email-1").sum() == 3
