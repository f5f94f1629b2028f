"""One code location runs every campaign folder: each campaign's own assets, jobs and
schedules under its prefix, signups routed by the campaign their request names, a pause
per campaign, and a broken folder red in the UI while the others run."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from xmas_pipeline.core.campaign import SHIPPED_CAMPAIGNS_DIR
from xmas_pipeline.core.campaign_set import CAMPAIGN_FIELD
from xmas_pipeline.dagster_defs.campaigns import ASSET, CHECK_NAME
from xmas_pipeline.dagster_defs.ingestion import EVENTS_UNAVAILABLE_CHECK
from xmas_pipeline.dagster_defs.sequences import UNAVAILABLE_CHECK
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.support.clock import MovableClock
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    check_results,
    make_env,
    materializations,
    signup,
    today,
)
from xmas_pipeline_tests.support.sensor_ticks import Ticker

OLD = "christmas-2025"  # the default campaign
NEW = "christmas-2026"


def campaigns_dir(root: Path, *slugs: str) -> Path:
    """A campaigns directory holding copies of these shipped campaign folders."""
    root.mkdir(parents=True, exist_ok=True)
    for slug in slugs:
        shutil.copytree(SHIPPED_CAMPAIGNS_DIR / slug, root / slug)
    return root


def env_for(tmp_path: Path, folders: Path) -> PipelineEnv:
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true", XMAS_CAMPAIGNS_DIR=str(folders))


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return env_for(tmp_path, campaigns_dir(tmp_path / "campaigns", OLD, NEW))


def sent_by(env: PipelineEnv, slug: str) -> list[str]:
    return [name for name in env.outbox_files() if name.startswith(f"{slug}__")]


def pause(env: PipelineEnv, instance: dg.DagsterInstance, slug: str) -> None:
    config = {"ops": {env.name("send_switch", slug): {"config": {"pause": True, "reason": "x"}}}}
    job = env.defs.resolve_job_def(env.name("pause_sending", slug))
    assert job.execute_in_process(instance=instance, run_config=config).success


def test_each_campaign_has_its_own_assets_jobs_and_schedules(env: PipelineEnv) -> None:
    repository = env.defs.get_repository_def()
    keys = {k.to_user_string() for k in repository.asset_graph.get_all_asset_keys()}
    jobs = {job.name for job in repository.get_all_jobs()}
    schedules = {schedule.name for schedule in repository.schedule_defs}
    for prefix in ("christmas_2025", "christmas_2026"):
        for name in ("templates", "due_emails", "deliveries", "send_switch", "funnel"):
            assert f"{prefix}/{name}" in keys
        for name in (
            "send_due_emails",
            "pause_sending",
            "resume_sending",
            "refresh_funnel",
            "resend_contact",
        ):
            assert f"{prefix}__{name}" in jobs
        assert {f"{prefix}__send_schedule", f"{prefix}__funnel_schedule"} <= schedules
    # Global, one each.
    assert {"signups", "email_sequences", "bookings", "booking_state", "email_events"} <= keys
    assert {"campaign_folders", "campaigns_overview"} <= keys
    assert {"ingest_signups", "ingest_bookings", "ingest_email_events"} <= jobs
    assert "refresh_campaigns_overview" in jobs
    assert "campaigns_overview_schedule" in schedules
    # Each campaign's days start at its own start date; the global ones at the earliest.
    old = env.defs.resolve_job_def(env.name("send_due_emails", OLD)).partitions_def
    new = env.defs.resolve_job_def(env.name("send_due_emails", NEW)).partitions_def
    ingest = env.defs.resolve_job_def("ingest_signups").partitions_def
    assert old is not None and new is not None and ingest is not None
    assert old.get_first_partition_key() == "2025-11-01"
    assert new.get_first_partition_key() == "2026-11-01"
    assert ingest.get_first_partition_key() == "2025-11-01"


def test_signups_go_to_the_campaign_their_request_names(env: PipelineEnv) -> None:
    env.drop_signup(signup("old@x.com", red=2), age=timedelta(minutes=10), campaign=OLD)
    env.drop_signup(signup("new@x.com", red=2), age=timedelta(minutes=10), campaign=NEW)
    # A file from before the intake named the campaign: the default campaign's.
    env.drop_signup(signup("legacy@x.com"), age=timedelta(minutes=10))
    store = env.store()
    with in_memory_instance() as instance:
        ingested = env.ingest(today(), instance)
        assert ingested.success
        [meta] = materializations(ingested, "email_sequences")
        assert meta["new sequences"] == 3
        assert meta[f"started {OLD}"] == 2 and meta[f"started {NEW}"] == 1
        assert meta["campaign unavailable"] == 0
        loaded = env.settings.campaigns().loaded
        assert sorted(store.load_sequences(loaded[OLD])["contact_key"]) == [
            "legacy@x.com",
            "old@x.com",
        ]
        assert store.load_sequences(loaded[NEW])["contact_key"].tolist() == ["new@x.com"]

        # Each campaign's send job sends its own emails, and only those.
        assert env.send(today(), instance, campaign=NEW, catch_up=True).success
        assert sent_by(env, NEW) == ["christmas-2026__new@x.com__email-1.eml"]
        assert sent_by(env, OLD) == []
        assert env.send(today(), instance, campaign=OLD, catch_up=True).success
        assert sent_by(env, OLD) == [
            "christmas-2025__legacy@x.com__email-1.eml",
            "christmas-2025__old@x.com__email-1.eml",
        ]
        assert len(sent_by(env, NEW)) == 1


def test_pausing_one_campaign_leaves_the_other_sending(env: PipelineEnv) -> None:
    env.drop_signup(signup("old@x.com"), age=timedelta(minutes=10), campaign=OLD)
    env.drop_signup(signup("new@x.com"), age=timedelta(minutes=10), campaign=NEW)
    with dg.instance_for_test() as instance:
        welcome = env.defs.resolve_sensor_def("send_after_signups_sensor")
        first = dg.build_sensor_context(instance=instance, resources=env.resources("store"))
        welcome(first)  # the first look starts its clock
        pause(env, instance, OLD)
        assert env.ingest(today(), instance).success

        # The welcome sensor asks for the running campaign's send run only.
        after = dg.build_sensor_context(
            instance=instance, cursor=first.cursor, resources=env.resources("store")
        )
        [request] = welcome(after)
        assert request.job_name == env.name("send_due_emails", NEW)
        assert request.run_key and NEW in request.run_key
        assert env.name("deliveries", NEW) in request.run_config["ops"]

        # Each schedule reads its own campaign's switch.
        for slug, runs in ((OLD, 0), (NEW, 1)):
            schedule = env.defs.resolve_schedule_def(env.name("send_schedule", slug))
            with dg.build_schedule_context(
                instance=instance,
                scheduled_execution_time=datetime.now(UTC),
                repository_def=env.defs.get_repository_def(),
                resources=env.resources("store"),
            ) as context:
                tick = schedule.evaluate_tick(context)
            assert len(tick.run_requests or []) == runs, slug

        assert env.send(today(), instance, campaign=OLD, catch_up=True).success
        assert env.send(today(), instance, campaign=NEW, catch_up=True).success
    assert sent_by(env, OLD) == []
    assert sent_by(env, NEW) == ["christmas-2026__new@x.com__email-1.eml"]


def test_a_signup_for_a_campaign_not_loaded_is_kept_counted_and_red(
    env: PipelineEnv,
) -> None:
    kept = env.drop_signup(signup("lost@x.com"), campaign="easter-2027")
    env.drop_signup(signup("fine@x.com"), campaign=NEW)
    with in_memory_instance() as instance:
        ingested = env.ingest(today(), instance)
    assert ingested.success
    [meta] = materializations(ingested, "email_sequences")
    assert meta["campaign unavailable"] == 1 and meta["new sequences"] == 1
    assert check_results(ingested)[UNAVAILABLE_CHECK] is False
    assert Path(kept.path).exists()
    loaded = env.settings.campaigns().loaded
    store = env.store()
    assert "lost@x.com" not in set(store.load_sequences(loaded[OLD])["contact_key"])
    assert "lost@x.com" not in set(store.load_sequences(loaded[NEW])["contact_key"])


def test_a_broken_folder_is_red_and_the_other_campaign_runs(tmp_path: Path) -> None:
    folders = campaigns_dir(tmp_path / "campaigns", NEW)
    broken = folders / OLD  # the default campaign's folder, broken
    broken.mkdir()
    (broken / "campaign.yaml").write_text("slug: christmas-2025\nsteps: [\n")
    env = env_for(tmp_path, folders)
    repository = env.defs.get_repository_def()
    keys = {k.to_user_string() for k in repository.asset_graph.get_all_asset_keys()}
    assert "christmas_2026/deliveries" in keys
    assert not any(key.startswith("christmas_2025/") for key in keys)

    env.drop_signup(signup("new@x.com"), age=timedelta(minutes=10), campaign=NEW)
    # No campaign named: the default's, whose folder is broken: kept for later.
    waiting = env.drop_signup(signup("old@x.com"), age=timedelta(minutes=10))
    with in_memory_instance() as instance:
        ingested = env.ingest(today(), instance)
        assert ingested.success
        [meta] = materializations(ingested, "email_sequences")
        assert meta["new sequences"] == 1 and meta["campaign unavailable"] == 1
        assert Path(waiting.path).exists()
        assert env.send(today(), instance, campaign=NEW, catch_up=True).success
        assert sent_by(env, NEW) == ["christmas-2026__new@x.com__email-1.eml"]
        # The email events of the campaign that loads are applied (no default needed).
        new = env.settings.campaigns().loaded[NEW]
        [sent] = env.store().sent_log(new, "2000-01-01", "2999-12-31").to_dict("records")
        at = datetime.now(UTC).isoformat()
        env.inbox.write_json(
            "email-events",
            {
                "type": "email.opened",
                "created_at": at,
                "data": {
                    "email_id": sent["provider_id"],
                    "created_at": at,
                    "to": ["new@x.com"],
                    "tags": {"campaign": NEW, "step": "email-1"},
                },
            },
        )
        events = env.defs.resolve_job_def("ingest_email_events")
        assert events.execute_in_process(partition_key=today(), instance=instance).success
        assert env.store().delivery_status(new)["status"].tolist() == ["opened"]

        # The folders' check names the file and the reason, from a run and from the
        # sensor (no run needed).
        shown = dg.materialize(
            [a for a in repository.assets_defs_by_key.values() if ASSET in a.keys],
            instance=instance,
            raise_on_error=False,
        )
        [evaluation] = [
            e.asset_check_evaluation_data
            for e in shown.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        assert evaluation.check_name == CHECK_NAME and not evaluation.passed
        assert str(broken / "campaign.yaml") in (evaluation.description or "")
        assert "not valid YAML" in (evaluation.description or "")
        [folders_meta] = materializations(shown, "campaign_folders")
        assert folders_meta["broken"] == 1 and folders_meta["loaded"] == 1

        sensor = env.defs.resolve_sensor_def("campaign_folders_sensor")
        context = dg.build_sensor_context(instance=instance)
        result = sensor.evaluate_tick(context)
        [reported] = result.asset_events
        assert isinstance(reported, dg.AssetCheckEvaluation) and not reported.passed
        again = dg.build_sensor_context(instance=instance, cursor=result.cursor)
        assert not sensor.evaluate_tick(again).asset_events  # reported once per load

    # The folder fixed and the code location loaded again: the kept file is ingested.
    shutil.rmtree(broken)
    shutil.copytree(SHIPPED_CAMPAIGNS_DIR / OLD, broken)
    fixed = env_for(tmp_path, folders)
    with in_memory_instance() as instance:
        ingested = fixed.ingest(today(), instance)
    [meta] = materializations(ingested, "email_sequences")
    assert meta["campaign unavailable"] == 0 and meta[f"started {OLD}"] == 1
    assert check_results(ingested)[UNAVAILABLE_CHECK] is True
    assert fixed.store().load_sequences(fixed.campaign)["contact_key"].tolist() == ["old@x.com"]


def test_a_campaign_file_is_the_only_campaign(tmp_path: Path) -> None:
    """XMAS_CAMPAIGN_FILE runs that one campaign, whatever the campaigns folder holds."""
    folders = campaigns_dir(tmp_path / "campaigns", OLD, NEW)
    env = make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_CAMPAIGNS_DIR=str(folders),
        XMAS_CAMPAIGN_FILE=str(folders / NEW / "campaign.yaml"),
    )
    assert list(env.settings.campaigns().loaded) == [NEW]
    assert env.campaign.slug == NEW
    jobs = {job.name for job in env.defs.get_repository_def().get_all_jobs()}
    assert "christmas_2026__send_due_emails" in jobs
    assert not any(name.startswith("christmas_2025") for name in jobs)


def test_a_campaigns_waiting_alert_is_posted_by_the_outbox_sensor(
    tmp_path: Path, clock: MovableClock
) -> None:
    """Each campaign keeps its own alert outbox: the sensor posts every one of them."""
    with ChatWebhookServer(flavour="slack") as chat:
        env = make_env(
            tmp_path / "home",
            XMAS_TESTING_MODE="true",
            XMAS_CAMPAIGNS_DIR=str(campaigns_dir(tmp_path / "campaigns", OLD, NEW)),
            XMAS_ALERT_WEBHOOK_URL=chat.url,
        )
        env.drop_signup(signup("crit@x.com", red=2), campaign=NEW)
        chat.fail_with = 500
        with in_memory_instance() as instance:
            ingested = env.ingest(today(), instance)
            assert materializations(ingested, "email_sequences")[0]["critical alerts waiting"] == 1
            chat.fail_with = None
            clock.advance(2.2)  # past the first retry's backoff
            Ticker.of(env, instance, "alert_outbox_sensor")()
        [post] = chat.accepted
        assert "Christmas 2026" in post.body["text"]


def test_an_email_event_goes_to_the_campaign_its_email_was_sent_for(env: PipelineEnv) -> None:
    env.drop_signup(signup("eve@x.com"), campaign=NEW)
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        assert env.send(today(), instance, NEW, catch_up=True).success
        new = env.settings.campaigns().loaded[NEW]
        [sent] = env.store().sent_log(new, "2000-01-01", "2999-12-31").to_dict("records")
        at = datetime.now(UTC).isoformat()
        event = {
            "type": "email.opened",
            "created_at": at,
            "data": {
                "email_id": sent["provider_id"],
                "created_at": at,
                "to": ["eve@x.com"],
                # What Resend echoes back: the tags the email was sent with.
                "tags": {"campaign": NEW, "step": "email-1"},
            },
        }
        env.inbox.write_json("email-events", event)
        job = env.defs.resolve_job_def("ingest_email_events")
        assert job.execute_in_process(partition_key=today(), instance=instance).success
    status = env.store().delivery_status(new)
    assert status["status"].tolist() == ["opened"]  # the funnel of its own campaign
    assert env.store().delivery_status(env.campaign).empty


def test_an_email_event_of_a_campaign_not_loaded_stops_the_address_and_waits(
    tmp_path: Path,
) -> None:
    """christmas-2026's folder broken after eve got both welcomes: a hard bounce of its
    email stops christmas-2025's emails to her at once, and the event itself waits in the
    inbox (a red check) until the folder loads and the day runs again."""
    folders = campaigns_dir(tmp_path / "campaigns", OLD, NEW)
    env = env_for(tmp_path, folders)
    for slug in (OLD, NEW):
        env.drop_signup(signup("eve@x.com"), age=timedelta(minutes=10), campaign=slug)
    env.drop_signup(signup("ann@x.com"), age=timedelta(minutes=10), campaign=OLD)
    with in_memory_instance() as instance:
        assert env.ingest(today(), instance).success
        for slug in (OLD, NEW):
            assert env.send(today(), instance, campaign=slug, catch_up=True).success
    new = env.settings.campaigns().loaded[NEW]
    [welcome] = env.store().sent_log(new, "2000-01-01", "2999-12-31").to_dict("records")

    good = (folders / NEW / "campaign.yaml").read_text()
    (folders / NEW / "campaign.yaml").write_text("slug: christmas-2026\nsteps: [\n")
    broken = env_for(tmp_path, folders)
    at = datetime.now(UTC).isoformat()
    kept = broken.inbox.write_json(
        "email-events",
        {
            "type": "email.bounced",
            "created_at": at,
            "data": {
                "email_id": welcome["provider_id"],
                "created_at": at,
                "to": ["eve@x.com"],
                "bounce": {"type": "Permanent", "message": "550 5.1.1 user unknown"},
                "tags": {"campaign": NEW, "step": "email-1"},
            },
        },
    )
    job = broken.defs.resolve_job_def("ingest_email_events")
    with in_memory_instance() as instance:
        held = job.execute_in_process(partition_key=today(), instance=instance)
        assert held.success
        [meta] = materializations(held, "email_events")
        assert meta["campaign unavailable"] == 1 and meta["new"] == 0
        assert check_results(held)[EVENTS_UNAVAILABLE_CHECK] is False
        assert Path(kept.path).exists()
        # The stop flag holds across campaigns already: email 2 goes to ann, not to eve.
        assert broken.send(today(), instance, campaign=OLD, catch_up=True).success
    assert sorted(sent_by(broken, OLD)) == [
        "christmas-2025__ann@x.com__email-1.eml",
        "christmas-2025__ann@x.com__email-2.eml",
        "christmas-2025__eve@x.com__email-1.eml",
    ]
    assert broken.store().delivery_status(new).empty  # not recorded in a wrong campaign

    # The folder fixed, the day run again: the event is recorded in its own campaign.
    (folders / NEW / "campaign.yaml").write_text(good)
    fixed = env_for(tmp_path, folders)
    with in_memory_instance() as instance:
        again = fixed.defs.resolve_job_def("ingest_email_events").execute_in_process(
            partition_key=today(), instance=instance
        )
    [meta] = materializations(again, "email_events")
    assert meta["campaign unavailable"] == 0 and meta["new"] == 1
    assert check_results(again)[EVENTS_UNAVAILABLE_CHECK] is True
    assert fixed.store().delivery_status(new)["status"].tolist() == ["bounced"]


def test_a_campaign_that_loads_again_gets_its_waiting_days_ingested(tmp_path: Path) -> None:
    """christmas-2026's folder broken while a signup and an email event for it arrive:
    both wait. Once the folder is fixed and the code location loads it, the
    campaign_loaded_sensor asks for exactly the days holding them, and those runs take
    them; a day holding only the other campaign's files is left alone."""
    folders = campaigns_dir(tmp_path / "campaigns", OLD, NEW)
    good = (folders / NEW / "campaign.yaml").read_text()
    (folders / NEW / "campaign.yaml").write_text("slug: christmas-2026\nsteps: [\n")
    broken = env_for(tmp_path, folders)
    earlier = datetime.now(UTC) - timedelta(days=2)
    broken.inbox.write(
        "signups",
        json.dumps(signup("old@x.com")).encode(),
        received_at=earlier,
        request={CAMPAIGN_FIELD: OLD},
    )
    broken.drop_signup(signup("new@x.com"), age=timedelta(minutes=10), campaign=NEW)
    at = datetime.now(UTC).isoformat()
    broken.inbox.write_json(
        "email-events",
        {
            "type": "email.opened",
            "created_at": at,
            "data": {
                "email_id": "re_waiting1",
                "created_at": at,
                "to": ["new@x.com"],
                "tags": {"campaign": NEW, "step": "email-1"},
            },
        },
    )
    sensor_name = "campaign_loaded_sensor"
    with in_memory_instance() as instance:
        first = dg.build_sensor_context(instance=instance, resources=broken.resources("inbox"))
        assert broken.defs.resolve_sensor_def(sensor_name).evaluate_tick(first).run_requests == []
        assert broken.ingest(today(), instance).success
        assert broken.store().load_sequences(broken.campaign)["contact_key"].tolist() == []

        (folders / NEW / "campaign.yaml").write_text(good)
        fixed = env_for(tmp_path, folders)
        sensor = fixed.defs.resolve_sensor_def(sensor_name)

        def tick_after(cursor: str | None) -> Any:
            return sensor.evaluate_tick(
                dg.build_sensor_context(
                    instance=instance,
                    cursor=cursor,
                    resources=fixed.resources("inbox"),
                    repository_def=fixed.defs.get_repository_def(),
                )
            )

        tick = tick_after(first.cursor)
        asked = sorted((r.job_name, r.partition_key) for r in tick.run_requests or [])
        assert asked == [("ingest_email_events", today()), ("ingest_signups", today())]
        for request in tick.run_requests or []:
            job = fixed.defs.resolve_job_def(request.job_name)
            assert job.execute_in_process(
                partition_key=request.partition_key, instance=instance
            ).success
        # Asked once: the next tick of the same load asks nothing.
        assert not tick_after(tick.cursor).run_requests
    new = fixed.settings.campaigns().loaded[NEW]
    assert fixed.store().load_sequences(new)["contact_key"].tolist() == ["new@x.com"]
