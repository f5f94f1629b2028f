"""The Notion sync on the production topology (PostgreSQL, code server, webserver, daemon and
intake as separate processes; Notion is the fake, on loopback): the code server is killed
while a `sync_notion` run holds the contacts it took, and nothing else happens. The
watchdog marks the dead run failed, `notion_sync_sensor` frees its contacts and starts a
sync, and every contact is in step in Notion within the lag limit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.adapters.sql.tables import notion_queue
from xmas_pipeline.core.campaign import load_campaign
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.notion_workspace import Workspace, busos_workspace
from xmas_pipeline_tests.support.pipeline_env import signup
from xmas_pipeline_tests.support.production import Production, running_production, wait_until

pytestmark = pytest.mark.slow

DEAD_AFTER = 12  # seconds without a heartbeat before a run counts as dead (default 120)
MAX_LAG = 240  # XMAS_NOTION_MAX_LAG_SECONDS: how late Notion may be
CONTACTS = 24  # at 1 request/s, a sync of them all takes half a minute


@pytest.fixture(scope="module")
def notion() -> Iterator[tuple[FakeNotion, Workspace]]:
    with FakeNotion() as fake:
        yield fake, busos_workspace(fake)


@pytest.fixture(scope="module")
def prod(
    tmp_path_factory: pytest.TempPathFactory, notion: tuple[FakeNotion, Workspace]
) -> Iterator[Production]:
    fake, ws = notion
    env = {
        "XMAS_SENSOR_INTERVAL_SECONDS": "2",
        "XMAS_RUN_HEARTBEAT_SECONDS": "2",
        "XMAS_RUN_DEAD_AFTER_SECONDS": str(DEAD_AFTER),
        "NOTION_TOKEN": fake.token,
        "NOTION_BASE_URL": fake.base_url,
        "NOTION_CONTACTS_DB_ID": ws.contacts,
        "NOTION_EMAIL_SEQUENCE_DB_ID": ws.sequences,
        "XMAS_NOTION_SYNC_DELAY_SECONDS": "1",
        "XMAS_NOTION_MAX_LAG_SECONDS": str(MAX_LAG),
        "XMAS_NOTION_RATE_PER_S": "1",
    }
    with running_production(tmp_path_factory.mktemp("prod-notion"), env) as production:
        yield production


def holders(prod: Production) -> set[str]:
    """The runs holding contacts of the Notion queue now."""
    engine = sa.create_engine(prod.env["XMAS_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(notion_queue.c.holder).distinct()).scalars()
            return {holder for holder in rows if holder}
    finally:
        engine.dispose()


def in_step(prod: Production, notion: tuple[FakeNotion, Workspace], emails: list[str]) -> bool:
    """The queue is empty and each contact's page says what the store does (its page, and
    the welcome's date exactly when the store has the welcome sent)."""
    fake, ws = notion
    store = SqlStore(prod.env["XMAS_DATABASE_URL"])
    try:
        with store.engine.connect() as conn:
            waiting = conn.execute(sa.select(sa.func.count()).select_from(notion_queue)).scalar()
        if waiting:
            return False
        snaps = store.contact_snapshots(load_campaign(), emails)
    finally:
        store.dispose()
    rows = {row["Email"]: row for row in fake.rows(ws.sequences)}
    return set(rows) >= set(emails) and all(
        bool(rows[e]["Email 1 Sent"]) == (1 in snaps[e].nurture_sent) for e in emails
    )


def test_a_sync_run_killed_with_its_code_server_leaves_no_contact_behind(
    prod: Production,
    notion: tuple[FakeNotion, Workspace],
    record_property: Callable[[str, object], None],
) -> None:
    fake, ws = notion
    emails = [f"notion-{i:02d}@topology.example.com" for i in range(CONTACTS)]
    posted = time.monotonic()
    with httpx.Client(base_url=prod.intake_url, timeout=30) as client:
        for email in emails:
            response = client.post("/webhook/christmas-signup", json=signup(email))
            assert response.status_code == 202, response.text
    with prod.instance() as instance:

        def syncing() -> str | None:
            """A sync run that took the contacts and has written some of them."""
            for run in prod.runs(instance, "sync_notion"):
                if run.status != dg.DagsterRunStatus.STARTED:
                    continue
                if run.run_id in holders(prod) and 2 <= len(fake.rows(ws.sequences)) < CONTACTS:
                    return run.run_id
            return None

        run_id = wait_until(syncing, timeout=180, interval=0.2)
        assert run_id, prod.describe_runs(instance)
        prod.kill("code-server")  # the whole group: the sync run's worker goes with it
        killed = time.monotonic()
        written = len(fake.rows(ws.sequences))
        assert written < CONTACTS and run_id in holders(prod)
        prod.start("code-server")  # as a supervisor would restart it; nothing else changes

        caught_up = wait_until(lambda: in_step(prod, notion, emails), timeout=MAX_LAG, interval=2)
        assert caught_up, prod.describe_runs(instance)
        done = time.monotonic()
        assert done - posted < MAX_LAG
        record_property("seconds from the kill to Notion in step", round(done - killed, 1))
        record_property("seconds from the signups to Notion in step", round(done - posted, 1))
        dead = instance.get_run_by_id(run_id)
        assert dead is not None and dead.status == dg.DagsterRunStatus.FAILURE
        assert holders(prod) == set()
    # One page per contact: the pages the dead run wrote were found, not made again.
    rows = [row["Email"] for row in fake.rows(ws.sequences)]
    assert sorted(rows) == sorted(emails)
