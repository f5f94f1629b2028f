"""Signup rate limits through the app: per client address and per email address, on both
signup paths, counted in the SQL store so every worker and host shares them (SQLite and
PostgreSQL), with a per-process fallback when the store is away. Time is a controllable
clock: no test sleeps."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.testclient import TestClient

from xmas_pipeline.adapters.sql.rate_counters import SqlRateCounters
from xmas_pipeline.adapters.sql.tables import rate_counters
from xmas_pipeline.intake.app import create_app
from xmas_pipeline.settings import Settings
from xmas_pipeline_tests.intake.test_flow_run import URL as FLOW_RUN
from xmas_pipeline_tests.intake.test_flow_run import flow_run
from xmas_pipeline_tests.intake.test_signup import URL, signup

JSON = {"Content-Type": "application/json"}
START = 1_800_000_000.0  # an exact hour: windows of an hour start here


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as clients:
        yield clients


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'state.db'}"
    url = str(request.getfixturevalue("postgres_url"))
    engine = sa.create_engine(url)
    try:  # the session's database is shared: every test starts with no counters
        with engine.begin() as conn:
            # The table exists, as `store migrate` leaves it: on PostgreSQL the intake
            # creates nothing.
            rate_counters.create(conn, checkfirst=True)
            conn.execute(rate_counters.delete())
    finally:
        engine.dispose()
    return url


def make_app(tmp_path: Path, clock: Clock, name: str = "w1", **overrides: Any) -> Starlette:
    values: dict[str, Any] = {
        "home": tmp_path / name,
        "inbox_url": str(tmp_path / "inbox"),
        "signup_rate_per_ip": "off",
        "signup_rate_per_email": "off",
        **overrides,
    }
    return create_app(Settings.of(**values), clock=clock)


def client_of(stack: ExitStack, app: Starlette, ip: str = "203.0.113.1") -> TestClient:
    return stack.enter_context(TestClient(app, client=(ip, 50000)))


def stored(tmp_path: Path) -> int:
    return len(list((tmp_path / "inbox" / "signups").glob("*/*.json")))


def post(client: TestClient, email: str = "jane@example.com", **headers: str) -> Any:
    return client.post(URL, json=signup(email=email), headers=headers)


def assert_limited(answer: Any, what: str) -> int:
    assert answer.status_code == 429
    assert answer.json()["status"] == "rejected" and what in answer.json()["reason"]
    wait = int(answer.headers["retry-after"])
    assert f"retry in {wait} s" in answer.json()["reason"]
    return wait


def test_a_burst_from_one_client_is_limited_and_another_client_is_not(
    tmp_path: Path, clock: Clock, stack: ExitStack
) -> None:
    app = make_app(tmp_path, clock, signup_rate_per_ip="3/hour")
    burst, other = client_of(stack, app, "203.0.113.1"), client_of(stack, app, "198.51.100.2")
    # Every signup request counts for its client, refused or not, at either address.
    assert burst.post(URL, json={"email": "not an address"}).status_code == 422
    assert post(burst, "a@example.com").status_code == 202
    flow = burst.post(FLOW_RUN, content=flow_run(signup(email="b@example.com")), headers=JSON)
    assert flow.status_code == 202
    for answer in (
        post(burst, "c@example.com"),
        burst.post(FLOW_RUN, content=flow_run(signup(email="d@example.com")), headers=JSON),
        burst.post(URL, content=b"{not json", headers=JSON),
    ):
        # 3 hits at the start of the hour: after it ends they must weigh at most 2 (a
        # third of the next hour). The sliding window never asks more than two periods.
        assert assert_limited(answer, "network address") == 3600 + 1200
    assert stored(tmp_path) == 2  # a refused request writes nothing
    assert post(other, "c@example.com").status_code == 202
    assert stored(tmp_path) == 3


def test_one_address_from_many_clients_is_limited(
    tmp_path: Path, clock: Clock, stack: ExitStack
) -> None:
    app = make_app(tmp_path, clock, signup_rate_per_email="2/hour")
    clients = [client_of(stack, app, f"203.0.113.{n}") for n in range(1, 6)]
    # A malformed signup does not count for its address.
    refused = clients[0].post(URL, json=signup(email="jane@example.com", assessment_score=500))
    assert refused.status_code == 422
    assert post(clients[1], "jane@example.com").status_code == 202
    flow = clients[2].post(
        FLOW_RUN, content=flow_run(signup(email="Jane@Example.COM")), headers=JSON
    )
    assert flow.status_code == 202
    wait = assert_limited(post(clients[3], " JANE+again@example.com"), "email address")
    assert wait == 3600 + 1800
    assert post(clients[4], "john@example.com").status_code == 202
    assert stored(tmp_path) == 3


def test_retry_after_is_honest_and_windows_expire(
    tmp_path: Path, clock: Clock, stack: ExitStack
) -> None:
    app = make_app(tmp_path, clock, signup_rate_per_ip="2/hour")
    client = client_of(stack, app)
    clock.now = START + 600  # ten minutes into the hour
    assert [post(client).status_code for _ in range(2)] == [202, 202]
    wait = assert_limited(post(client), "network address")
    # The hour ends in 50 minutes; then its 2 hits must weigh at most 1: half an hour more.
    assert wait == 3000 + 1800
    clock.now += wait - 1
    assert post(client).status_code == 429  # a refused hit is not counted, yet still too early
    clock.now += 1
    assert post(client).status_code == 202
    assert post(client).status_code == 429
    clock.now += 2 * 3600  # both windows over
    assert [post(client).status_code for _ in range(3)] == [202, 202, 429]


def test_limits_are_shared_by_two_workers(
    tmp_path: Path, clock: Clock, stack: ExitStack, database_url: str
) -> None:
    limits = {"signup_rate_per_ip": "3/hour", "signup_rate_per_email": "2/hour"}
    apps = [
        make_app(tmp_path, clock, name, database_url=database_url, **limits)
        for name in ("w1", "w2")
    ]
    first, second = (client_of(stack, app, "203.0.113.7") for app in apps)
    assert post(first, "a@example.com").status_code == 202
    assert post(second, "b@example.com").status_code == 202
    assert post(first, "c@example.com").status_code == 202
    assert_limited(post(second, "d@example.com"), "network address")
    # The address limit too: two signups of one address on two workers, from two clients.
    one, two, three = (client_of(stack, apps[n % 2], f"198.51.100.{n}") for n in (1, 2, 3))
    assert post(one, "e@example.com").status_code == 202
    assert post(two, "e@example.com").status_code == 202
    assert_limited(post(three, "e@example.com"), "email address")
    assert stored(tmp_path) == 5
    engine = sa.create_engine(database_url)
    try:  # hashed keys only: no address is kept in the table
        with engine.connect() as conn:
            rows = conn.execute(sa.select(rate_counters)).all()
        assert rows and all("@" not in row.key_hash and "." not in row.key_hash for row in rows)
    finally:
        engine.dispose()


def test_a_store_out_of_reach_never_refuses_a_signup(
    tmp_path: Path, clock: Clock, stack: ExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"  # nothing listens there
    app = make_app(tmp_path, clock, database_url=nowhere, signup_rate_per_ip="2/hour")
    client, other = client_of(stack, app), client_of(stack, app, "198.51.100.9")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="xmas_pipeline.intake"):
        assert [post(client).status_code for _ in range(2)] == [202, 202]
    assert "rate limits: the store is unreachable" in caplog.text
    # The worker still limits on its own, in memory.
    assert_limited(post(client), "network address")
    assert post(other).status_code == 202
    assert stored(tmp_path) == 3
    assert time.monotonic() - started < 30  # no request waits on the store (generous: CI is loaded)


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    tmp_path: Path, clock: Clock, stack: ExitStack
) -> None:
    app = make_app(tmp_path, clock, signup_rate_per_ip="2/hour")
    outsider = client_of(stack, app, "203.0.113.50")
    for n in range(2):
        assert post(outsider, **{"X-Forwarded-For": f"192.0.2.{n}"}).status_code == 202
    assert_limited(post(outsider, **{"X-Forwarded-For": "192.0.2.99"}), "network address")
    # Through the trusted proxy on loopback each visitor is counted on their own, by the
    # address the proxy appended (the right-most), whatever the visitor wrote before it.
    proxy = client_of(stack, app, "127.0.0.1")
    for visitor in ("192.0.2.10", "192.0.2.11"):
        for _ in range(2):
            answer = post(proxy, **{"X-Forwarded-For": f"9.9.9.9, {visitor}"})
            assert answer.status_code == 202
        assert_limited(post(proxy, **{"X-Forwarded-For": f"8.8.8.8, {visitor}"}), "address")


def test_no_trusted_proxy_means_the_peer_counts(
    tmp_path: Path, clock: Clock, stack: ExitStack
) -> None:
    app = make_app(tmp_path, clock, signup_rate_per_ip="1/hour", trusted_proxies="none")
    proxy = client_of(stack, app, "127.0.0.1")
    assert post(proxy, **{"X-Forwarded-For": "192.0.2.1"}).status_code == 202
    assert_limited(post(proxy, **{"X-Forwarded-For": "192.0.2.2"}), "network address")


def test_limits_off_never_count(tmp_path: Path, clock: Clock, stack: ExitStack) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    app = make_app(tmp_path, clock, database_url=url)
    client = client_of(stack, app)
    assert all(post(client).status_code == 202 for _ in range(12))
    engine = sa.create_engine(url)
    try:
        assert not sa.inspect(engine).has_table("rate_counters")
    finally:
        engine.dispose()


def test_counters_are_atomic_and_old_windows_are_pruned(database_url: str) -> None:
    table = SqlRateCounters(database_url)
    try:
        counts = [table.hit("b/60", "k", 600, room=3, expires_at=720) for _ in range(5)]
        assert counts == [1, 2, 3, None, None]
        assert table.count("b/60", "k", 600) == 3 and table.count("b/60", "other", 600) == 0
        assert table.hit("b/60", "k", 660, room=0, expires_at=780) is None  # nothing written
        assert table.hit("b/60", "k", 660, room=1, expires_at=780) == 1
        assert table.prune(now=750) == 1  # the first window is of no use after 720
        assert table.count("b/60", "k", 600) == 0 and table.count("b/60", "k", 660) == 1
    finally:
        table.dispose()


def test_an_ipv6_client_counts_by_its_64(tmp_path: Path, clock: Clock, stack: ExitStack) -> None:
    app = make_app(tmp_path, clock, signup_rate_per_ip="2/hour")
    line = [client_of(stack, app, f"2001:db8:5:6::{n}") for n in (1, 2, 3)]
    assert [post(client).status_code for client in line[:2]] == [202, 202]
    assert_limited(post(line[2]), "network address")
    assert post(client_of(stack, app, "2001:db8:5:7::1")).status_code == 202
