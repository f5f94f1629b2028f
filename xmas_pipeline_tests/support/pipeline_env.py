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
from xmas_pipeline.core.campaign import DEFAULT_CAMPAIGN_FILE, DEFAULT_CAMPAIGN_SLUG, Campaign
from xmas_pipeline.core.campaign_set import CAMPAIGN_FIELD
from xmas_pipeline.dagster_defs.build import build_definitions
from xmas_pipeline.dagster_defs.jobs import SEND_JOB, deliveries_config
from xmas_pipeline.dagster_defs.names import campaign_key, campaign_name, prefix_of
from xmas_pipeline.settings import Settings

# The shipped default campaign's asset prefix (`christmas_2025`), for tests of a dev server
# or a deployment, which run the shipped campaigns folder.
DEFAULT_PREFIX = prefix_of(DEFAULT_CAMPAIGN_SLUG)


def default_name(base: str) -> str:
    """The shipped default campaign's job, schedule or op name
    (`christmas_2025__send_due_emails`)."""
    return campaign_name(DEFAULT_CAMPAIGN_SLUG, base)


@dataclass
class PipelineEnv:
    home: Path
    settings: Settings
    defs: dg.Definitions
    campaign: Campaign  # the default campaign (the first loaded when its folder is broken)

    def name(self, base: str, campaign: str | None = None) -> str:
        """A campaign's job, schedule or op name (the default campaign's unless given):
        `name("send_due_emails")` -> `christmas_2025__send_due_emails`."""
        return campaign_name(campaign or self.campaign.slug, base)

    def key(self, base: str, campaign: str | None = None) -> dg.AssetKey:
        """A campaign's asset key: `key("deliveries")` -> `christmas_2025/deliveries`."""
        return campaign_key(campaign or self.campaign.slug, base)

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
        self,
        payload: dict[str, Any] | bytes,
        age: timedelta = timedelta(0),
        campaign: str | None = None,
    ) -> InboxFile:
        """A signup file as the intake writes it; `campaign` goes in its request details
        as the intake names it (none: a file from before, for the default campaign)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request = {CAMPAIGN_FIELD: campaign} if campaign else None
        item = self.inbox.write("signups", body, request=request)
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
        self, day: str, instance: dg.DagsterInstance, campaign: str | None = None, **config: Any
    ) -> dg.ExecuteInProcessResult:
        """A run of a campaign's send job (the default campaign's unless given), with
        `config` for its `deliveries`."""
        slug = campaign or self.campaign.slug
        job = self.defs.resolve_job_def(campaign_name(slug, SEND_JOB))
        return job.execute_in_process(
            partition_key=day,
            instance=instance,
            raise_on_error=False,
            run_config=deliveries_config(slug, **config),
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
    campaigns = settings.campaigns()
    # The default campaign; the first that loads when its folder is broken (a test of that).
    campaign = campaigns.default or next(iter(campaigns.loaded.values()))
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


def materializations(
    result: dg.ExecuteInProcessResult, asset: str | dg.AssetKey
) -> list[dict[str, Any]]:
    """The metadata of each materialization of `asset`: a whole key, or a name matching
    the key's last part (a campaign's `deliveries` is `christmas_2025/deliveries`)."""
    out = []
    for event in result.get_asset_materialization_events():
        key = event.asset_key
        if (isinstance(asset, dg.AssetKey) and key == asset) or key.path[-1] == asset:
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
