"""The Dagster wiring: definitions, the inbox sensor, the send schedule, the signups asset."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    check_results,
    make_env,
    materializations,
    signup,
    today,
)


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true")


def test_every_asset_has_group_kinds_owners_and_description(env: PipelineEnv) -> None:
    graph = env.defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"signups", "email_sequences", "campaign_folders", "campaigns_overview"} <= keys
    # Every shipped campaign's own assets, under its prefix and in its own group.
    for prefix in ("christmas_2025", "christmas_2026"):
        for name in ("templates", "due_emails", "deliveries", "send_switch", "funnel"):
            assert f"{prefix}/{name}" in keys
    assert {"bookings", "booking_state", "email_events"} <= keys
    groups = {"ingestion", "sequences", "notion", "campaigns", "christmas_2025", "christmas_2026"}
    for spec in env.defs.resolve_all_asset_specs():
        assert spec.group_name in groups, spec.key
        if len(spec.key.path) == 2:
            assert spec.group_name == spec.key.path[0], spec.key
        assert spec.kinds, spec.key
        assert spec.owners, spec.key
        assert spec.description and len(spec.description) > 40, spec.key


def test_lineage_follows_the_flow(env: PipelineEnv) -> None:
    graph = env.defs.resolve_asset_graph()

    def parents(key: dg.AssetKey) -> set[str]:
        return {k.to_user_string() for k in graph.get(key).parent_keys}

    assert parents(dg.AssetKey("email_sequences")) == {"signups"}
    assert parents(env.key("due_emails")) == {"email_sequences", "booking_state", "email_events"}
    assert parents(dg.AssetKey("booking_state")) == {"bookings"}
    assert parents(env.key("deliveries")) == {
        "christmas_2025/due_emails",
        "christmas_2025/templates",
    }


def test_sensor_requests_one_run_per_changed_day(env: PipelineEnv) -> None:
    sensor = env.defs.resolve_sensor_def("signups_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with in_memory_instance() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"inbox": _inbox(env)})
        assert isinstance(sensor(context), dg.SkipReason)

        env.drop_signup(signup("a@x.com"))
        env.drop_signup(signup("b@x.com"))
        first = sensor(context)
        assert [r.partition_key for r in first] == [today()]
        cursor = context.cursor

        # Nothing new: no run. A new file: a new run with a new run key.
        again = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"inbox": _inbox(env)}
        )
        assert isinstance(sensor(again), dg.SkipReason)
        env.drop_signup(signup("c@x.com"))
        third = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"inbox": _inbox(env)}
        )
        requests = sensor(third)
        assert len(requests) == 1 and requests[0].run_key != first[0].run_key


def test_sensor_ignores_days_outside_the_campaign(env: PipelineEnv) -> None:
    folder = Path(env.settings.inbox_root) / "signups" / "2019-01-01"
    folder.mkdir(parents=True)
    (folder / "old.json").write_text("{}")
    sensor = env.defs.resolve_sensor_def("signups_sensor")
    with in_memory_instance() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"inbox": _inbox(env)})
        assert isinstance(sensor(context), dg.SkipReason)
    assert (folder / "old.json").exists()


def test_schedule_requests_todays_catch_up_run(env: PipelineEnv) -> None:
    schedule = env.defs.resolve_schedule_def(env.name("send_schedule"))
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    when = datetime(2025, 12, 3, 10, 5, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        # As a context manager: its resources are torn down here, not whenever the garbage
        # collector gets to them (after this test's Dagster state was reset).
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=when,
            repository_def=env.defs.get_repository_def(),
            resources=env.resources("store"),
        ) as context:
            request = schedule.evaluate_tick(context).run_requests[0]
        assert request.partition_key == "2025-12-03"
        assert request.job_name in (None, env.name("send_due_emails"))
        assert request.run_config["ops"][env.name("deliveries")]["config"] == {"catch_up": True}
        assert request.tags["xmas/send"] == "1"


def test_schedule_skips_while_a_send_run_is_in_flight(env: PipelineEnv) -> None:
    schedule = env.defs.resolve_schedule_def(env.name("send_schedule"))
    job = env.defs.resolve_job_def(env.name("send_due_emails"))
    with dg.instance_for_test() as instance:
        instance.create_run_for_job(
            job_def=job, status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": today()}
        )
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime.now(UTC),
            repository_def=env.defs.get_repository_def(),
            resources=env.resources("store"),
        ) as context:
            result = schedule.evaluate_tick(context)
        assert not result.run_requests
        assert "still in progress" in (result.skip_message or "")


def test_cron_and_interval_come_from_the_environment(tmp_path: Path) -> None:
    env = make_env(tmp_path, XMAS_SEND_CRON="* * * * *", XMAS_SENSOR_INTERVAL_SECONDS="7")
    for prefix in ("christmas_2025", "christmas_2026"):
        schedule = env.defs.resolve_schedule_def(f"{prefix}__send_schedule")
        assert schedule.cron_schedule == "* * * * *"
    assert env.defs.resolve_sensor_def("signups_sensor").minimum_interval_seconds == 7


def test_bad_files_are_reported_kept_and_fail_the_check(env: PipelineEnv) -> None:
    good = env.drop_signup(signup("ok@x.com", red=2))
    bad_json = env.drop_signup(b"{not json")
    bad_field = env.drop_signup(signup("x@x.com", assessment_score=500))
    not_object = env.drop_signup(b"[1, 2]")
    with in_memory_instance() as instance:
        result = env.ingest(today(), instance)
    assert result.success
    meta = materializations(result, "signups")[0]
    assert meta["accepted"] == 1 and meta["rejected"] == 3
    assert "not valid JSON" in meta["rejected files"]
    assert "assessment_score" in meta["rejected files"]
    assert "expected a JSON object" in meta["rejected files"]
    assert check_results(result) == {
        "no_rejected_files": False,
        "every_signup_campaign_loaded": True,
    }
    for item in (good, bad_json, bad_field, not_object):
        assert Path(item.path).exists()
    sequences = env.store().load_sequences(env.campaign)
    assert sequences["contact_key"].tolist() == ["ok@x.com"]
    assert materializations(result, "email_sequences")[0]["new sequences"] == 1


def test_template_check_blocks_sending(env: PipelineEnv, tmp_path: Path) -> None:
    # A campaign whose step names a template with an unknown variable, in the templates
    # folder beside its campaign file (XMAS_CAMPAIGN_FILE's templates are there).
    broken = tmp_path / "templates"
    broken.mkdir()
    (broken / "email-1.html.j2").write_text("subject: Hi {{ name }}\n---\n<p>{{ nmae }}</p>\n")
    campaign_file = tmp_path / "c.yaml"
    campaign_file.write_text(
        "name: Christmas 2025\nslug: christmas-2025\nsteps:\n"
        "  - {number: 1, delay: 0h, template: email-1}\n"
    )
    env2 = make_env(tmp_path / "home2", XMAS_CAMPAIGN_FILE=str(campaign_file))
    assert env2.campaign.templates_dir == broken.resolve()
    env2.drop_signup(signup("a@x.com"))
    with in_memory_instance() as instance:
        env2.ingest(today(), instance)
        result = env2.send(today(), instance, catch_up=True)
    assert check_results(result)["every_template_renders"] is False
    assert env2.outbox_files() == []


def _inbox(env: PipelineEnv):  # type: ignore[no-untyped-def]
    from xmas_pipeline.dagster_defs.resources import InboxResource

    return InboxResource(root=str(env.settings.inbox_root))


def _day_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> dg.DagsterRun:
    run = dg.DagsterRun(
        job_name="ingest_signups",
        run_id=str(uuid.uuid4()),
        status=status,
        tags={"dagster/partition": today()},
    )
    instance.add_run(run)
    return run


def test_one_ingestion_run_per_day_at_a_time(env: PipelineEnv) -> None:
    """A day's run still queued reads new files when it starts: no second run. One under
    way: the change waits for a tick after it ends, then gets its own run."""
    sensor = env.defs.resolve_sensor_def("signups_sensor")

    def tick(instance: dg.DagsterInstance, cursor: str | None):  # type: ignore[no-untyped-def]
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"inbox": _inbox(env)}
        )
        return sensor(context), context.cursor

    with in_memory_instance() as instance:
        env.drop_signup(signup("a@x.com"))
        queued = _day_run(instance, dg.DagsterRunStatus.NOT_STARTED)
        result, cursor = tick(instance, None)
        assert isinstance(result, dg.SkipReason)
        result, cursor = tick(instance, cursor)
        assert isinstance(result, dg.SkipReason)  # seen: the queued run will read it

        instance.delete_run(queued.run_id)
        running = _day_run(instance, dg.DagsterRunStatus.STARTED)
        env.drop_signup(signup("b@x.com"))
        result, cursor = tick(instance, cursor)
        assert isinstance(result, dg.SkipReason)  # one is under way
        result, cursor = tick(instance, cursor)
        assert isinstance(result, dg.SkipReason)  # still under way: still waiting

        instance.report_run_failed(running, "ended")
        result, cursor = tick(instance, cursor)
        assert [r.partition_key for r in result] == [today()]  # b@x.com is not forgotten
        result, cursor = tick(instance, cursor)
        assert isinstance(result, dg.SkipReason)
