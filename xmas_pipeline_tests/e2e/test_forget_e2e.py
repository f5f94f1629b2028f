"""Forgetting a person, end to end: signups, sends, a booking, delivery events and a
Notion sync, then `xmas-pipeline forget`; nothing the pipeline holds names them after,
and a new signup of theirs is suppressed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from xmas_pipeline.cli import main
from xmas_pipeline.dagster_defs.forget import FORGET_JOB
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import Workspace, add_contact, busos_workspace
from xmas_pipeline_tests.support.calcom_payloads import webhook_created
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import (
    PipelineEnv,
    make_env,
    materializations,
    signup,
    today,
)

GONE = "crit@x.com"
KEPT = "opt@x.com"


@pytest.fixture
def notion() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        yield server


def store_mentions(env: PipelineEnv, address: str) -> dict[str, int]:
    """Rows per table (every table in the database, every text column) holding it."""
    engine = sa.create_engine(env.settings.database_url)
    found: dict[str, int] = {}
    try:
        db = sa.MetaData()
        db.reflect(engine)
        with engine.connect() as conn:
            for table in db.sorted_tables:
                for row in conn.execute(sa.select(table)).mappings():
                    if any(address in str(v).lower() for v in row.values() if v is not None):
                        found[table.name] = found.get(table.name, 0) + 1
    finally:
        engine.dispose()
    return found


def file_mentions(folder: Path, address: str) -> list[str]:
    if not folder.exists():
        return []
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file()
        and (
            address in p.name.lower()
            or address in p.read_bytes().decode("utf-8", "replace").lower()
        )
    )


def notion_mentions(notion: FakeNotion, ws: Workspace, address: str) -> list[dict[str, Any]]:
    """Live (not trashed) Email Sequence and Email Analytics pages holding it."""
    rows = notion.rows(ws.sequences) + notion.rows(ws.analytics or "")
    return [r for r in rows if address in str(r).lower()]


def crm_contact(notion: FakeNotion, ws: Workspace, address: str) -> dict[str, Any]:
    (row,) = [r for r in notion.rows(ws.contacts) if str(r.get("email")).lower() == address]
    return row


def run(env: PipelineEnv, job: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return env.defs.resolve_job_def(job).execute_in_process(
        partition_key=today(), instance=instance, raise_on_error=False
    )


def delivered(provider_id: str, to: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "type": "email.delivered",
        "created_at": now,
        "data": {"email_id": provider_id, "created_at": now, "to": [to], "subject": "Hi"},
    }


def live_pipeline(
    notion: FakeNotion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[PipelineEnv, Workspace]:
    ws = busos_workspace(notion, analytics=True)
    add_contact(notion, ws, GONE)
    env_vars = {
        "XMAS_TESTING_MODE": "true",
        "XMAS_NOTION_RATE_PER_S": "10",  # the fake answers at once; the CLI reads the env too
        "NOTION_TOKEN": notion.token,
        "NOTION_BASE_URL": notion.base_url,
        "NOTION_CONTACTS_DB_ID": ws.contacts,
        "NOTION_EMAIL_SEQUENCE_DB_ID": ws.sequences,
        "NOTION_EMAIL_ANALYTICS_DB_ID": ws.analytics or "",
        "XMAS_UNSUBSCRIBE_SECRET": "s3cret-unsub",
    }
    monkeypatch.setenv("XMAS_HOME", str(tmp_path / "home"))
    for name, value in env_vars.items():
        monkeypatch.setenv(name, value)
    return make_env(tmp_path / "home", **env_vars), ws


def fill(env: PipelineEnv, instance: dg.DagsterInstance) -> None:
    """Signups, sends, a booking, delivery events and a Notion sync."""
    env.drop_signup(signup("Crit@X.com", red=2))
    env.drop_signup(signup(KEPT))
    assert env.ingest(today(), instance).success
    assert env.send(today(), instance, catch_up=True).success
    start = datetime.now(UTC) + timedelta(days=3)
    booking = webhook_created("bkGone1", start, at=datetime.now(UTC), email="CRIT@x.com")
    env.inbox.write_json("bookings", booking)
    assert run(env, "ingest_bookings", instance).success
    log = env.store().sent_log(env.campaign, "2000-01-01", "2999-01-01")
    for row in log.itertuples():
        env.inbox.write_json("email-events", delivered(row.provider_id, row.contact_key))
    assert run(env, "ingest_email_events", instance).success
    sync = env.defs.resolve_job_def("sync_notion").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert sync.success


def test_forget_erases_a_person_everywhere_and_suppresses_a_new_signup(
    notion: FakeNotion,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env, ws = live_pipeline(notion, tmp_path, monkeypatch)
    with in_memory_instance() as instance:
        fill(env, instance)
        before = store_mentions(env, GONE)
        assert {"sequences", "messages", "bookings", "contacts", "message_events"} <= set(before)
        assert {"message_status", "notion_pages", "notion_contacts"} <= set(before)
        assert file_mentions(env.home / "inbox", GONE) and file_mentions(env.outbox, GONE)
        assert notion_mentions(notion, ws, GONE)
        assert any(GONE in str(r).lower() for r in notion.rows(ws.analytics or ""))
        assert crm_contact(notion, ws, GONE)["Booking Status"] == "Booked"

        assert main(["forget", "CRIT@x.com"]) == 0
        out = capsys.readouterr().out
        assert "store sequences: 1" in out and "store messages: 1" in out
        assert "inbox signups: 1" in out and "inbox bookings: 1" in out
        assert "notion pages trashed: 1" in out and "notion contacts cleared: 1" in out
        assert "notion analytics pages trashed: 1" in out
        assert "Dagster's event log" in out and "backups" in out
        assert GONE not in out.lower()

        assert store_mentions(env, GONE) == {}
        assert file_mentions(env.home / "inbox", GONE) == []
        assert file_mentions(env.outbox, GONE) == []
        assert notion_mentions(notion, ws, GONE) == []
        crm = crm_contact(notion, ws, GONE)  # the CRM's page is the team's: cleared, kept
        assert not crm["Booking Status"] and not crm["Christmas Campaign Status"]
        assert not crm["Diagnostic Call Date"]
        # Everyone else is untouched.
        assert "sequences" in store_mentions(env, KEPT)
        assert file_mentions(env.outbox, KEPT) and notion_mentions(notion, ws, KEPT)

        # They sign up again: suppressed, stored nowhere, never emailed.
        env.drop_signup(signup("crit@X.com", red=2))
        again = env.ingest(today(), instance)
        meta = materializations(again, "email_sequences")[0]
        assert meta["suppressed (forgotten)"] == 1 and meta["new sequences"] == 0
        env.send(today(), instance, catch_up=True)
        # A delivery event for an email sent before forgetting arrives late: dropped too.
        env.inbox.write_json("email-events", delivered("re_late", GONE))
        events = materializations(run(env, "ingest_email_events", instance), "email_events")[0]
        assert events["suppressed (forgotten)"] == 1
        assert store_mentions(env, GONE) == {}
        assert file_mentions(env.home / "inbox", GONE) == []
        assert file_mentions(env.outbox, GONE) == []
        assert GONE not in str(meta).lower()


def test_forget_refuses_a_malformed_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XMAS_HOME", str(tmp_path / "home"))
    assert main(["forget", "jane-at-example.com"]) == 2
    assert "not a valid email address" in capsys.readouterr().err
    assert not (tmp_path / "home" / "state.db").exists()  # nothing touched


def test_the_forget_job_shows_counts_and_a_hash_never_the_address(
    notion: FakeNotion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, ws = live_pipeline(notion, tmp_path, monkeypatch)
    with in_memory_instance() as instance:
        fill(env, instance)
        result = env.defs.resolve_job_def(FORGET_JOB).execute_in_process(
            instance=instance,
            run_config={"ops": {"forget_person": {"config": {"email": "Crit@X.com"}}}},
        )
        assert result.success
        (event,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
        meta = {k: v.value for k, v in event.step_output_data.metadata.items()}
        assert meta["store sequences"] == 1 and meta["notion pages trashed"] == 1
        assert len(meta["address hash (prefix)"]) == 12
        logged = [str(e.message) + str(e.dagster_event) for e in instance.all_logs(result.run_id)]
        assert GONE not in str(meta).lower()
        assert not any(GONE in text.lower() for text in logged)
    assert store_mentions(env, GONE) == {}
    assert notion_mentions(notion, ws, GONE) == []


def test_the_forget_job_refuses_a_malformed_address_without_echoing_it(tmp_path: Path) -> None:
    env = make_env(tmp_path / "home")
    with in_memory_instance() as instance:
        result = env.defs.resolve_job_def(FORGET_JOB).execute_in_process(
            instance=instance,
            run_config={"ops": {"forget_person": {"config": {"email": "jane-at-x.com"}}}},
            raise_on_error=False,
        )
        assert not result.success
        (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert "not a valid address" in failure.step_failure_data.error.message
        assert not any("jane-at-x.com" in str(e.message) for e in instance.all_logs(result.run_id))
