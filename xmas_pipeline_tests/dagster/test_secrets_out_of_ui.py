"""Secrets stay out of the Dagster UI, and no launch can send one elsewhere.

With every integration on and every secret set to a marker, the UI's own GraphQL answers
(resources page, launchpad defaults and config types, partition sets, schedules, sensors,
runs with their config, tags and events) and the instance's storage hold no marker, after
real runs that used every secret. A run config that points a resource holding a secret (or
deciding where one goes) somewhere else is refused by Dagster's config check before a run
exists, so nothing reaches that address.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_graphql.test.utils import execute_dagster_graphql
from dagster_shared.serdes import serialize_value

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.adapters.sql.secrets import SqlSecrets, unsubscribe_secret
from xmas_pipeline.core.campaign import DEFAULT_CAMPAIGN_SLUG
from xmas_pipeline.dagster_defs import jobs
from xmas_pipeline.dagster_defs.build import build_definitions
from xmas_pipeline.dagster_defs.jobs import INGEST_SIGNUPS_JOB, deliveries_config
from xmas_pipeline.dagster_defs.names import campaign_name
from xmas_pipeline.dagster_defs.notion import SYNC_JOB
from xmas_pipeline.settings import Settings
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import busos_workspace
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, running_fake
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import make_env, signup, today
from xmas_pipeline_tests.support.secret_stack import POSTAL_ADDRESS, secret_stack
from xmas_pipeline_tests.support.ui_secrets import (
    SecretMarkers,
    launch,
    notion_elsewhere,
    sender_elsewhere,
    ui_answers,
)

PROTECTED = {"store", "inbox", "sender", "alerts", "notion", "calcom"}
# The default campaign's jobs (the shipped campaigns folder: every test here uses it).
SEND_JOB = campaign_name(DEFAULT_CAMPAIGN_SLUG, jobs.SEND_JOB)
FUNNEL_JOB = campaign_name(DEFAULT_CAMPAIGN_SLUG, jobs.FUNNEL_JOB)
CATCH_UP = deliveries_config(DEFAULT_CAMPAIGN_SLUG, catch_up=True)
CODE_LOCATION = """
from xmas_pipeline.dagster_defs.build import build_definitions
from xmas_pipeline.settings import Settings

