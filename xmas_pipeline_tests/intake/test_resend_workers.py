"""A repeated `svix-id` through the real server with two worker processes
(`xmas-pipeline serve --workers 2`, as production runs it), on SQLite and PostgreSQL: each
post on a fresh connection, so the repeats reach both workers; one file, one "accepted".
With a memory per worker only, the second worker stored the delivery again."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from xmas_pipeline.adapters.sql.migrate import migrate_store
from xmas_pipeline_tests.intake.test_resend import SECRET, event, svix_headers
from xmas_pipeline_tests.support.intake_process import IntakeProcess

pytestmark = pytest.mark.slow

POSTS = 40


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_repeats_reaching_two_workers_are_stored_once(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XMAS_", "CALCOM_", "RESEND_"))}
    env.update(XMAS_HOME=str(tmp_path / "home"), RESEND_WEBHOOK_SECRET=SECRET)
    if engine == "postgresql":
        env["XMAS_DATABASE_URL"] = str(request.getfixturevalue("postgres_url"))
        migrate_store(env["XMAS_DATABASE_URL"])  # the intake creates no table on PostgreSQL
    raw, delivery = event(), f"msg_{uuid.uuid4().hex}"
    statuses = []
    with IntakeProcess(env=env, log_path=tmp_path / "intake.log", workers=2) as server:
        for _ in range(POSTS):
            with httpx.Client(base_url=server.url, timeout=30) as client:  # a new connection
                answer = client.post(
                    "/webhook/resend", content=raw, headers=svix_headers(raw, delivery)
                )
                assert answer.status_code == 200
                statuses.append(answer.json()["status"])
    assert statuses == ["accepted"] + ["duplicate"] * (POSTS - 1)
    stored = list((tmp_path / "home" / "inbox" / "email-events").glob("*/*.json"))
    assert [path.read_bytes() for path in stored] == [raw]
    log = (tmp_path / "intake.log").read_text()
    assert log.count("Application startup complete") == 2  # both workers were up
