"""Liveness and ops alerts: a run whose worker died is marked failed; ops hear, once each,
about failed send runs, dead workers, ingestion that failed for good and stuck messages;
every op that sends holds the send pool; ingestion jobs retry."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline.adapters.sql.journal import SqlSendJournal
from xmas_pipeline.dagster_defs.executor import HEARTBEAT_TAG, run_is_live
from xmas_pipeline.dagster_defs.jobs import SEND_POOL, SEND_TAG
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)


@pytest.fixture
def chat() -> Iterator[ChatWebhookServer]:
    with ChatWebhookServer(flavour="slack") as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, chat: ChatWebhookServer) -> PipelineEnv:
    return make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_ALERT_WEBHOOK_URL=chat.url,
        XMAS_RUN_DEAD_AFTER_SECONDS="60",
        XMAS_RUN_HEARTBEAT_SECONDS="5",
    )


def _started_run(
    instance: dg.DagsterInstance, job: str, heartbeat_age: float | None, **tags: str
) -> dg.DagsterRun:
    run = dg.DagsterRun(
        job_name=job,
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags=tags,
    )
    instance.add_run(run)
    if heartbeat_age is not None:
        instance.add_run_tags(run.run_id, {HEARTBEAT_TAG: f"{time.time() - heartbeat_age:.3f}"})
    return run


def test_the_watchdog_fails_a_run_whose_heartbeat_stopped(env: PipelineEnv) -> None:
    sensor = env.defs.resolve_sensor_def("run_watchdog_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        dead = _started_run(instance, "send_due_emails", heartbeat_age=300, **{SEND_TAG: "1"})
        alive = _started_run(instance, "send_due_emails", heartbeat_age=2, **{SEND_TAG: "1"})
        result = sensor(dg.build_sensor_context(instance=instance))
        assert dead.run_id[:8] in str(result)
        failed = instance.get_run_by_id(dead.run_id)
        assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED  # type: ignore[union-attr]
        events = instance.all_logs(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert "no heartbeat for" in (events[0].dagster_event.message or "")  # type: ignore[union-attr]


def test_a_batch_of_a_running_send_is_left_to_it_and_replayed_once_the_run_died(
    env: PipelineEnv,
) -> None:
    """A send run's open batch (written, handed to the sender, not settled) belongs to it
    while it runs: another send run must not replay it. Once the watchdog has marked that
    run failed, the next send run replays it, and each message is delivered once."""
    from xmas_pipeline.core.ports import OutgoingEmail
    from xmas_pipeline.services.planning import due_plan

    for person in ("a@x.com", "b@x.com"):
        env.drop_signup(signup(person))
    watchdog = env.defs.resolve_sensor_def("run_watchdog_sensor")
    with dg.instance_for_test() as instance:
        assert env.ingest(today(), instance).success
        store = env.store()
        due, _ = due_plan(store, env.campaign, datetime.now(UTC))
        rows = due.to_dict("records")
        assert len(rows) == 2
        sending = _started_run(instance, "send_due_emails", heartbeat_age=300, **{SEND_TAG: "1"})
        journal = SqlSendJournal(store.url, engine=store.engine, holder=sending.run_id)
        chunk = [
            (
                row,
                OutgoingEmail(
                    message_id=row["message_id"],
                    idempotency_key=row["message_id"],
                    to=row["email"],
                    from_email="BusOS <hello@example.com>",
                    subject="Welcome",
                    html="<p>Welcome</p>",
                    text="Welcome",
                ),
            )
            for row in rows
        ]
        assert journal.begin(env.campaign, chunk).entry is not None

        overlapping = env.send(today(), instance, catch_up=True)
        meta = materializations(overlapping, "deliveries")[0]
        assert meta["sent"] == 0 and meta["in another run's hands"] == 2
        assert env.outbox_files() == []

        watchdog(dg.build_sensor_context(instance=instance))  # the first run is dead
        assert not run_is_live(instance, sending.run_id)
        after = env.send(today(), instance, catch_up=True)
        assert materializations(after, "deliveries")[0]["sent"] == 2
        assert len(env.outbox_files()) == 2
        again = env.send(today(), instance, catch_up=True)
        assert materializations(again, "deliveries")[0]["sent"] == 0
    assert journal.pending(env.campaign) == []
    assert len(env.outbox_files()) == 2


def test_run_is_live_until_the_run_ends(env: PipelineEnv) -> None:
    with dg.instance_for_test() as instance:
        running = _started_run(instance, "send_due_emails", heartbeat_age=1)
        assert run_is_live(instance, running.run_id)
        instance.report_run_failed(running, "killed")
        assert not run_is_live(instance, running.run_id)
        assert not run_is_live(instance, str(uuid.uuid4()))  # never known: nobody holds it
        assert not run_is_live(instance, "")


def _failure_context(
    env: PipelineEnv, instance: dg.DagsterInstance, run: dg.DagsterRun, message: str
) -> dg.RunFailureSensorContext:
    instance.report_run_failed(run, message)
    [record] = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
    ).records
    failed = instance.get_run_by_id(run.run_id)
    assert failed is not None
    return dg.build_run_status_sensor_context(
        sensor_name="ops_alerts_sensor",
        dagster_instance=instance,
        dagster_run=failed,
        dagster_event=record.event_log_entry.dagster_event,
        resources=_resources(env),
    ).for_run_failure()


def _resources(env: PipelineEnv) -> dict[str, object]:
    resources = env.defs.get_repository_def().get_top_level_resources()
    return {k: resources[k] for k in ("alerts", "store", "campaign_config")}


def test_ops_hear_of_a_failed_send_run_once_without_secrets(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    sensor = env.defs.resolve_sensor_def("ops_alerts_sensor")
    with dg.instance_for_test() as instance:
        run = _started_run(instance, "send_due_emails", None, **{SEND_TAG: "1"})
        reason = "Sending stopped: refused at postgresql://xmas:hunter2@db/xmas with re_123456789"
        context = _failure_context(env, instance, run, reason)
        sensor(context)
        sensor(context)  # evaluated again (a restarted daemon): still one alert
    [post] = chat.posts
    text = post.body["text"]
    assert "A send run failed" in text and run.run_id in text and "send_due_emails" in text
    assert "hunter2" not in text and "re_123456789" not in text


def test_ingestion_alerts_only_once_its_retries_are_used_up(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    sensor = env.defs.resolve_sensor_def("ops_alerts_sensor")
    retries = {"dagster/max_retries": "3"}
    with dg.instance_for_test() as instance:
        first = _started_run(instance, "ingest_signups", None, **retries)
        sensor(_failure_context(env, instance, first, "boom"))
        assert chat.posts == []  # the daemon retries it
        last = _started_run(
            instance, "ingest_signups", None, **retries, **{"dagster/retry_number": "3"}
        )
        sensor(_failure_context(env, instance, last, "boom again"))
    [post] = chat.posts
    assert "after its retries" in post.body["text"]


def test_a_dead_worker_is_reported_whatever_the_job(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    sensor = env.defs.resolve_sensor_def("ops_alerts_sensor")
    with dg.instance_for_test() as instance:
        run = _started_run(instance, "refresh_funnel", None)
        message = "run worker stopped: no heartbeat for 300 s (its process or host died)"
        sensor(_failure_context(env, instance, run, message))
    [post] = chat.posts
    assert "worker died" in post.body["text"]


def test_stuck_messages_are_reported_once_each(env: PipelineEnv, chat: ChatWebhookServer) -> None:
    sensor = env.defs.resolve_sensor_def("stuck_messages_sensor")
    env.drop_signup(signup("late@x.com"), age=timedelta(hours=2))
    with dg.instance_for_test() as instance:
        assert env.ingest(today(), instance).success
        context = dg.build_sensor_context(instance=instance, resources=_resources(env))
        sensor(context)
        sensor(context)
    [post] = chat.posts
    text = post.body["text"]
    assert "stuck" in text.lower() and "email-" in text
    assert "late@x.com" not in text  # counts and steps only, no addresses


def test_every_op_that_sends_holds_the_send_pool(env: PipelineEnv) -> None:
    graph = env.defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("deliveries")).pools == {SEND_POOL}
    op = env.defs.resolve_job_def("resend_contact").graph.node_defs[0]
    assert op.pool == SEND_POOL
    for job in ("send_due_emails", "resend_contact"):
        assert env.defs.resolve_job_def(job).tags.get(SEND_TAG) == "1"


def test_ingestion_jobs_are_retried_and_every_job_heartbeats(env: PipelineEnv) -> None:
    for name in ("ingest_signups", "ingest_bookings", "ingest_email_events"):
        job = env.defs.resolve_job_def(name)
        assert int(job.tags["dagster/max_retries"]) >= 1
    for job in env.defs.get_repository_def().get_all_jobs():
        assert job.executor_def.name == "in_process_with_heartbeat", job.name
