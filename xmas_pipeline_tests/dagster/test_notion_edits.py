"""`notion_edits_sensor` on the real wiring against the fake Notion API: Paused set in
Notion stops the next email and unticking it lets it go, an edited template is what the
next send renders, a tick with nothing changed costs one request per database, and Notion
failing fails the tick without losing anything."""

from __future__ import annotations

import email
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from xmas_pipeline.core.render import load_template_dir
from xmas_pipeline.dagster_defs.notion import SYNC_JOB
from xmas_pipeline.dagster_defs.resources import (
    StateStoreResource,
    notion_resource,
)
from xmas_pipeline.services.notion_edits import cursor_state
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import Workspace, busos_workspace
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)

QUERY = "POST /v1/data_sources/{id}/query"


@pytest.fixture
def notion() -> Iterator[FakeNotion]:
    with FakeNotion() as fake:
        yield fake


def notion_env(tmp_path: Path, fake: FakeNotion) -> tuple[PipelineEnv, Workspace]:
    ws = busos_workspace(fake, templates=True)
    env = make_env(
        tmp_path / "home",
        XMAS_TESTING_MODE="true",
        XMAS_SENSOR_INTERVAL_SECONDS="20",
        XMAS_NOTION_RATE_PER_S="10",
        NOTION_TOKEN=fake.token,
        NOTION_BASE_URL=fake.base_url,
        NOTION_CONTACTS_DB_ID=ws.contacts,
        NOTION_EMAIL_SEQUENCE_DB_ID=ws.sequences,
        NOTION_TEMPLATES_DB_ID=ws.templates or "",
    )
    return env, ws


class Ticks:
    """Evaluates `notion_edits_sensor` as the daemon would, with the code location's
    resources."""

    def __init__(self, env: PipelineEnv, instance: dg.DagsterInstance) -> None:
        self.sensor = env.defs.resolve_sensor_def("notion_edits_sensor")
        self.instance = instance
        self.resources: dict[str, Any] = {
            "store": StateStoreResource(database_url=env.settings.database_url),
            "notion": notion_resource(env.settings),
        }

    def __call__(self) -> str:
        context = dg.build_sensor_context(instance=self.instance, resources=self.resources)
        result = self.sensor(context)
        assert isinstance(result, dg.SkipReason)  # it applies edits, it starts no run
        return str(result.skip_message)


def sync(env: PipelineEnv, instance: dg.DagsterInstance) -> None:
    assert env.defs.resolve_job_def(SYNC_JOB).execute_in_process(instance=instance).success


def sequence_page(notion: FakeNotion, ws: Workspace, address: str) -> str:
    return next(str(r["_id"]) for r in notion.rows(ws.sequences) if r["Email"] == address)


def test_the_sensor_is_wired_only_with_notion(tmp_path: Path, notion: FakeNotion) -> None:
    env, _ = notion_env(tmp_path, notion)
    sensor = env.defs.resolve_sensor_def("notion_edits_sensor")
    assert sensor.minimum_interval_seconds == 20  # XMAS_SENSOR_INTERVAL_SECONDS
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {"store", "notion"} <= set(sensor.required_resource_keys)
    plain = make_env(tmp_path / "plain")
    sensors = {s.name for s in plain.defs.get_repository_def().sensor_defs}
    assert "signups_sensor" in sensors and "notion_edits_sensor" not in sensors


def test_paused_in_notion_stops_the_next_email_and_unpausing_lets_it_go(
    tmp_path: Path, notion: FakeNotion
) -> None:
    env, ws = notion_env(tmp_path, notion)
    env.drop_signup(signup("a@x.com"))
    env.drop_signup(signup("b@x.com"))
    with in_memory_instance() as instance:
        tick = Ticks(env, instance)
        assert env.ingest(today(), instance).success
        sync(env, instance)  # the Email Sequence pages exist; nothing was sent yet
        assert tick().startswith("nothing changed")  # the first look

        notion.edit_row(sequence_page(notion, ws, "a@x.com"), {"Paused": True})
        assert tick().startswith("1 paused")
        send = env.send(today(), instance, catch_up=True)
        meta = materializations(send, "deliveries")[0]
        assert (meta["sent"], meta["skipped"]) == (1, 1)
        assert "| skipped | paused | 1 |" in meta["reasons"]
        assert "| skipped | christmas-2025/a@x.com/email-1 |" in meta["problems"]
        sync(env, instance)  # the pause is the store's now: Notion already shows it

        notion.edit_row(sequence_page(notion, ws, "a@x.com"), {"Paused": False})
        assert tick().startswith("1 unpaused")
        send = env.send(today(), instance, catch_up=True)
        assert materializations(send, "deliveries")[0]["sent"] == 1
        assert len(env.outbox_files()) == 2  # each welcome once

        notion.reset_counts()
        assert tick().startswith("nothing changed")
        # The sync's writes came back; past them, one query per database and no more
        # (the Email Sequence DB is read once per campaign: a cursor each).
        assert notion.counts == {QUERY: 2 + len(env.settings.campaigns().loaded)}


def test_an_edited_template_is_what_the_next_send_renders(
    tmp_path: Path, notion: FakeNotion
) -> None:
    env, ws = notion_env(tmp_path, notion)
    assert ws.templates
    shipped = load_template_dir()["email-1"]
    edited = shipped.html.replace("<title>BusOS</title>", "<title>BusOS, edited</title>")
    assert edited != shipped.html
    page = notion.add_row(
        ws.templates,
        {
            "Template Name": "email-1",
            "Subject Line": "{{ name }}, your score (edited in Notion)",
            "Email Body HTML": edited,  # several rich_text pieces of 2,000 characters
        },
    )
    env.drop_signup(signup("a@x.com", first_name="Sam"))
    with in_memory_instance() as instance:
        tick = Ticks(env, instance)
        assert tick().startswith("1 templates")
        assert env.ingest(today(), instance).success
        notion.reset_counts()
        assert materializations(env.send(today(), instance, catch_up=True), "deliveries")
        assert notion.total == 0  # sending never reads Notion
        [eml] = env.outbox_files()
        message = email.message_from_bytes((env.outbox / eml).read_bytes())
        assert message["Subject"] == "Sam, your score (edited in Notion)"
        [html] = env.outbox_files(".html")
        assert "<title>BusOS, edited</title>" in (env.outbox / html).read_text()

        notion.edit_row(page, {"Email Body HTML": ""})  # emptied: the shipped one again
        assert "1 templates dropped" in tick()
        sources = StateStoreResource(database_url=env.settings.database_url).templates()
        assert sources["email-1"].origin != "notion"


def test_notion_failing_fails_the_tick_and_keeps_the_cursor(
    tmp_path: Path, notion: FakeNotion
) -> None:
    env, ws = notion_env(tmp_path, notion)
    env.drop_signup(signup("a@x.com"))
    with in_memory_instance() as instance:
        tick = Ticks(env, instance)
        assert env.ingest(today(), instance).success
        sync(env, instance)
        tick()
        pages = StateStoreResource(database_url=env.settings.database_url).notion_pages()
        cursor = pages.state(cursor_state("Email Sequence DB"))
        notion.edit_row(sequence_page(notion, ws, "a@x.com"), {"Paused": True})
        token, notion.token = notion.token, "secret_revoked"  # the integration lost access
        with pytest.raises(Exception, match=r"Notion edits not read .*401"):
            tick()
        assert pages.state(cursor_state("Email Sequence DB")) == cursor
        notion.token = token
        assert tick().startswith("1 paused")  # nothing was lost
