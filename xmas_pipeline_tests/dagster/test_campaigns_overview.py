"""The cross-campaign view: `campaigns_overview` shows each running campaign's sends per
day and its funnel side by side, refreshed by one global job and schedule."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline.core.campaign import SHIPPED_CAMPAIGNS_DIR
from xmas_pipeline.dagster_defs.overview import ASSET, JOB, SCHEDULE
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)
from xmas_pipeline_tests.support.png import decode_png

OLD = "christmas-2025"  # the default campaign
NEW = "christmas-2026"


def env_with(tmp_path: Path, *slugs: str, broken: str = "") -> PipelineEnv:
    """An environment running copies of these shipped campaign folders (and `broken`, a
    folder whose campaign file does not load)."""
    folders = tmp_path / "campaigns"
    folders.mkdir()
    for slug in slugs:
        shutil.copytree(SHIPPED_CAMPAIGNS_DIR / slug, folders / slug)
    if broken:
        (folders / broken).mkdir()
        (folders / broken / "campaign.yaml").write_text(f"slug: {broken}\nsteps: [\n")
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true", XMAS_CAMPAIGNS_DIR=str(folders))


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return env_with(tmp_path, OLD, NEW)


def refresh(env: PipelineEnv, instance: dg.DagsterInstance) -> dict:
    result = env.defs.resolve_job_def(JOB).execute_in_process(instance=instance)
    assert result.success
    [meta] = materializations(result, ASSET)
    return meta


def test_one_global_asset_job_and_schedule_for_every_campaign(env: PipelineEnv) -> None:
    repository = env.defs.get_repository_def()
    graph = env.defs.resolve_asset_graph()
    spec = next(s for s in env.defs.resolve_all_asset_specs() if s.key == ASSET)
    assert spec.group_name == "campaigns" and "pandas" in spec.kinds
    # Drawn after every campaign's deliveries in the lineage.
    parents = {k.to_user_string() for k in graph.get(ASSET).parent_keys}
    assert parents == {"christmas_2025/deliveries", "christmas_2026/deliveries"}
    # One schedule whatever the number of campaigns: the daemon's work does not grow.
    overview_schedules = [s for s in repository.schedule_defs if "overview" in s.name]
    assert [s.name for s in overview_schedules] == [SCHEDULE]
    [schedule] = overview_schedules
    assert schedule.job_name == JOB
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert [
        k.to_user_string() for k in env.defs.resolve_job_def(JOB).asset_layer.selected_asset_keys
    ] == ["campaigns_overview"]
    with dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
    ) as context:
        [request] = schedule.evaluate_tick(context).run_requests or []
    assert request.job_name in (None, JOB)


def test_sends_per_day_and_funnels_per_campaign(env: PipelineEnv) -> None:
    env.drop_signup(signup("a@x.com", red=2), age=timedelta(minutes=10), campaign=OLD)
    env.drop_signup(signup("b@x.com"), age=timedelta(minutes=10), campaign=OLD)
    env.drop_signup(signup("x@x.com", red=1), age=timedelta(minutes=10), campaign=NEW)
    with in_memory_instance() as instance:
        before = refresh(env, instance)  # nothing yet: every campaign there, at 0
        assert before[f"emails sent {OLD}"] == 0 and before[f"emails sent {NEW}"] == 0
        assert f"| {today()} | 0 | 0 | 0 |" in before["sends per day"]
        decode_png(before["sends per day chart"])

        assert env.ingest(today(), instance).success
        assert env.send(today(), instance, campaign=OLD, catch_up=True).success
        assert env.send(today(), instance, campaign=NEW, catch_up=True).success
        new = env.settings.campaigns().loaded[NEW]
        env.store().set_flags(new, "x@x.com", booked=True)
        meta = refresh(env, instance)

    assert meta["campaigns"] == 2 and meta["campaigns not loaded"] == 0
    assert meta["days shown"] == 14
    assert meta[f"sends in 14 days {OLD}"] == 2 and meta[f"sends in 14 days {NEW}"] == 1
    assert meta[f"emails sent {OLD}"] == 2 and meta[f"emails sent {NEW}"] == 1
    assert meta[f"booked {OLD}"] == 0 and meta[f"booked {NEW}"] == 1
    assert meta[f"booking conversion {OLD}"] == 0.0
    assert meta[f"booking conversion {NEW}"] == 1.0

    days = meta["sends per day"]
    assert days.startswith(f"| day | {OLD} | {NEW} | all campaigns |")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    # Newest day first: today's welcomes, then nothing the day before.
    assert days.index(f"| {today()} | 2 | 1 | 3 |") < days.index(f"| {yesterday} | 0 | 0 | 0 |")
    assert days.count("\n| 20") == 14  # one row per day shown

    funnels = meta["funnels side by side"]
    assert funnels.startswith(f"| measure | {OLD} | {NEW} |")
    for row in (
        "| contacts | 2 | 1 |",
        "| people emailed | 2 | 1 |",
        "| emails sent | 2 | 1 |",
        "| people booked | 0 | 1 |",
        "| booking conversion | 0.0% | 100.0% |",
    ):
        assert row in funnels, row
    decode_png(meta["sends per day chart"])


def test_a_broken_folder_is_counted_and_the_others_shown(tmp_path: Path) -> None:
    env = env_with(tmp_path, NEW, broken=OLD)
    env.drop_signup(signup("x@x.com"), age=timedelta(minutes=10), campaign=NEW)
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        assert env.send(today(), instance, campaign=NEW, catch_up=True).success
        meta = refresh(env, instance)
    assert meta["campaigns"] == 1 and meta["campaigns not loaded"] == 1
    assert meta[f"emails sent {NEW}"] == 1
    assert not any(OLD in name for name in meta)
    assert f"| {today()} | 1 | 1 |" in meta["sends per day"]
    assert meta["funnels side by side"].startswith(f"| measure | {NEW} |\n")
