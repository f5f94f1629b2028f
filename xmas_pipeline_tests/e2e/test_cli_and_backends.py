"""The CLI commands, and the whole pipeline switched to Notion + Resend by env vars.

Notion and Resend are the in-process fakes of their HTTP APIs; the pipeline runs the
real notion-client and resend SDK code against them, through a real Dagster instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from xmas_pipeline.cli import main
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import busos_workspace
from xmas_pipeline_tests.fakes.resend_api import DEFAULT_API_KEY, running_fake
from xmas_pipeline_tests.support.instance import in_memory_instance
from xmas_pipeline_tests.support.pipeline_env import make_env, materializations, signup, today


def test_preview_renders_a_template(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["preview", "--template", "email-2", "--segment", "CRITICAL", "--format", "subject"])
        == 0
    )
    subject = capsys.readouterr().out.strip()
    assert subject and "{{" not in subject
    assert main(["preview", "--template", "email-1", "--format", "html"]) == 0
    assert "<html" in capsys.readouterr().out.lower()


def test_preview_rejects_an_unknown_template(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", "--template", "email-99"]) == 2
    assert "email-99" in capsys.readouterr().err


def test_notion_setup_without_a_token_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NOTION_TOKEN", raising=False)
    assert main(["notion", "setup"]) == 2
    assert "NOTION_TOKEN" in capsys.readouterr().err


@pytest.fixture
def notion() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        yield server


def test_notion_setup_adds_the_missing_properties(
    notion: FakeNotion, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = busos_workspace(notion, with_setup=False)
    monkeypatch.setenv("NOTION_TOKEN", notion.token)
    monkeypatch.setenv("NOTION_BASE_URL", notion.base_url)
    monkeypatch.setenv("NOTION_CONTACTS_DB_ID", ws.contacts)
    monkeypatch.setenv("NOTION_EMAIL_SEQUENCE_DB_ID", ws.sequences)
    assert main(["notion", "setup"]) == 0
    first = capsys.readouterr().out
    assert "Meeting Time" in first and "Reminder 3 Sent" in first
    assert "Meeting Time" in notion.property_types(ws.sequences)
    assert notion.token not in first
    assert main(["notion", "setup"]) == 0
    assert "Meeting Time" not in capsys.readouterr().out.replace("nothing", "")


def test_pipeline_on_notion_and_resend(
    notion: FakeNotion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = busos_workspace(notion)
    with running_fake(rate_limit=None) as resend:
        env_vars = {
            "XMAS_TESTING_MODE": "true",
            "NOTION_TOKEN": notion.token,
            "NOTION_BASE_URL": notion.base_url,
            "NOTION_CONTACTS_DB_ID": ws.contacts,
            "NOTION_EMAIL_SEQUENCE_DB_ID": ws.sequences,
            "RESEND_API_KEY": DEFAULT_API_KEY,
            "RESEND_API_URL": resend.base_url,
            "XMAS_PUBLIC_URL": "https://busos.example.com",
            "XMAS_UNSUBSCRIBE_SECRET": "s3cret-unsub",
            "XMAS_POSTAL_ADDRESS": "BusOS Ltd, 1 King St W, Toronto ON",
            "XMAS_REPLY_TO": "hello@busos.example.com",
        }
        for name, value in env_vars.items():
            monkeypatch.setenv(name, value)
        env = make_env(tmp_path / "home", **env_vars)
        env.drop_signup(signup("crit@x.com", red=2))
        env.drop_signup(signup("opt@x.com"))
        with in_memory_instance() as instance:
            ingest = env.ingest(today(), instance)
            assert ingest.success
            assert materializations(ingest, "email_sequences")[0]["store"] == "sql"
            send = env.send(today(), instance, catch_up=True)
            assert send.success
            meta = materializations(send, "deliveries")[0]
            assert meta["sent"] == 2 and meta["sender"] == "resend"
            again = env.send(today(), instance, catch_up=True)
            assert materializations(again, "deliveries")[0]["sent"] == 0
            assert notion.rows(ws.sequences) == []  # sending never waited for Notion
            sync = env.defs.resolve_job_def("sync_notion").execute_in_process(
                instance=instance, raise_on_error=False
            )
            assert sync.success
            synced = materializations(sync, "notion_email_sequence")[0]
            assert synced["pages created"] == 2 and synced["queue depth"] == 0
        accepted = resend.accepted
    assert sorted(a.to[0] for a in accepted) == ["crit@x.com", "opt@x.com"]
    for mail in accepted:
        assert mail.headers["List-Unsubscribe"].startswith(
            "<https://busos.example.com/unsubscribe?token="
        )
        assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail.tags["step"] == "email-1" and mail.tags["campaign"] == "christmas-2025"
        assert mail.reply_to == ["hello@busos.example.com"]
        assert "1 King St W, Toronto ON" in mail.html
    rows = notion.rows(ws.sequences)
    assert len(rows) == 2
    assert all(row["Email 1 Sent"] for row in rows)


def test_dev_instance_allows_one_send_run_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xmas_pipeline.cli import dagster_home
    from xmas_pipeline.settings import Settings

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(Settings.from_env({"XMAS_HOME": str(tmp_path / "x")}))
    assert home == (tmp_path / "x" / "dagster").resolve()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    try:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "xmas/send", "limit": 1} in limits
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1  # the send pool, however a send starts
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
    finally:
        instance.dispose()


def test_runs_cut_off_by_a_hard_stop_are_failed_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xmas_pipeline.cli import dagster_home, fail_orphaned_runs
    from xmas_pipeline.settings import Settings

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(Settings.from_env({"XMAS_HOME": str(tmp_path / "x")}))
    env = make_env(tmp_path / "x")
    job = env.defs.resolve_job_def(env.name("send_due_emails"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        cut = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED)
        done = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.SUCCESS)
    assert fail_orphaned_runs(home) == [cut.run_id]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(cut.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(done.run_id).status == dg.DagsterRunStatus.SUCCESS
    assert fail_orphaned_runs(home) == []
