"""Build the real Definitions on a temp XMAS_HOME, plus helpers to drop inbox files."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from xmas_pipeline.adapters.inbox import Inbox, InboxFile
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import DEFAULT_CAMPAIGN_FILE, Campaign, load_campaign
from xmas_pipeline.dagster_defs.build import build_definitions
from xmas_pipeline.settings import Settings


@dataclass
class PipelineEnv:
    home: Path
    settings: Settings
    defs: dg.Definitions
    campaign: Campaign

    @property
    def inbox(self) -> Inbox:
        return Inbox(self.settings.inbox_root)

    @property
    def outbox(self) -> Path:
        return self.settings.outbox_dir

    def store(self) -> SqlStore:
        return SqlStore(self.settings.database_url)

    def resources(self, *keys: str) -> dict[str, Any]:
        """The code location's resources (these keys, or all), for sensor and schedule
        contexts built by hand."""
        found = self.defs.get_repository_def().get_top_level_resources()
        return {k: found[k] for k in keys or found}

    def drop_signup(
        self, payload: dict[str, Any] | bytes, age: timedelta = timedelta(0)
    ) -> InboxFile:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        item = self.inbox.write("signups", body)
        if age:
            when = (datetime.now(UTC) - age).timestamp()
            os.utime(item.path, (when, when))
        return item

    def outbox_files(self, suffix: str = ".eml") -> list[str]:
        if not self.outbox.exists():
            return []
        return sorted(p.name for p in self.outbox.iterdir() if p.name.endswith(suffix))

    def ingest(self, day: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def("ingest_signups")
        return job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)

    def send(
        self, day: str, instance: dg.DagsterInstance, **config: Any
    ) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def("send_due_emails")
        return job.execute_in_process(
            partition_key=day,
            instance=instance,
            raise_on_error=False,
            run_config={"ops": {"deliveries": {"config": config}}},
        )


def make_env(home: Path, **env: str) -> PipelineEnv:
    # Tests post many signups from one address: no rate limits unless a test sets them.
    # Notion's fake answers at once: requests go at the most the settings allow (10/s, not
    # Notion's 3/s) unless a test sets the rate it is about (the rate itself is tested
    # against the fake's limit in services/ and e2e/).
    values = {
        "XMAS_HOME": str(home),
        "XMAS_SIGNUP_RATE_PER_IP": "off",
        "XMAS_SIGNUP_RATE_PER_EMAIL": "off",
        "XMAS_NOTION_RATE_PER_S": "10",
        **env,
    }
    settings = Settings.from_env(values)
    campaign = load_campaign(settings.campaign_file, testing_mode=settings.testing_mode)
    defs = build_definitions(settings)
    # Resolve now, outside any test instance: Dagster caches the repository, and resolving
    # it later inside `instance_for_test` would tie it to that instance's temp folder.
    defs.get_repository_def()
    return PipelineEnv(home, settings, defs, campaign)


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def signup(email: str, red: int = 0, orange: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "first_name": extra.pop("first_name", "Sam"),
        "business_name": extra.pop("business_name", "Sam's Salon"),
        "assessment_score": extra.pop("assessment_score", 47),
        "red_systems": red,
        "orange_systems": orange,
        "yellow_systems": 2,
        "green_systems": 3,
        "gps_score": 50,
        "money_score": 40,
        "weakest_system_1": "Bookings",
        "weakest_system_2": "Follow-up",
        "revenue_leak_total": 3500,
        **extra,
    }


def materializations(result: dg.ExecuteInProcessResult, asset: str) -> list[dict[str, Any]]:
    out = []
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            out.append({k: v.value for k, v in event.materialization.metadata.items()})
    return out


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def campaign_file_with(folder: Path, name: str = "campaign.yaml", **changes: Any) -> str:
    """The shipped campaign file with `changes`, written in `folder` with its templates
    beside it (a campaign file's templates are the `templates/` folder next to it): its
    path, for XMAS_CAMPAIGN_FILE."""
    data = yaml.safe_load(DEFAULT_CAMPAIGN_FILE.read_text(encoding="utf-8"))
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    if not (folder / "templates").exists():
        shutil.copytree(DEFAULT_CAMPAIGN_FILE.parent / "templates", folder / "templates")
    return str(path)


def unpaced_campaign_file(folder: Path) -> str:
    """The shipped campaign file without the send window and the minimum gap (for tests of
    the cadence itself, at any hour): its path, for XMAS_CAMPAIGN_FILE."""
    return campaign_file_with(folder, "unpaced-campaign.yaml", send_window=None, min_gap="0s")
