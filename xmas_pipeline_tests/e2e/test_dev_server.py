"""`xmas-pipeline dev` (what `make dev` runs) for real: the UI comes up with the assets,
the sensor and the schedule running, and three signups dropped in the inbox become three
welcome emails in the outbox within two minutes (testing mode, a send every minute)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline_tests.support.dagster_dev import processes_with_marker, running_dev, wait_for
from xmas_pipeline_tests.support.pipeline_env import DEFAULT_PREFIX, default_name, signup

pytestmark = pytest.mark.slow

QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name
    sensors { name sensorState { status } }
    schedules { name cronSchedule scheduleState { status } }
    assetNodes { assetKey { path } groupName }
} } } }
"""


def test_dev_runs_the_whole_pipeline(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_dev(home, XMAS_TESTING_MODE="true", XMAS_SEND_CRON="* * * * *") as dev:
        repo = dev.graphql(QUERY)["repositoriesOrError"]["nodes"][0]
        assets = {"/".join(a["assetKey"]["path"]): a["groupName"] for a in repo["assetNodes"]}
        assert assets["signups"] == "ingestion"
        assert assets["email_sequences"] == "sequences"
        assert assets[f"{DEFAULT_PREFIX}/deliveries"] == DEFAULT_PREFIX
        assert assets["christmas_2026/deliveries"] == "christmas_2026"  # every campaign
        sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
        schedules = {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}
        assert sensors["signups_sensor"] == "RUNNING"
        assert schedules[default_name("send_schedule")] == "RUNNING"

        inbox = Inbox(home / "inbox")
        for email, red, orange in (("a@x.com", 2, 0), ("b@x.com", 1, 0), ("c@x.com", 0, 0)):
            inbox.write("signups", json.dumps(signup(email, red=red, orange=orange)).encode())
        outbox = home / "outbox"

        def welcomes() -> list[str]:
            if not outbox.exists():
                return []
            return sorted(p.name for p in outbox.glob("*__email-1.eml"))

        arrived = wait_for(lambda: len(welcomes()) == 3, timeout=150, interval=2)
        assert arrived, f"welcome emails: {welcomes()}\n{dev.log_tail()}"
        # One Ctrl-C stops the intake and Dagster (webserver and daemon) together.
        assert dev.interrupt(), f"still running after Ctrl-C\n{dev.log_tail()}"
    assert not processes_with_marker(dev.marker)
