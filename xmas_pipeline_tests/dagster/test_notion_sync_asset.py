"""The Notion sync in Dagster: `notion_email_sequence` and its check, `sync_notion`, and
`notion_sync_sensor`, on the real wiring against the fake Notion API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline.core.signup import Signup, SignupEvent
from xmas_pipeline.dagster_defs.build import build_definitions
from xmas_pipeline.dagster_defs.notion import SYNC_JOB
from xmas_pipeline.dagster_defs.resources import StateStoreResource
from xmas_pipeline.settings import Settings, SettingsError
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import Workspace, busos_workspace
from xmas_pipeline_tests.support.clock import MovableClock
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.notion_sync import sync_pass
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    check_results,
    make_env,
    materializations,
    signup,
    today,
)
from xmas_pipeline_tests.support.sensor_ticks import Ticker


@pytest.fixture
def notion() -> Iterator[FakeNotion]:
    with FakeNotion() as fake:
        yield fake


def notion_env(tmp_path: Path, fake: FakeNotion, **extra: str) -> tuple[PipelineEnv, Workspace]:
    ws = busos_workspace(fake)
    env = make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        NOTION_TOKEN=fake.token,
        NOTION_BASE_URL=fake.base_url,
        NOTION_CONTACTS_DB_ID=ws.contacts,
        NOTION_EMAIL_SEQUENCE_DB_ID=ws.sequences,
        **extra,
    )
    return env, ws


def sync(env: PipelineEnv, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = env.defs.resolve_job_def(SYNC_JOB)
    return job.execute_in_process(instance=instance, raise_on_error=False)


def test_the_sync_asset_its_check_and_the_pool(tmp_path: Path, notion: FakeNotion) -> None:
    env, ws = notion_env(tmp_path, notion)
    spec = next(
        s
        for s in env.defs.resolve_all_asset_specs()
        if s.key.to_user_string() == "notion_email_sequence"
    )
    assert spec.group_name == "notion" and "notion" in spec.kinds
    node = env.defs.resolve_job_def(SYNC_JOB).graph.node_defs[0]
    assert node.pool == "xmas/notion"  # one sync at a time, like sends
    for person in ("a@x.com", "b@x.com"):
        env.drop_signup(signup(person))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        assert env.send(today(), instance, catch_up=True).success
        result = sync(env, instance)
        assert result.success
        meta = materializations(result, "notion_email_sequence")[0]
        assert meta["pages created"] == 2 and meta["queue depth"] == 0
        assert meta["stopped"].startswith("no")
        assert check_results(result) == {"notion_in_sync": True}
    rows = {r["Email"]: r for r in notion.rows(ws.sequences)}
    assert set(rows) == {"a@x.com", "b@x.com"}
    assert all(r["Email 1 Sent"] for r in rows.values())  # the welcome, folded into the create


def test_notion_down_delays_only_the_sync_and_the_check_says_so(
    tmp_path: Path, notion: FakeNotion, clock: MovableClock
) -> None:
    env, ws = notion_env(tmp_path, notion, XMAS_NOTION_MAX_LAG_SECONDS="1")
    env.drop_signup(signup("a@x.com"))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        notion.inject("503", times=1000)
        send = env.send(today(), instance, catch_up=True)
        assert materializations(send, "deliveries")[0]["sent"] == 1  # never waited
        clock.advance(1.2)
        result = sync(env, instance)
        assert result.success  # a materialization saying what happened, not a crash
        meta = materializations(result, "notion_email_sequence")[0]
        assert str(meta["stopped"]).startswith("Notion unavailable")
        assert meta["queue depth"] == 1
        [evaluation] = [
            e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR


def _started_sync(instance: dg.DagsterInstance) -> dg.DagsterRun:
    run = dg.DagsterRun(
        job_name=SYNC_JOB, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
    )
    instance.add_run(run)
    return run


def test_the_sensor_waits_to_gather_changes_and_never_doubles_a_run(
    tmp_path: Path, notion: FakeNotion
) -> None:
    env, _ = notion_env(tmp_path, notion, XMAS_NOTION_SYNC_DELAY_SECONDS="600")
    sensor = env.defs.resolve_sensor_def("notion_sync_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with in_memory_instance() as instance:
        tick = Ticker.of(env, instance, "notion_sync_sensor")
        assert "nothing to sync" in str(tick().skip_message)
        env.drop_signup(signup("a@x.com"))
        assert env.ingest(today(), instance).success
        assert "1 waiting" in str(tick().skip_message)  # younger than the delay: wait for more
        env.store().upsert_signups(env.campaign, _events([f"p{i:03d}@x.com" for i in range(100)]))
        assert len(tick().run_requests) == 1  # a backlog of 100 starts it at once
        running = _started_sync(instance)
        assert "queued or running" in str(tick().skip_message)
        instance.report_run_failed(running, "ended")
        assert len(tick().run_requests) == 1


def test_contacts_a_dead_sync_run_held_are_freed_by_the_sensor_and_synced(
    tmp_path: Path, notion: FakeNotion
) -> None:
    """A sync run dies holding contacts (its code server killed) and nothing else changes:
    the sensor frees them once the run has ended, starts a sync, and Notion catches up."""
    env, ws = notion_env(tmp_path, notion, XMAS_NOTION_SYNC_DELAY_SECONDS="0")
    emails = [f"held{i}@x.com" for i in range(3)]
    for email in emails:
        env.drop_signup(signup(email))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        dead = _started_sync(instance)
        queue = StateStoreResource(database_url=env.settings.database_url).notion_queue()
        assert len(queue.take(env.campaign, dead.run_id)) == 3
        tick = Ticker.of(env, instance, "notion_sync_sensor")
        assert "queued or running" in str(tick().skip_message)  # still alive: its own
        instance.report_run_failed(dead, "run worker stopped: no heartbeat for 130 s")
        started = tick()
        assert len(started.run_requests) == 1
        assert queue.stats(env.campaign).ready == 3
        assert sync(env, instance).success
    assert {r["Email"] for r in notion.rows(ws.sequences)} == set(emails)
    assert queue.stats(env.campaign).depth == 0


def test_notion_falling_behind_turns_the_check_red_from_the_sensor_and_tells_ops_once(
    tmp_path: Path, notion: FakeNotion, clock: MovableClock
) -> None:
    """No sync can run (a hung run holds the queue): the sensor alone turns notion_in_sync
    red and enqueues one alert for the episode; when Notion catches up the check turns green
    and ops hear that too, once."""
    with ChatWebhookServer(flavour="slack") as chat:
        env, _ = notion_env(
            tmp_path,
            notion,
            XMAS_NOTION_MAX_LAG_SECONDS="1",
            XMAS_NOTION_SYNC_DELAY_SECONDS="0",
            XMAS_ALERT_WEBHOOK_URL=chat.url,
        )
        env.drop_signup(signup("a@x.com"))
        with in_memory_instance() as instance:
            assert env.ingest(today(), instance).success
            hung = _started_sync(instance)
            queue = StateStoreResource(database_url=env.settings.database_url).notion_queue()
            assert len(queue.take(env.campaign, hung.run_id)) == 1
            tick = Ticker.of(env, instance, "notion_sync_sensor")
            outbox = Ticker.of(env, instance, "alert_outbox_sensor")
            assert latest_check(instance) is None
            clock.advance(1.2)
            red = tick()
            assert [e.passed for e in red.asset_events] == [False]
            assert latest_check(instance) == "FAILED"
            assert tick().asset_events == []  # still red: no event, no second alert
            outbox()
            outbox()
            assert [p.body["text"].splitlines()[0] for p in chat.accepted] == [
                "\N{WARNING SIGN} Notion is behind the store"
            ]
            instance.report_run_failed(hung, "ended")
            assert len(tick().run_requests) == 1
            assert sync(env, instance).success  # its own check: green
            assert latest_check(instance) == "SUCCEEDED"
            assert tick().asset_events == []
            outbox()
            tick()
            outbox()
    assert [p.body["text"].splitlines()[0] for p in chat.accepted] == [
        "\N{WARNING SIGN} Notion is behind the store",
        "\N{WARNING SIGN} Notion is in step with the store again",
    ]


def test_the_sensor_turns_the_check_green_again_without_a_run(
    tmp_path: Path, notion: FakeNotion, clock: MovableClock
) -> None:
    env, ws = notion_env(tmp_path, notion, XMAS_NOTION_MAX_LAG_SECONDS="1")
    env.drop_signup(signup("a@x.com"))
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        tick = Ticker.of(env, instance, "notion_sync_sensor")
        clock.advance(1.2)
        tick()
        assert latest_check(instance) == "FAILED"
        # The contact's change reaches Notion some other way (a sync run of another
        # deployment sharing the store): the queue empties, and the next tick says so.
        sync_pass(env.store(), ws.client(), env.campaign)
        assert [e.passed for e in tick().asset_events] == [True]
        assert latest_check(instance) == "SUCCEEDED"


def latest_check(instance: dg.DagsterInstance) -> str | None:
    """The status of notion_in_sync's latest evaluation, as the UI shows it."""
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("notion_email_sequence"), "notion_in_sync")
    )
    return record.status.value if record is not None else None


def _events(emails: list[str]) -> list[SignupEvent]:
    now = datetime.now(UTC)
    return [
        SignupEvent(
            signup=Signup.model_validate({"email": e, "first_name": "P", "assessment_score": 50}),
            received_at=now,
            source=f"test/{e}",
        )
        for e in emails
    ]


def test_a_half_configured_notion_is_a_clear_error(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"XMAS_HOME": str(tmp_path), "NOTION_TOKEN": "secret_x", "NOTION_CONTACTS_DB_ID": "c"}
    )
    with pytest.raises(SettingsError, match="NOTION_EMAIL_SEQUENCE_DB_ID"):
        build_definitions(settings)
