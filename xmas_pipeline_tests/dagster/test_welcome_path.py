"""The welcome path: as soon as an ingestion run started new sequences, a send run is
requested, through the same job (and so the same pool and exactly-once rules)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline.dagster_defs.jobs import SEND_JOB, SEND_TAG
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import PipelineEnv, make_env, signup, today


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true")


def test_a_send_run_follows_each_ingestion_that_started_sequences(env: PipelineEnv) -> None:
    sensor = env.defs.resolve_sensor_def("send_after_signups_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds <= 5
    # On the default 30 s interval, the inbox is still looked at every 10 s at most.
    assert env.settings.sensor_interval_seconds == 30
    assert env.defs.resolve_sensor_def("signups_sensor").minimum_interval_seconds <= 10
    with in_memory_instance() as instance:
        context = dg.build_sensor_context(instance=instance, resources=env.resources("store"))
        assert isinstance(sensor(context), dg.SkipReason)  # the first look starts the clock
        context = dg.build_sensor_context(
            instance=instance,
            cursor=context.cursor,
            resources=env.resources("store"),
        )

        env.drop_signup(signup("new@x.com"))
        assert env.ingest(today(), instance).success
        [request] = sensor(context)
        assert isinstance(request, dg.RunRequest)
        assert request.job_name == env.name(SEND_JOB) and request.partition_key == today()
        assert request.tags[SEND_TAG] == "1"
        assert request.run_config["ops"][env.name("deliveries")]["config"]["catch_up"] is True

        # The same day ingested again (a re-delivery): nothing new, no send requested.
        context = dg.build_sensor_context(
            instance=instance,
            cursor=context.cursor,
            resources=env.resources("store"),
        )
        env.drop_signup(signup("new@x.com"))
        assert env.ingest(today(), instance).success
        assert isinstance(sensor(context), dg.SkipReason)
