"""The real UI (`xmas-pipeline dev`) with every secret set to a marker and every integration
on (Resend, Notion, Cal.com polling, the alert webhook, a PostgreSQL store reached with a
password): after signups went through the intake and became welcome emails, Notion pages
and a CRITICAL alert, no GraphQL answer the UI uses (resources page, launchpad defaults,
partition sets, schedules, sensors, runs with their config, tags and events), no file of the
Dagster instance and no line of the dev log holds a marker. A launch whose run config points
Resend or Notion elsewhere, or materializes `deliveries` on its own with such a config, is
refused with the reason, and nothing reaches that address."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from xmas_pipeline.dagster_defs import jobs as job_names
from xmas_pipeline.dagster_defs.notion import SYNC_JOB
from xmas_pipeline.settings import Settings
from xmas_pipeline_tests.fakes.notion_api import FakeNotion
from xmas_pipeline_tests.fakes.resend_api import running_fake
from xmas_pipeline_tests.support.dagster_dev import running_dev, wait_for
from xmas_pipeline_tests.support.pipeline_env import (
    DEFAULT_PREFIX,
    default_name,
    signup,
    today,
)
from xmas_pipeline_tests.support.secret_stack import secret_stack
from xmas_pipeline_tests.support.ui_secrets import (
    launch,
    notion_elsewhere,
    sender_elsewhere,
    ui_answers,
)

SEND_JOB = default_name(job_names.SEND_JOB)  # the shipped default campaign's

pytestmark = pytest.mark.slow

LOCATION = "{ repositoriesOrError { ... on RepositoryConnection { nodes { location { name } } } } }"


def _files(root: Path) -> dict[str, str]:
    """Every file under `root` (the instance's databases and logs included), as text."""
    return {
        str(path.relative_to(root)): path.read_bytes().decode("latin-1")
        for path in root.rglob("*")
        if path.is_file()
    }


def test_the_real_ui_shows_no_secret_and_refuses_redirects(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with (
        secret_stack(home, XMAS_NOTION_SYNC_DELAY_SECONDS="1") as stack,
        running_fake() as resend_elsewhere,
        FakeNotion() as notion_elsewhere_fake,
        running_dev(home, **stack.env) as dev,
    ):
        token = {"authorization": f"Bearer {stack.markers.signup_token}"}
        for person in (signup("crit@example.com", red=2), signup("calm@example.com")):
            answer = httpx.post(
                f"{dev.intake_url}/webhook/christmas-signup", json=person, headers=token
            )
            assert answer.status_code == 202, answer.text

        def worked() -> bool:
            return (
                len(stack.resend.accepted) == 2
                and len(stack.notion.rows(stack.workspace.sequences)) == 2
                and bool(stack.chat.posts)
                and bool(stack.calcom.requests)
            )

        assert wait_for(worked, timeout=240, interval=2), dev.log_tail()

        def query(text: str, variables: dict[str, Any]) -> dict[str, Any]:
            return dev.graphql(text, variables)

        location = dev.graphql(LOCATION)["repositoriesOrError"]["nodes"][0]["location"]["name"]
        settings = Settings.from_env(stack.env)
        to_resend = sender_elsewhere(settings, resend_elsewhere.base_url)
        refusals = {
            "send": launch(
                query, location, SEND_JOB, to_resend, tags=[("dagster/partition", today())]
            ),
            "deliveries alone": launch(
                query,
                location,
                "__ASSET_JOB",
                to_resend,
                tags=[("dagster/partition", today())],
                assets=[f"{DEFAULT_PREFIX}/deliveries"],
            ),
            "sync": launch(
                query,
                location,
                SYNC_JOB,
                notion_elsewhere(settings, notion_elsewhere_fake.base_url),
            ),
        }
        answers = ui_answers(query, location)
    files = _files(home)  # after the stop: every database and log is complete

    for name, refused in refusals.items():
        assert refused["__typename"] == "RunConfigValidationInvalid", (name, refused)
        message = " ".join(error["message"] for error in refused["errors"])
        resource, field = ("notion", "base_url") if name == "sync" else ("sender", "resend_api_url")
        assert "unexpected config entr" in message, message
        assert f"root:resources:{resource}:config" in message and field in message, message
    assert resend_elsewhere.requests == [] and notion_elsewhere_fake.total == 0

    jobs = {run["jobName"] for run in answers.runs()}
    assert {"ingest_signups", SEND_JOB, SYNC_JOB} <= jobs
    resources = answers.data["resources"]["allTopLevelResourceDetailsOrError"]["results"]
    assert {r["name"] for r in resources} >= {"store", "sender", "notion", "calcom", "alerts"}
    assert "dev.log" in files and any(name.startswith("dagster/") for name in files)

    texts = {**answers.texts(), **{f"file {name}": text for name, text in files.items()}}
    texts["refusals"] = json.dumps(refusals)
    assert stack.markers.leaks(texts) == []
