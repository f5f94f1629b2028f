"""Every send path sends exactly what passed the template check, and nothing without one.

A template edited in Notion (kept in the store as `notion_edits_sensor` last read it) may
drop what every bulk email must carry (the unsubscribe link, the postal address). The
send job's blocking check stops its own run; a `deliveries` materialized alone and the
one-off re-send check what they load themselves; and within a run, `deliveries` renders
from the snapshot its check passed, not from a later edit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.send_switch import SqlTemplateSnapshots
from xmas_pipeline.core.ports import NotionTemplate
from xmas_pipeline.core.render import TemplateSource, load_template_dir
from xmas_pipeline.services.checked_templates import (
    TemplatesRefused,
    keep_checked,
    templates_to_send,
)
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import PipelineEnv, make_env, signup, today

# email-1 as someone might leave it in Notion: no unsubscribe link, no postal address.
BARE = NotionTemplate(
    name="email-1",
    page_id="page-1",
    subject="Your results, {{ name }}",
    html="<p>Hi {{ name }}, here are your results.</p>",
    edited_at=datetime(2026, 12, 1, tzinfo=UTC),
)


@pytest.fixture
def env(tmp_path: Path) -> PipelineEnv:
    return make_env(tmp_path / "home", XMAS_TESTING_MODE="true")


def edit_in_notion(env: PipelineEnv, template: NotionTemplate) -> None:
    SqlNotionPages(env.settings.database_url).save_notion_templates([template])


def signed_up(env: PipelineEnv, instance: dg.DagsterInstance) -> None:
    env.drop_signup(signup("jane@x.com"), age=timedelta(minutes=2))
    assert env.ingest(today(), instance).success


def test_deliveries_alone_refuses_templates_that_fail_the_check(env: PipelineEnv) -> None:
    with in_memory_instance() as instance:
        signed_up(env, instance)
        edit_in_notion(env, BARE)
        alone = env.defs.resolve_job_def(env.name("send_due_emails")).execute_in_process(
            partition_key=today(),
            instance=instance,
            run_config={"ops": {env.name("deliveries"): {"config": {"catch_up": True}}}},
            asset_selection=[env.key("deliveries")],
            raise_on_error=False,
        )
        assert not alone.success
        [failure] = alone.get_step_failure_events()
        text = str(failure.step_failure_data.user_failure_data.description)
        assert "unsubscribe link" in text and "email-1" in text
        assert env.outbox_files() == []


def test_the_one_off_resend_refuses_templates_that_fail_the_check(env: PipelineEnv) -> None:
    with in_memory_instance() as instance:
        signed_up(env, instance)
        edit_in_notion(env, BARE)
        result = env.defs.resolve_job_def(env.name("resend_contact")).execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    env.name("resend_to_contact"): {
                        "config": {"email": "jane@x.com", "steps": ["email-1"]}
                    }
                }
            },
            raise_on_error=False,
        )
        assert not result.success
        assert env.outbox_files() == []


def test_a_send_run_keeps_what_its_check_rendered(env: PipelineEnv) -> None:
    with in_memory_instance() as instance:
        signed_up(env, instance)
        run = env.send(today(), instance, catch_up=True)
        assert run.success
    kept = SqlTemplateSnapshots(env.settings.database_url).load(run.run_id)
    assert kept is not None and kept.problems == []
    assert kept.sources["email-1"]["subject"] == load_template_dir()["email-1"].subject


def test_a_run_sends_its_snapshot_not_an_edit_made_after_its_check(env: PipelineEnv) -> None:
    snapshots = SqlTemplateSnapshots(env.settings.database_url)
    checked = load_template_dir()
    keep_checked(snapshots, env.campaign, "run-1", checked, [])
    edited = {
        **checked,
        "email-1": TemplateSource("email-1", BARE.subject, BARE.html),
    }
    # The edit lands between the check and the send: the run still sends what was checked.
    sources = templates_to_send(snapshots, lambda: edited, env.campaign, "run-1")
    assert sources["email-1"] == checked["email-1"]
    # A run without a check of its own checks what it loads, and refuses the bare edit.
    with pytest.raises(TemplatesRefused, match="unsubscribe link"):
        templates_to_send(snapshots, lambda: edited, env.campaign, "run-2")
    # A run whose check failed sends nothing.
    keep_checked(snapshots, env.campaign, "run-3", edited, ["email-1 [CRITICAL]: no preheader"])
    with pytest.raises(TemplatesRefused, match="no preheader"):
        templates_to_send(snapshots, lambda: checked, env.campaign, "run-3")
