"""Liveness and ops alerts: a run whose worker died is marked failed; ops hear, once each,
about failed send runs, dead workers, ingestion that failed for good and stuck messages,
through the alert outbox, however long the chat was down; every op that sends holds the
send pool; ingestion jobs retry."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.journal import SqlSendJournal
from xmas_pipeline.adapters.sql.send_switch import SqlSendSwitch
from xmas_pipeline.adapters.sql.tables import alert_outbox, alerts_sent
from xmas_pipeline.dagster_defs.executor import HEARTBEAT_TAG, run_is_live
from xmas_pipeline.dagster_defs.jobs import SEND_POOL, SEND_TAG
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.support.clock import MovableClock
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)
from xmas_pipeline_tests.support.sensor_ticks import Ticker


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
    with in_memory_instance() as instance:
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
    with in_memory_instance() as instance:
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
    with in_memory_instance() as instance:
        running = _started_run(instance, "send_due_emails", heartbeat_age=1)
        assert run_is_live(instance, running.run_id)
        instance.report_run_failed(running, "killed")
        assert not run_is_live(instance, running.run_id)
        assert not run_is_live(instance, str(uuid.uuid4()))  # never known: nobody holds it
        assert not run_is_live(instance, "")


# -- ops alerts, through the alert outbox ------------------------------------------------------


def _failed_run(instance: dg.DagsterInstance, job: str, reason: str, **tags: str) -> dg.DagsterRun:
    run = _started_run(instance, job, None, **tags)
    instance.report_run_failed(run, reason)
    return run


def test_a_failed_send_run_reaches_ops_once_though_the_chat_was_down(
    tmp_path: Path, chat: ChatWebhookServer, clock: MovableClock
) -> None:
    """A send run fails for real (Resend on, no postal address) while the chat answers 429,
    then 503: the failure sensor ticks past the run meanwhile, and the alert still arrives,
    once, when the chat is back."""
    env = make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_ALERT_WEBHOOK_URL=chat.url,
        RESEND_API_KEY="re_test_key_123456",
        XMAS_PUBLIC_URL="https://campaign.example.com",
    )
    env.drop_signup(signup("a@x.com"))
    with in_memory_instance() as instance:
        failures = Ticker.of(env, instance, "ops_alerts_sensor")
        outbox = Ticker.of(env, instance, "alert_outbox_sensor")
        assert "no run failed" in str(failures().skip_message)
        chat.fail_with = 429
        assert env.ingest(today(), instance).success
        sent = env.send(today(), instance, catch_up=True)
        assert not sent.success
        assert "1 alert(s) added" in str(failures().skip_message)
        assert "1 waiting" in str(outbox().skip_message)  # 429: kept, Retry-After honoured
        failures()
        failures()  # ticked past the failed run: nothing new, and nothing lost
        clock.advance(2.2)
        chat.fail_with = 503
        outbox()
        assert [p.status for p in chat.posts] == [429, 503]
        chat.fail_with = None
        outbox()  # too early: the backoff after two failures is 4 s
        assert len(chat.posts) == 2
        clock.advance(4.2)
        assert "1 alert(s) posted; 0 waiting" in str(outbox().skip_message)
        for tick in (outbox, failures, outbox):
            tick()
    [post] = chat.accepted
    text = post.body["text"]
    assert "A send run failed" in text and sent.run_id in text and "send_due_emails" in text
    assert "XMAS_POSTAL_ADDRESS is not set" in text  # the step's error, not only its name
    assert "re_test_key_123456" not in json.dumps([p.body for p in chat.posts])


def test_secrets_in_a_failure_never_reach_the_outbox_or_the_chat(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    with in_memory_instance() as instance:
        failures = Ticker.of(env, instance, "ops_alerts_sensor")
        reason = "Sending stopped: refused at postgresql://xmas:hunter2@db/xmas with re_123456789"
        run = _failed_run(instance, "send_due_emails", reason, **{SEND_TAG: "1"})
        failures()
        with env.store().engine.connect() as conn:
            stored = json.dumps(conn.execute(sa.select(alert_outbox)).all(), default=str)
        Ticker.of(env, instance, "alert_outbox_sensor")()
    [post] = chat.accepted
    assert run.run_id in post.body["text"]
    for where in (stored, post.body["text"]):
        assert "hunter2" not in where and "re_123456789" not in where


def test_ingestion_alerts_only_once_its_retries_are_used_up(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    retries = {"dagster/max_retries": "3"}
    with in_memory_instance() as instance:
        failures = Ticker.of(env, instance, "ops_alerts_sensor")
        outbox = Ticker.of(env, instance, "alert_outbox_sensor")
        _failed_run(instance, "ingest_signups", "boom", **retries)
        failures()
        outbox()
        assert chat.posts == []  # the daemon retries it
        _failed_run(
            instance, "ingest_signups", "boom again", **retries, **{"dagster/retry_number": "3"}
        )
        failures()
        outbox()
    [post] = chat.accepted
    assert "after its retries" in post.body["text"]


def test_a_dead_worker_is_reported_whatever_the_job(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    with in_memory_instance() as instance:
        failures = Ticker.of(env, instance, "ops_alerts_sensor")
        failures()
        _started_run(instance, "refresh_funnel", heartbeat_age=300)
        Ticker.of(env, instance, "run_watchdog_sensor")()  # marks it failed
        failures()
        Ticker.of(env, instance, "alert_outbox_sensor")()
    [post] = chat.accepted
    assert "worker died" in post.body["text"] and "no heartbeat" in post.body["text"]


def test_stuck_messages_are_reported_once_each(
    env: PipelineEnv, chat: ChatWebhookServer, clock: MovableClock
) -> None:
    env.drop_signup(signup("late@x.com"), age=timedelta(hours=2))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        stuck = Ticker.of(env, instance, "stuck_messages_sensor")
        outbox = Ticker.of(env, instance, "alert_outbox_sensor")
        chat.fail_with = 500
        stuck()
        outbox()  # refused: kept
        stuck()  # the same message: no second alert
        chat.fail_with = None
        clock.advance(2.2)
        outbox()
        stuck()
        outbox()
    assert [p.status for p in chat.posts] == [500, 200]
    text = chat.accepted[0].body["text"]
    assert "stuck" in text.lower() and "email-" in text
    assert "late@x.com" not in text  # counts and steps only, no addresses


def test_an_older_release_s_ledger_and_cursor_are_honoured(
    env: PipelineEnv, chat: ChatWebhookServer
) -> None:
    """An older release posted first and marked its ledger (`alerts_sent`) after, and
    watched failures with Dagster's run-failure sensor under the same name: what it
    announced is not announced again, and its cursor is where the new sensor goes on."""
    env.drop_signup(signup("crit@x.com", red=3))
    store = env.store()
    store.prepare(env.campaign)
    with in_memory_instance() as instance:
        seen = _failed_run(instance, "send_due_emails", "seen", **{SEND_TAG: "1"})
        [record] = instance.fetch_run_status_changes(
            dg.DagsterEventType.RUN_FAILURE, limit=1
        ).records
        posted = _failed_run(
            instance, "send_due_emails", "posted, cursor not saved", **{SEND_TAG: "1"}
        )
        with store.engine.begin() as conn:
            conn.execute(
                alerts_sent.insert(),
                [
                    {"campaign": env.campaign.slug, "alert_key": key, "sent_at": datetime.now(UTC)}
                    for key in (
                        f"run-failed:{seen.run_id}",
                        f"run-failed:{posted.run_id}",
                        "critical:crit@x.com",
                    )
                ],
            )
        failures = Ticker.of(env, instance, "ops_alerts_sensor")
        failures.cursor = json.dumps(
            {
                "__class__": "RunStatusSensorCursor",
                "record_id": record.storage_id,
                "record_timestamp": None,
                "update_timestamp": None,
            }
        )
        outbox = Ticker.of(env, instance, "alert_outbox_sensor")
        # Only the failure after its cursor is read, and the ledger says it went out.
        assert failures().skip_message == "1 run failure(s) read, 0 alert(s) added to the outbox"
        assert env.ingest(today(), instance).success  # the CRITICAL signup, announced before
        outbox()
        assert chat.posts == []
        new = _failed_run(instance, "send_due_emails", "new", **{SEND_TAG: "1"})
        failures()
        outbox()
    [post] = chat.posts
    assert new.run_id in post.body["text"]


def test_every_op_that_sends_holds_the_send_pool(env: PipelineEnv) -> None:
    graph = env.defs.resolve_asset_graph()
    assert graph.get(env.key("deliveries")).pools == {SEND_POOL}
    op = env.defs.resolve_job_def(env.name("resend_contact")).graph.node_defs[0]
    assert op.pool == SEND_POOL
    for job in ("send_due_emails", "resend_contact"):
        assert env.defs.resolve_job_def(env.name(job)).tags.get(SEND_TAG) == "1"


def test_ingestion_jobs_are_retried_and_every_job_heartbeats(env: PipelineEnv) -> None:
    for name in ("ingest_signups", "ingest_bookings", "ingest_email_events"):
        job = env.defs.resolve_job_def(name)
        assert int(job.tags["dagster/max_retries"]) >= 1
    for job in env.defs.get_repository_def().get_all_jobs():
        assert job.executor_def.name == "in_process_with_heartbeat", job.name


def test_no_stuck_alert_while_sending_is_paused(env: PipelineEnv, chat: ChatWebhookServer) -> None:
    # A pause is a person's choice: what waits meanwhile is expected, not stuck.
    env.drop_signup(signup("late@x.com"), age=timedelta(hours=2))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        switch = SqlSendSwitch(env.settings.database_url)
        switch.set(env.campaign, paused=True, reason="copy review", by="ops")
        Ticker.of(env, instance, "stuck_messages_sensor")()
        Ticker.of(env, instance, "alert_outbox_sensor")()
        assert chat.posts == []
        switch.set(env.campaign, paused=False, reason="", by="ops")
        Ticker.of(env, instance, "stuck_messages_sensor")()
        Ticker.of(env, instance, "alert_outbox_sensor")()
    assert len(chat.accepted) == 1
