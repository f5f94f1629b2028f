"""An existing single-campaign deployment upgrades in place: a store and a Dagster
instance written by the last single-campaign release (`fixtures/upgrade/`: SQLite with
Notion on, PostgreSQL with Notion off; four people sent emails 1 and 2, then the campaign
paused) are run by this release, with the shipped campaigns folder (two campaigns).

The campaign stays paused across the rename of its assets, jobs and schedule; once
resumed, email 3 goes to each person once and nothing already sent goes again; with
Notion, each person keeps their one Email Sequence page. The instance keeps the old asset
keys' history next to the new, prefixed ones (the README's Upgrades section says so).
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import time_machine

from xmas_pipeline.dagster_defs.notion import SYNC_JOB
from xmas_pipeline.dagster_defs.pausing import RESUME_JOB, SWITCH_ASSET
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.support.pipeline_env import make_env, materializations
from xmas_pipeline_tests.support.upgrade_fixture import VARIANTS, old_deployment

# Email 3 (72 h after the signups of 2025-12-02 14:59) is due; 11:00 in Toronto.
AFTER_UPGRADE = datetime(2025, 12, 5, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_single_campaign_deployment_upgrades_in_place(variant: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        old = stack.enter_context(old_deployment(variant, tmp_path / "old"))
        notion = stack.enter_context(FakeNotion())
        settings: dict[str, str] = {}
        if old.database_url:
            settings["XMAS_DATABASE_URL"] = old.database_url
        if old.notion is not None:
            notion.restore_workspace(old.notion)
            ids = {db["title"]: db["id"] for db in old.notion["databases"].values()}
            settings |= {
                "NOTION_TOKEN": notion.token,
                "NOTION_BASE_URL": notion.base_url,
                "NOTION_CONTACTS_DB_ID": ids["BusinessX Canada"],
                "NOTION_EMAIL_SEQUENCE_DB_ID": ids["Email Sequence"],
            }
        env = make_env(old.home, **settings)
        assert env.campaign.slug == old.manifest["campaign"]
        people = old.manifest["people"]
        # The old release's instance folder, as it wrote it (the same way: SQLite storage).
        instance = stack.enter_context(dg.DagsterInstance.local_temp(tempdir=str(old.dagster_home)))
        day = AFTER_UPGRADE.strftime("%Y-%m-%d")
        sent_before = sorted(env.outbox_files())
        assert len(sent_before) == len(people) * 2  # emails 1 and 2, by the old release

        with time_machine.travel(AFTER_UPGRADE, tick=True):
            # Paused before the upgrade: still paused under the new names.
            paused = env.send(day, instance)
            assert paused.success
            assert materializations(paused, "deliveries")[0]["sent"] == 0
            assert sorted(env.outbox_files()) == sent_before

            resume = env.defs.resolve_job_def(env.name(RESUME_JOB))
            config = {"ops": {env.name(SWITCH_ASSET): {"config": {"pause": False}}}}
            assert resume.execute_in_process(instance=instance, run_config=config).success
            resumed = env.send(day, instance)
            assert resumed.success
            assert materializations(resumed, "deliveries")[0]["sent"] == len(people)
            again = env.send(day, instance)
            assert materializations(again, "deliveries")[0]["sent"] == 0

            if old.notion is not None:
                sync = env.defs.resolve_job_def(SYNC_JOB).execute_in_process(instance=instance)
                assert sync.success
                # The new campaign waits for `notion setup` (README, Upgrades); the old
                # one's pages are brought in step meanwhile.
                stopped = materializations(sync, "notion_email_sequence")[0]["stopped"]
                assert "Christmas 2026 Campaign Status" in stopped

        # Each person got each of emails 1-3 exactly once.
        sent = env.outbox_files()
        for person in people:
            mine = sorted(n for n in sent if f"__{person}__" in n)
            assert mine == [f"{env.campaign.slug}__{person}__email-{n}.eml" for n in (1, 2, 3)]
        with sa.create_engine(env.settings.database_url).connect() as conn:
            rows = conn.execute(sa.text("SELECT message_id FROM messages")).scalars().all()
        assert len(rows) == len(set(rows)) == len(people) * 3

        if old.notion is not None:
            pages = notion.rows(ids["Email Sequence"])
            assert sorted(p["Email"] for p in pages) == sorted(people)  # none duplicated
            assert all(p["Email 3 Sent"] for p in pages)

        # The history of the old keys stays; the campaign's assets are the prefixed ones.
        keys = set(instance.get_asset_keys())
        assert dg.AssetKey("deliveries") in keys and env.key("deliveries") in keys