defs = build_definitions(Settings.from_env())
"""


def _environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """The process environment holds exactly these pipeline variables, as a deployment's."""
    for name in list(os.environ):
        if name.startswith(("XMAS_", "NOTION_", "RESEND_", "CALCOM_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _redirect(resource: str, **config: Any) -> dict[str, Any]:
    return {"resources": {resource: {"config": config}}}


def test_the_ui_shows_no_secret_after_real_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with secret_stack(tmp_path / "home") as stack, running_fake() as elsewhere:
        _environment(monkeypatch, stack.env)
        settings = Settings.from_env()
        defs = build_definitions(settings)
        defs.get_repository_def()
        code = tmp_path / "code_location.py"
        code.write_text(CODE_LOCATION)
        inbox = Inbox(settings.inbox_root)
        inbox.write("signups", json.dumps(signup("crit@example.com", red=2)).encode())
        inbox.write("signups", json.dumps(signup("calm@example.com")).encode())
        with dg.instance_for_test() as instance:
            job = defs.resolve_job_def
            day = today()
            assert (
                job(INGEST_SIGNUPS_JOB)
                .execute_in_process(partition_key=day, instance=instance)
                .success
            )
            assert (
                job(SEND_JOB)
                .execute_in_process(partition_key=day, instance=instance, run_config=CATCH_UP)
                .success
            )
            assert job(SYNC_JOB).execute_in_process(instance=instance).success
            # Every secret did its work: the key, the token, the alert webhook.
            assert len(stack.resend.accepted) == 2
            assert len(stack.notion.rows(stack.workspace.sequences)) == 2
            assert [post.body for post in stack.chat.posts]

            origin = LoadableTargetOrigin(python_file=str(code), attribute="defs")
            with in_process_test_workspace(instance, origin) as context:
                [location] = context.code_location_names

                def query(text: str, variables: dict[str, Any]) -> dict[str, Any]:
                    return dict(execute_dagster_graphql(context, text, variables).data)

                refused = launch(
                    query,
                    location,
                    SEND_JOB,
                    {**CATCH_UP, **sender_elsewhere(settings, elsewhere.base_url)},
                    tags=[("dagster/partition", day)],
                )
                answers = ui_answers(query, location)
            stored = {
                "run storage": serialize_value(instance.get_runs()),
                "event log": "\n".join(
                    serialize_value(record)
                    for run in instance.get_runs()
                    for record in instance.all_logs(run.run_id)
                ),
            }

    assert refused["__typename"] == "RunConfigValidationInvalid", refused
    [error] = refused["errors"]
    assert "unexpected config entries" in error["message"]
    assert "root:resources:sender:config" in error["message"]
    assert "resend_api_url" in error["message"]
    assert elsewhere.requests == []

    resources = {
        r["name"]: r
        for r in answers.data["resources"]["allTopLevelResourceDetailsOrError"]["results"]
    }
    assert set(resources) >= PROTECTED
    for name in PROTECTED:
        assert resources[name]["configFields"] == [] == resources[name]["configuredValues"]
    assert "RESEND_API_KEY" in resources["sender"]["description"]  # named, never shown
    launchpad = answers.data[f"launchpad {SEND_JOB}"]
    assert "deliveries" in launchpad["runConfigSchemaOrError"]["rootDefaultYaml"]
    assert launchpad["partitionSetsOrError"]["results"][0]["partitionsOrError"]["results"]
    assert {run["jobName"] for run in answers.runs()} == {INGEST_SIGNUPS_JOB, SEND_JOB, SYNC_JOB}
    texts = answers.texts()
    [send_events] = [
        text for where, text in texts.items() if where.startswith(f"events of {SEND_JOB}")
    ]
    assert "MaterializationEvent" in send_events and '"resend"' in send_events

    assert stack.markers.leaks({**texts, **stored, "refusal": json.dumps(refused)}) == []


def test_settings_given_as_a_mapping_show_no_secret_either(tmp_path: Path) -> None:
    """Tests (and tools) build the code location from a mapping, not the process
    environment: the code location's snapshot, all the UI ever gets from it, holds no
    secret either, and only the campaign resource has launch-time config."""
    markers = SecretMarkers()
    env = markers.env(
        alert_url=f"https://hooks.example.com/{markers.alert_token}",
        XMAS_HOME=str(tmp_path / "home"),
        XMAS_DATABASE_URL=markers.with_password("postgresql+psycopg://xmas@db.invalid/xmas"),
        NOTION_CONTACTS_DB_ID="contacts-db",
        NOTION_EMAIL_SEQUENCE_DB_ID="sequences-db",
        XMAS_INBOX_URL=f"s3://inbox-bucket/{markers.signup_token}",
    )
    defs = build_definitions(Settings.from_env(env))
    snapshot = RepositorySnap.from_def(defs.get_repository_def())
    resources = {r.name: r for r in snapshot.resources or []}
    assert set(resources) >= PROTECTED
    configurable = {name for name, r in resources.items() if r.config_field_snaps}
    assert configurable == set()
    assert markers.leaks({"code location snapshot": serialize_value(snapshot)}) == []


def test_a_resource_printed_shows_no_secret(tmp_path: Path) -> None:
    """A resource object in a traceback, a log line or a debugger prints no secret."""
    markers = SecretMarkers()
    env = markers.env(
        alert_url=f"https://hooks.example.com/{markers.alert_token}",
        XMAS_HOME=str(tmp_path / "home"),
        XMAS_DATABASE_URL=markers.with_password("postgresql+psycopg://xmas@db.invalid/xmas"),
        XMAS_INBOX_URL=f"s3://inbox-bucket/{markers.signup_token}",
        NOTION_CONTACTS_DB_ID="contacts-db",
        NOTION_EMAIL_SEQUENCE_DB_ID="sequences-db",
    )
    found = build_definitions(Settings.from_env(env)).get_repository_def()
    protected = {k: v for k, v in found.get_top_level_resources().items() if k in PROTECTED}
    with dg.build_resources(protected) as built:
        printed = {name: repr(getattr(built, name)) for name in protected}
    assert printed["sender"].startswith("EmailSenderResource(")
    assert "re_" not in printed["sender"]
    assert markers.leaks(printed) == []


def _refusal(exc: pytest.ExceptionInfo[dg.DagsterInvalidConfigError], resource: str) -> str:
    message = str(exc.value)
    assert "unexpected config entr" in message, message  # not merely incomplete
    assert f"root:resources:{resource}:config" in message, message
    return message


def test_a_run_config_cannot_point_resend_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEND_API_KEY", DEFAULT_API_KEY)
    with running_fake(rate_limit=None) as resend, running_fake() as elsewhere:
        env = make_env(
            tmp_path / "home",
            XMAS_TESTING_MODE="true",
            RESEND_API_KEY=DEFAULT_API_KEY,
            RESEND_API_URL=resend.base_url,
            XMAS_POSTAL_ADDRESS=POSTAL_ADDRESS,
            XMAS_PUBLIC_URL="https://campaign.example.com",
        )
        env.drop_signup(signup("a@example.com"))
        with in_memory_instance() as instance:
            assert env.ingest(today(), instance).success
            before = len(instance.get_runs())
            config = sender_elsewhere(env.settings, elsewhere.base_url)
            with pytest.raises(dg.DagsterInvalidConfigError) as refused:
                env.defs.resolve_job_def(SEND_JOB).execute_in_process(
                    partition_key=today(), instance=instance, run_config={**CATCH_UP, **config}
                )
            assert "resend_api_url" in _refusal(refused, "sender")
            assert len(instance.get_runs()) == before  # refused before a run existed
            assert elsewhere.requests == [] and resend.requests == []
            # The job's own config (the schedule's, a backfill's) still runs.
            assert env.send(today(), instance, catch_up=True).success
        assert elsewhere.requests == [] and len(resend.accepted) == 1


def test_a_run_config_cannot_point_notion_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeNotion() as notion, FakeNotion() as elsewhere:
        monkeypatch.setenv("NOTION_TOKEN", notion.token)
        workspace = busos_workspace(notion)
        env = make_env(
            tmp_path / "home",
            XMAS_TESTING_MODE="true",
            NOTION_TOKEN=notion.token,
            NOTION_BASE_URL=notion.base_url,
            NOTION_CONTACTS_DB_ID=workspace.contacts,
            NOTION_EMAIL_SEQUENCE_DB_ID=workspace.sequences,
        )
        env.drop_signup(signup("a@example.com"))
        with in_memory_instance() as instance:
            assert env.ingest(today(), instance).success  # one contact waits for Notion
            notion.reset_counts()
            config = notion_elsewhere(env.settings, elsewhere.base_url)
            with pytest.raises(dg.DagsterInvalidConfigError) as refused:
                env.defs.resolve_job_def(SYNC_JOB).execute_in_process(
                    instance=instance, run_config=config
                )
            assert "base_url" in _refusal(refused, "notion")
            assert elsewhere.total == 0 and notion.total == 0
            assert env.defs.resolve_job_def(SYNC_JOB).execute_in_process(instance=instance).success
        assert elsewhere.total == 0
        assert [row["Email"] for row in notion.rows(workspace.sequences)] == ["a@example.com"]


@pytest.mark.parametrize("resource", ["alerts", "store", "inbox"])
def test_no_other_protected_resource_takes_launch_time_config(
    tmp_path: Path, resource: str
) -> None:
    with ChatWebhookServer(flavour="json") as chat, ChatWebhookServer(flavour="json") as other:
        env = make_env(tmp_path / "home", XMAS_ALERT_WEBHOOK_URL=chat.url)
        env.drop_signup(signup("crit@example.com", red=2))
        elsewhere = tmp_path / "elsewhere"
        job, config = {
            "alerts": (INGEST_SIGNUPS_JOB, {"webhook_url": other.url}),
            "store": (FUNNEL_JOB, {"database_url": f"sqlite:///{elsewhere}.db"}),
            "inbox": (INGEST_SIGNUPS_JOB, {"root": str(elsewhere)}),
        }[resource]
        partition = today() if job == INGEST_SIGNUPS_JOB else None
        with in_memory_instance() as instance:
            with pytest.raises(dg.DagsterInvalidConfigError) as refused:
                env.defs.resolve_job_def(job).execute_in_process(
                    instance=instance,
                    partition_key=partition,
                    run_config=_redirect(resource, **config),
                )
            assert next(iter(config)) in _refusal(refused, resource)
            assert instance.get_runs() == []
        assert other.posts == [] and chat.posts == []
        assert not list(tmp_path.glob("elsewhere*"))


def test_a_failed_write_of_the_generated_key_does_not_show_it(tmp_path: Path) -> None:
    """The store's errors never carry a statement's parameters: a failed insert of the
    generated unsubscribe key would otherwise put the key in the run's failure message."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    secrets = SqlSecrets(url)
    secrets.prepare()
    with secrets.engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TRIGGER read_only BEFORE INSERT ON secrets "
                "BEGIN SELECT RAISE(ABORT, 'the store is read-only'); END"
            )
        )
    with pytest.raises(sa.exc.IntegrityError) as failed:
        unsubscribe_secret(None, url)
    message = str(failed.value)
    assert "the store is read-only" in message and "INSERT INTO secrets" in message
    assert "parameters hidden" in message and "unsubscribe-signing-key" not in message
