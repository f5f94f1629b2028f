"""Assemble the code location from settings (tests build their own from other settings)."""

import os

import dagster as dg

from xmas_pipeline.adapters.store import StateStore
from xmas_pipeline.core.campaign import load_campaign
from xmas_pipeline.dagster_defs.bookings import build_bookings
from xmas_pipeline.dagster_defs.delivery import SEND_JOB, build_delivery
from xmas_pipeline.dagster_defs.funnel import build_funnel
from xmas_pipeline.dagster_defs.ingestion import build_ingestion, inbox_sensor
from xmas_pipeline.dagster_defs.resend_job import build_resend_job
from xmas_pipeline.dagster_defs.resources import (
    AlertResource,
    CampaignResource,
    EmailSenderResource,
    InboxResource,
    StateStoreResource,
)
from xmas_pipeline.dagster_defs.sequences import build_sequences
from xmas_pipeline.settings import Settings

# Runs carrying this tag never overlap: the schedule skips while one is queued or running,
# and `make dev`'s instance config limits the tag to one run at a time.
SEND_TAG = "xmas/send"

_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _secret(name: str, value: str | None) -> str | dg.EnvVar | None:
    """Secrets go in as EnvVar so the UI shows the variable's name, never its value
    (settings built from a mapping other than the environment pass the value itself)."""
    if value and os.environ.get(name, "").strip() == value:
        return dg.EnvVar(name)
    return value or None


def store_resource(settings: Settings, *, secrets_as_env: bool = True) -> StateStoreResource:
    token = settings.notion_token
    return StateStoreResource(
        database_url=settings.database_url,
        notion_token=_secret("NOTION_TOKEN", token) if secrets_as_env else token,
        notion_base_url=settings.notion_base_url,
        notion_contacts_db_id=settings.notion_contacts_db_id,
        notion_sequences_db_id=settings.notion_sequences_db_id,
        notion_analytics_db_id=settings.notion_analytics_db_id,
        notion_templates_db_id=settings.notion_templates_db_id,
    )


def build_store(settings: Settings) -> StateStore:
    """The configured store outside Dagster (CLI commands)."""
    return store_resource(settings, secrets_as_env=False).get()


def build_definitions(settings: Settings) -> dg.Definitions:
    campaign = load_campaign(settings.campaign_file, testing_mode=settings.testing_mode)
    ingestion = build_ingestion(campaign, settings.sensor_interval_seconds)
    sequences = build_sequences(campaign)
    delivery = build_delivery(campaign)
    funnel = build_funnel()
    partitions = ingestion["partitions"][0]

    ingest_signups = dg.define_asset_job(
        "ingest_signups",
        selection=dg.AssetSelection.assets("signups", "email_sequences"),
        partitions_def=partitions,
        description="Validate one day of signup files and start their sequences.",
    )
    send_job = dg.define_asset_job(
        SEND_JOB,
        selection=dg.AssetSelection.assets("templates", "due_emails", "deliveries"),
        partitions_def=partitions,
        tags={SEND_TAG: "1"},
        description=(
            "Check the templates, compute what is due, send it. Backfill a range of days to "
            "re-send; set `force: true` under `deliveries` to re-send what was already sent."
        ),
    )

    @dg.schedule(
        name="send_schedule",
        job=send_job,
        cron_schedule=settings.send_cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Sends everything due. Stop this schedule to pause the whole campaign.",
    )
    def send_schedule(context: dg.ScheduleEvaluationContext):  # type: ignore[no-untyped-def]
        in_flight = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=SEND_JOB, statuses=_IN_FLIGHT), limit=1
        )
        if in_flight:
            return dg.SkipReason(f"send run {in_flight[0].run_id[:8]} is still in progress")
        when = context.scheduled_execution_time
        return dg.RunRequest(
            run_key=when.isoformat(),
            partition_key=when.strftime("%Y-%m-%d"),
            run_config={"ops": {"deliveries": {"config": {"catch_up": True}}}},
            tags={SEND_TAG: "1"},
        )

    signups_sensor = inbox_sensor(
        "signups_sensor",
        "signups",
        ingest_signups,
        partitions,
        settings.sensor_interval_seconds,
        "Starts a run for each inbox/signups/<day>/ folder with new files.",
    )

    resources = {
        "campaign_config": CampaignResource(
            campaign_file=settings.campaign_file, testing_mode=settings.testing_mode
        ),
        "inbox": InboxResource(root=str(settings.inbox_root)),
        "alerts": AlertResource(
            webhook_url=_secret("XMAS_ALERT_WEBHOOK_URL", settings.alert_webhook_url),
            ledger_dir=str(settings.home / "alerts"),
        ),
        "store": store_resource(settings),
        "sender": EmailSenderResource(
            outbox_dir=str(settings.outbox_dir),
            from_email=settings.from_email,
            resend_api_key=_secret("RESEND_API_KEY", settings.resend_api_key),
            resend_api_url=settings.resend_api_url,
            public_url=settings.public_url,
            unsubscribe_secret=_secret("XMAS_UNSUBSCRIBE_SECRET", settings.unsubscribe_secret),
            journal_dir=str(settings.home / "send-journal"),
        ),
    }
    base = dg.Definitions(
        assets=[
            *ingestion["assets"],
            *sequences["assets"],
            *delivery["assets"],
            *funnel["assets"],
        ],
        # The one-off re-send carries the send tag too: it never overlaps a send run.
        jobs=[ingest_signups, send_job, *funnel["jobs"], build_resend_job({SEND_TAG: "1"})],
        schedules=[send_schedule, *funnel["schedules"]],
        sensors=[signups_sensor],
        resources=resources,
    )
    # Bookings, reminders' ingestion and email events: their assets, jobs and sensors.
    return dg.Definitions.merge(base, build_bookings(campaign, settings))
