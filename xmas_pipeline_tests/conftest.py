"""Shared fixtures: the campaign, stores on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline_tests.fakes.chat_webhook import ChatWebhookServer
from xmas_pipeline_tests.support.clock import MovableClock, movable_clock
from xmas_pipeline_tests.support.stores import postgres_database


def _temp_in_memory() -> None:
    """Put temporary files (tmp_path, Dagster's test instances, SQLite stores) on the
    machine's tmpfs when it has one: those tests commit many small SQLite transactions, and
    on disk each one waits for an fsync (a quarter of the fast tier's time). Set before
    pytest picks its base folder; processes the tests start inherit TMPDIR."""
    shm = Path("/dev/shm")
    if "XMAS_TEST_TMPDIR" in os.environ or not os.access(shm, os.W_OK):
        return
    folder = shm / f"xmas-tests-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)


_temp_in_memory()


# The real-process modules that take longest, longest first: pytest-xdist hands modules
# out in collection order, so these start at once and the tier ends with its longest module
# rather than after it.
LONGEST_FIRST = (
    "test_two_campaigns_dev.py",
    "test_production_topology.py",
    "test_notion_topology.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    longest_first(items)
    stretch_timeouts(config, items, float(os.environ.get("XMAS_TIMEOUT_SCALE") or 1))


def longest_first(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


def stretch_timeouts(config: pytest.Config, items: list[pytest.Item], scale: float) -> None:
    """`make test-all` runs the fast tier at the lowest CPU priority beside the
    real-process tier: a test there can wait minutes for a core, so its time-out (a guard
    against a hang, not a speed target) is `scale` times as long."""
    if scale == 1:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = float(marker.args[0]) if marker and marker.args else default
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(seconds * scale), append=False)


@pytest.fixture
def chat() -> Iterator[ChatWebhookServer]:
    """A Slack-flavoured chat webhook (the fake), for the alert tests."""
    with ChatWebhookServer(flavour="slack") as server:
        yield server


@pytest.fixture
def clock() -> Iterator[MovableClock]:
    """Time in this process, moved on by the test (`clock.advance(seconds)`)."""
    with movable_clock() as moving:
        yield moving


@pytest.fixture
def campaign() -> Campaign:
    return load_campaign()


@pytest.fixture
def unpaced_campaign() -> Campaign:
    """The shipped cadence without the send window and the minimum gap: for tests about
    the cadence itself."""
    return load_campaign().model_copy(update={"send_window": None, "min_gap": timedelta(0)})


@pytest.fixture
def testing_campaign() -> Campaign:
    return load_campaign(testing_mode=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """The SQL store on both engines: every test using it runs twice."""
    if request.param == "sqlite":
        store = SqlStore(f"sqlite:///{tmp_path / 'state.db'}")
        yield store
        store.dispose()
        return
    url = request.getfixturevalue("postgres_url")
    store = SqlStore(url)
    store.prepare()
    # Each test starts empty: the session database is shared across tests.
    from xmas_pipeline.adapters.sql.tables import metadata

    with store.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())
    yield store
    store.dispose()


@pytest.fixture(autouse=True)
def _forget_dagster_test_instance() -> Iterator[None]:
    """`instance_for_test` leaves its defs-state storage in a context variable after it
    exits; a later Definitions load would then open that deleted temp folder."""
    yield
    from dagster._core.storage.defs_state import base

    base._current_storage.set(None)
