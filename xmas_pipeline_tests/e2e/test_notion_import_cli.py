"""`xmas-pipeline notion import` as an operator runs it: configured by environment
variables, against the fake Notion, into the SQLite store under XMAS_HOME."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.cli import main
from xmas_pipeline.core.campaign import load_campaign
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import Workspace, busos_workspace

SIGNUP = datetime.now(UTC).replace(microsecond=0) - timedelta(days=4)


@pytest.fixture
def notion() -> Iterator[FakeNotion]:
    with FakeNotion() as server:
        yield server


def configure(
    monkeypatch: pytest.MonkeyPatch, notion: FakeNotion, ws: Workspace, home: Path
) -> str:
    url = f"sqlite:///{home / 'state.db'}"
    for name, value in {
        "NOTION_TOKEN": notion.token,
        "NOTION_BASE_URL": notion.base_url,
        "NOTION_CONTACTS_DB_ID": ws.contacts,
        "NOTION_EMAIL_SEQUENCE_DB_ID": ws.sequences,
        "XMAS_HOME": str(home),
        "XMAS_DATABASE_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("NOTION_EMAIL_ANALYTICS_DB_ID", "NOTION_TEMPLATES_DB_ID", "XMAS_TESTING_MODE"):
        monkeypatch.delenv(name, raising=False)
    return url


def add_page(notion: FakeNotion, ws: Workspace, email: str, steps: int, **extra: object) -> str:
    values: dict[str, object] = {
        "Name": email,
        "Email": email,
        "First Name": "Sam",
        "Assessment Score": 47,
        "Segment": "OPTIMIZE",
        "Campaign": "Christmas 2025",
        "Signup Date": SIGNUP,
        "Assessment Completed": True,
        **{f"Email {n} Sent": SIGNUP + timedelta(days=n - 1) for n in range(1, steps + 1)},
    }
    return notion.add_row(ws.sequences, {**values, **extra})


def test_import_without_a_token_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NOTION_TOKEN", raising=False)
    assert main(["notion", "import"]) == 2
    assert "NOTION_TOKEN" in capsys.readouterr().err


def test_import_before_setup_says_to_run_setup(
    notion: FakeNotion,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = busos_workspace(notion, with_setup=False)
    configure(monkeypatch, notion, ws, tmp_path)
    assert main(["notion", "import"]) == 2
    err = capsys.readouterr().err
    assert "notion setup" in err and notion.token not in err


def test_import_reports_and_runs_once(
    notion: FakeNotion,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = busos_workspace(notion)
    url = configure(monkeypatch, notion, ws, tmp_path)
    for n in range(10):
        add_page(notion, ws, f"person{n}@example.com", steps=n % 4)
    add_page(notion, ws, "person2@example.com", steps=3)  # a second page, one more step
    add_page(notion, ws, "bad@example.com", steps=1, **{"Assessment Score": 150})
    notion.add_row(ws.contacts, {"Name": "person1", "email": "person1@example.com"})

    assert main(["notion", "import"]) == 0
    first = capsys.readouterr()
    out = first.out
    assert "Email Sequence pages read: 12" in out
    assert "contacts: 11; duplicate pages folded into a contact's oldest: 1" in out
    assert "CRM contacts read: 1" in out
    assert "sequences: 10 created" in out and "recorded as sent: 14 emails" in out
    assert "skipped (not imported): 1" in out and "bad@example.com: assessment_score" in out
    assert "Notion requests: 6 " in out  # 4 schema reads, 1 page of each database
    assert notion.token not in out + first.err

    store = SqlStore(url)
    sequences = store.load_sequences(load_campaign())
    assert len(sequences) == 10 and sequences["contact_key"].is_unique
    store.dispose()

    assert main(["notion", "import"]) == 0
    again = capsys.readouterr().out
    assert "nothing changed" in again and "Notion requests: 2 " in again
