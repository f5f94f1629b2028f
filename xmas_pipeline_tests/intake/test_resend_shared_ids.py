"""A repeated `svix-id` is stored once across intake workers: two app instances (two
workers, as `xmas-pipeline serve --workers 2` runs them) share one SQL store, on SQLite and
PostgreSQL. Nothing accepted is lost: the id is recorded only after the file is written,
and a store that cannot be reached never refuses a webhook."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from xmas_pipeline.adapters.sql.migrate import migrate_store
from xmas_pipeline.adapters.sql.webhook_ids import MAX_ID, SqlWebhookIds, webhook_ids
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings
from xmas_pipeline_tests.intake.test_resend import SECRET, event, svix_headers

URL = "/webhook/resend"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'state.db'}"
    url = str(request.getfixturevalue("postgres_url"))
    # On PostgreSQL the intake creates no table: the deployment's migrate step does.
    migrate_store(url)
    return url


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as clients:
        yield clients


def worker(stack: ExitStack, tmp_path: Path, database_url: str, name: str) -> TestClient:
    """One intake worker: its own process state, the shared inbox and store."""
    settings = Settings.of(
        home=tmp_path / name,
        inbox_url=str(tmp_path / "inbox"),
        database_url=database_url,
        resend_webhook_secret=SECRET,
    )
    return stack.enter_context(TestClient(create_app(settings)))


def stored(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tmp_path / "inbox" / "email-events").glob("*/*"))]


def msg_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def test_a_repeat_reaching_another_worker_is_stored_once(
    tmp_path: Path, database_url: str, stack: ExitStack
) -> None:
    first, second = (worker(stack, tmp_path, database_url, n) for n in ("w1", "w2"))
    raw, delivery = event(), msg_id()
    answer = first.post(URL, content=raw, headers=svix_headers(raw, msg_id=delivery))
    assert answer.json()["status"] == "accepted"
    # Svix retries keep the id and sign afresh; the retry lands on the other worker.
    for when in (None, int(time.time()) - 60):
        again = second.post(URL, content=raw, headers=svix_headers(raw, delivery, when))
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert stored(tmp_path) == [raw]
    other = second.post(URL, content=raw, headers=svix_headers(raw, msg_id=msg_id()))
    assert other.json()["status"] == "accepted"
    assert len(stored(tmp_path)) == 2


def test_a_delivery_whose_file_was_not_written_is_taken_again(
    tmp_path: Path, database_url: str, stack: ExitStack
) -> None:
    (tmp_path / "inbox").write_text("a file where the inbox folder should be")
    first, second = (worker(stack, tmp_path, database_url, n) for n in ("w1", "w2"))
    raw, delivery = event(), msg_id()
    refused = first.post(URL, content=raw, headers=svix_headers(raw, msg_id=delivery))
    assert refused.status_code == 503
    (tmp_path / "inbox").unlink()
    for client in (first, second):  # neither remembers an id whose file was never written
        retry = client.post(URL, content=raw, headers=svix_headers(raw, msg_id=delivery))
        assert retry.json()["status"] in ("accepted", "duplicate")
    assert stored(tmp_path) == [raw]


def test_a_store_out_of_reach_never_refuses_a_webhook(tmp_path: Path, stack: ExitStack) -> None:
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"  # nothing listens there
    first, second = (worker(stack, tmp_path, nowhere, n) for n in ("w1", "w2"))
    raw, delivery = event(), msg_id()
    started = time.monotonic()
    answer = first.post(URL, content=raw, headers=svix_headers(raw, msg_id=delivery))
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"
    # This worker still remembers it; another stores a second file, which ingestion
    # deduplicates (an email event is stored once under its own key).
    again = first.post(URL, content=raw, headers=svix_headers(raw, msg_id=delivery))
    assert again.json()["status"] == "duplicate"
    assert second.post(URL, content=raw, headers=svix_headers(raw, delivery)).status_code == 200
    assert len(stored(tmp_path)) == 2
    assert time.monotonic() - started < 30  # no request waits on the store (generous: CI is loaded)


def test_the_intake_creates_no_table_but_its_own(tmp_path: Path, stack: ExitStack) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    client = worker(stack, tmp_path, url, "w1")
    raw = event()
    client.post(URL, content=raw, headers=svix_headers(raw, msg_id=msg_id()))
    engine = sa.create_engine(url)
    try:
        assert sa.inspect(engine).get_table_names() == ["webhook_ids"]
    finally:
        engine.dispose()


def test_ids_are_recorded_once_and_pruned_after_they_expire(database_url: str) -> None:
    table = SqlWebhookIds(database_url)
    try:
        fresh, old, long_id = msg_id(), msg_id(), "msg_" + "x" * (MAX_ID * 2)
        assert table.record("resend", fresh) and not table.record("resend", fresh)
        assert table.seen("resend", fresh) and not table.seen("other-source", fresh)
        assert table.record("resend", long_id) and table.seen("resend", long_id)
        three_days_ago = datetime.now(UTC) - timedelta(days=3)
        assert table.record("resend", old, at=three_days_ago)
        assert table.prune(datetime.now(UTC) - table.keep) >= 1
        assert not table.seen("resend", old)
        assert table.seen("resend", fresh)
        with table.engine.connect() as conn:
            longest = conn.execute(sa.select(sa.func.max(sa.func.length(webhook_ids.c.id))))
            assert longest.scalar_one() <= MAX_ID
    finally:
        table.dispose()
