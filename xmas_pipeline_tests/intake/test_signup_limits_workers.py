"""The signup rate limits hold across the real server's two worker processes
(`xmas-pipeline serve --workers 2`, as production runs it), on SQLite and PostgreSQL. Each
post is on a fresh connection, so the posts spread over both workers; with counters per
worker, each would let in its own share and the totals below would be exceeded."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from xmas_pipeline.adapters.sql.migrate import migrate_store
from xmas_pipeline_tests.intake.test_signup import URL, signup
from xmas_pipeline_tests.support.intake_process import IntakeProcess

pytestmark = pytest.mark.slow

PER_IP, PER_EMAIL, POSTS = 4, 3, 16


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_the_limits_hold_across_two_workers(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XMAS_", "CALCOM_", "RESEND_"))}
    env.update(
        XMAS_HOME=str(tmp_path / "home"),
        XMAS_SIGNUP_RATE_PER_IP=f"{PER_IP}/hour",
        XMAS_SIGNUP_RATE_PER_EMAIL=f"{PER_EMAIL}/hour",
    )
    if engine == "postgresql":
        env["XMAS_DATABASE_URL"] = str(request.getfixturevalue("postgres_url"))
        migrate_store(env["XMAS_DATABASE_URL"])  # the intake creates no table on PostgreSQL
    # The test stands where Caddy does (loopback, trusted by default): X-Forwarded-For
    # names the visitor.
    tag = tmp_path.name[-8:].encode().hex()[:8]  # distinct keys on the shared PostgreSQL
    one_visitor: list[int] = []  # one visitor, a new address each time
    one_email: list[int] = []  # one address, a new visitor each time
    with IntakeProcess(env=env, log_path=tmp_path / "intake.log", workers=2) as server:
        for n in range(POSTS):
            with httpx.Client(base_url=server.url, timeout=30) as client:  # a new connection
                answer = client.post(
                    URL,
                    json=signup(email=f"visitor{n}.{tag}@example.com"),
                    headers={"X-Forwarded-For": "192.0.2.77"},
                )
                one_visitor.append(answer.status_code)
                if answer.status_code == 429:
                    assert int(answer.headers["retry-after"]) > 0
            with httpx.Client(base_url=server.url, timeout=30) as client:
                answer = client.post(
                    URL,
                    json=signup(email=f"same.{tag}@example.com"),
                    headers={"X-Forwarded-For": f"198.51.100.{n + 1}"},
                )
                one_email.append(answer.status_code)
    assert one_visitor.count(202) == PER_IP and one_visitor.count(429) == POSTS - PER_IP
    assert one_email.count(202) == PER_EMAIL and one_email.count(429) == POSTS - PER_EMAIL
    stored = list((tmp_path / "home" / "inbox" / "signups").glob("*/*.json"))
    assert len(stored) == PER_IP + PER_EMAIL
    log = (tmp_path / "intake.log").read_text()
    assert log.count("Application startup complete") == 2  # both workers were up
    assert "store is unreachable" not in log  # counted in the store, not in memory
