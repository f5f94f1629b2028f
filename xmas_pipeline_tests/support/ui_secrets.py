"""What the Dagster UI can show, read through its own GraphQL, and the secrets to look for.

`SecretMarkers` gives every secret the pipeline and the intake read a distinctive value (the
fakes are started with the same values, so real runs work). `ui_answers` asks the GraphQL
API the questions the UI's pages ask: the resources page, every job's launchpad defaults and
config types, the partition sets' run config, schedules and sensors with their ticks, and
runs with their config, tags and every event (messages, metadata, errors). A test then
checks that no marker is in any answer.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xmas_pipeline.settings import Settings

Query = Callable[[str, dict[str, Any]], dict[str, Any]]


def _marker(name: str) -> str:
    # Letters and digits only: no encoder (JSON, YAML, URLs, SQL) escapes it.
    return f"MK{name}{uuid.uuid4().hex[:12]}"


@dataclass
class SecretMarkers:
    """A distinctive value for every secret, by variable name."""

    password: str = field(default_factory=lambda: _marker("dbpass"))
    resend_key: str = field(default_factory=lambda: "re_" + _marker("resendkey"))
    notion_token: str = field(default_factory=lambda: _marker("notiontoken"))
    calcom_key: str = field(default_factory=lambda: "cal_" + _marker("calcomkey"))
    calcom_webhook_secret: str = field(default_factory=lambda: _marker("calcomhook"))
    resend_webhook_raw: str = field(default_factory=lambda: _marker("svixkey"))
    unsubscribe_secret: str = field(default_factory=lambda: _marker("unsub"))
    signup_token: str = field(default_factory=lambda: _marker("signuptoken"))
    alert_token: str = field(default_factory=lambda: _marker("alerthook"))

    @property
    def resend_webhook_secret(self) -> str:
        encoded = base64.b64encode(self.resend_webhook_raw.encode()).decode()
        return f"whsec_{encoded}"

    def with_password(self, database_url: str) -> str:
        """`postgresql+psycopg://user@host/db` with this password (trust auth ignores it)."""
        scheme, rest = database_url.split("://", 1)
        user, host = rest.split("@", 1)
        return f"{scheme}://{user}:{self.password}@{host}"

    def env(self, *, alert_url: str, **values: str) -> dict[str, str]:
        """Every secret variable, plus `values` (the fakes' URLs, the database URL...)."""
        assert self.alert_token in alert_url, "the alert URL must carry the alert marker"
        return {
            "RESEND_API_KEY": self.resend_key,
            "NOTION_TOKEN": self.notion_token,
            "CALCOM_API_KEY": self.calcom_key,
            "CALCOM_WEBHOOK_SECRET": self.calcom_webhook_secret,
            "RESEND_WEBHOOK_SECRET": self.resend_webhook_secret,
            "XMAS_UNSUBSCRIBE_SECRET": self.unsubscribe_secret,
            "XMAS_SIGNUP_TOKEN": self.signup_token,
            "XMAS_ALERT_WEBHOOK_URL": alert_url,
            **values,
        }

    def searched(self) -> dict[str, str]:
        """What to look for, named by the variable it would betray."""
        return {
            "XMAS_DATABASE_URL": self.password,
            "RESEND_API_KEY": self.resend_key.removeprefix("re_"),
            "NOTION_TOKEN": self.notion_token,
            "CALCOM_API_KEY": self.calcom_key.removeprefix("cal_"),
            "CALCOM_WEBHOOK_SECRET": self.calcom_webhook_secret,
            "RESEND_WEBHOOK_SECRET": self.resend_webhook_secret.removeprefix("whsec_"),
            "RESEND_WEBHOOK_SECRET (decoded)": self.resend_webhook_raw,
            "XMAS_UNSUBSCRIBE_SECRET": self.unsubscribe_secret,
            "XMAS_SIGNUP_TOKEN": self.signup_token,
            "XMAS_ALERT_WEBHOOK_URL": self.alert_token,
        }

    def leaks(self, answers: Mapping[str, str]) -> list[str]:
        """`secret in where` for every marker found in any answer (none, when all is well)."""
        return [
            f"{name} in {where}"
            for where, text in answers.items()
            for name, needle in self.searched().items()
            if needle in text
        ]


RESOURCES = """
query ($repo: RepositorySelector!) {
  allTopLevelResourceDetailsOrError(repositorySelector: $repo) {
    __typename
    ... on ResourceDetailsList { results {
      name description resourceType isTopLevel
      configFields { name description isRequired defaultValueAsJson configTypeKey }
      configuredValues { key value type }
      nestedResources { name type }
      jobsOpsUsing { jobName }
    } }
  }
  utilizedEnvVarsOrError(repositorySelector: $repo) {
    __typename
    ... on EnvVarWithConsumersList { results { envVarName } }
  }
}
"""

REPOSITORY = """
query ($repo: RepositorySelector!) {
  repositoryOrError(repositorySelector: $repo) {
    __typename
    ... on Repository {
      jobs { name description tags { key value } }
      schedules {
        name description cronSchedule tags { key value }
        scheduleState { ticks(limit: 50) {
          status skipReason runIds error { message stack causes { message stack } }
        } }
      }
      sensors {
        name description tags { key value }
        sensorState { ticks(limit: 50) {
          status skipReason runIds error { message stack causes { message stack } }
        } }
      }
    }
  }
  instance { info }
}
"""

LAUNCHPAD = """
query ($job: PipelineSelector!, $repo: RepositorySelector!, $name: String!) {
  runConfigSchemaOrError(selector: $job) {
    __typename
    ... on RunConfigSchema {
      rootDefaultYaml
      allConfigTypes {
        key description
        ... on CompositeConfigType { fields { name description defaultValueAsJson } }
      }
    }
  }
  pipelineOrError(params: $job) {
    __typename
    ... on Pipeline {
      presets { name runConfigYaml }
      modes { resources { name description } }
    }
  }
  partitionSetsOrError(repositorySelector: $repo, pipelineName: $name) {
    __typename
    ... on PartitionSets { results {
      name
      partitionsOrError(limit: 3) {
        ... on Partitions { results {
          name
          runConfigOrError { ... on PartitionRunConfig { yaml } }
          tagsOrError { ... on PartitionTags { results { key value } } }
        } }
      }
    } }
  }
}
"""

SCHEDULE_PREVIEW = """
query ($schedule: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $schedule) {
    __typename
    ... on Schedule { futureTicks(limit: 1) { results { evaluationResult {
      skipReason error { message stack }
      runRequests { runKey runConfigYaml tags { key value } }
    } } } }
  }
}
"""

RUNS = """
{
  runsOrError(limit: 100) {
    __typename
    ... on Runs { results { runId jobName status runConfigYaml runConfig tags { key value } } }
  }
}
"""

_METADATA = """
metadataEntries {
  label description
  ... on TextMetadataEntry { text }
  ... on UrlMetadataEntry { url }
  ... on JsonMetadataEntry { jsonString }
  ... on MarkdownMetadataEntry { mdStr }
  ... on PathMetadataEntry { path }
  ... on IntMetadataEntry { intRepr }
  ... on FloatMetadataEntry { floatRepr }
  ... on BoolMetadataEntry { boolValue }
  ... on TableMetadataEntry { table { records } }
}
"""

EVENTS = f"""
query ($runId: ID!) {{
  logsForRun(runId: $runId, limit: 10000) {{
    __typename
    ... on EventConnection {{ events {{
      __typename
      ... on MessageEvent {{ message level stepKey }}
      ... on DisplayableEvent {{ label description {_METADATA} }}
      ... on ErrorEvent {{ error {{ message stack causes {{ message stack }} }} }}
    }} }}
  }}
}}
"""


@dataclass
class UiAnswers:
    """Each GraphQL answer, by what it is (`resources`, `launchpad send_due_emails`...)."""

    data: dict[str, Any]

    def texts(self) -> dict[str, str]:
        return {where: json.dumps(answer) for where, answer in self.data.items()}

    def runs(self) -> list[dict[str, Any]]:
        return list(self.data["runs"]["runsOrError"]["results"])


def ui_answers(query: Query, location: str, repository: str = "__repository__") -> UiAnswers:
    """Every answer the UI's resources, launchpad, schedule, sensor and run pages get."""
    repo = {"repositoryLocationName": location, "repositoryName": repository}
    data: dict[str, Any] = {
        "resources": query(RESOURCES, {"repo": repo}),
        "repository": query(REPOSITORY, {"repo": repo}),
    }
    found = data["repository"]["repositoryOrError"]
    assert found["__typename"] == "Repository", found
    for job in found["jobs"]:
        name = job["name"]
        selector = {**repo, "pipelineName": name}
        data[f"launchpad {name}"] = query(LAUNCHPAD, {"job": selector, "repo": repo, "name": name})
    for schedule in found["schedules"]:
        selector = {**repo, "scheduleName": schedule["name"]}
        data[f"schedule {schedule['name']}"] = query(SCHEDULE_PREVIEW, {"schedule": selector})
    data["runs"] = query(RUNS, {})
    for run in data["runs"]["runsOrError"]["results"]:
        data[f"events of {run['jobName']} {run['runId']}"] = query(EVENTS, {"runId": run["runId"]})
    return UiAnswers(data)


LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on RunConfigValidationInvalid { errors { message path reason } }
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def launch(
    query: Query,
    location: str,
    job: str,
    run_config: Mapping[str, Any],
    tags: Iterable[tuple[str, str]] = (),
    assets: Iterable[str] = (),
) -> dict[str, Any]:
    """Launch `job` as the launchpad does (with `assets`, as Materialize does); the
    mutation's answer."""
    selector: dict[str, Any] = {
        "repositoryLocationName": location,
        "repositoryName": "__repository__",
        "pipelineName": job,
    }
    if assets:
        # "christmas_2025/deliveries": a campaign's asset key has two parts.
        selector["assetSelection"] = [{"path": key.split("/")} for key in assets]
    params = {
        "selector": selector,
        "runConfigData": dict(run_config),
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags]},
    }
    return dict(query(LAUNCH, {"params": params})["launchPipelineExecution"])


def sender_elsewhere(settings: Settings, url: str) -> dict[str, Any]:
    """The sender's run config as main's launchpad filled it in, with its API URL changed
    and the key taken from the environment: what a UI user would launch to read the key."""
    config = {
        "outbox_dir": str(settings.outbox_dir),
        "from_email": settings.from_email,
        "database_url": settings.database_url,
        "local_url": settings.intake_public_url,
        "public_url": settings.public_url,
        "postal_address": settings.postal_address,
        "resend_api_url": url,
        "resend_api_key": {"env": "RESEND_API_KEY"},
    }
    return {"resources": {"sender": {"config": config}}}


def notion_elsewhere(settings: Settings, url: str) -> dict[str, Any]:
    """Notion's run config as main's launchpad filled it in, pointed at `url`."""
    config = {
        "contacts_db_id": settings.notion_contacts_db_id,
        "sequences_db_id": settings.notion_sequences_db_id,
        "base_url": url,
        "token": {"env": "NOTION_TOKEN"},
    }
    return {"resources": {"notion": {"config": config}}}
