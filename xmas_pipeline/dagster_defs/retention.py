"""Inbox retention: the `prune_inbox` job and its daily schedule (`services.retention`).

A day's ingestion is known from Dagster's own record: the latest materialization of the
asset that ingests that kind for that day's partition.
"""

from datetime import UTC, datetime

import dagster as dg

from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.dagster_defs.metadata import md_table
from xmas_pipeline.dagster_defs.resources import InboxResource
from xmas_pipeline.services.held_days import days_waiting
from xmas_pipeline.services.retention import cutoff_day, prune_inbox
from xmas_pipeline.settings import Settings

RETENTION_JOB = "prune_inbox"
# The asset whose materialization means a day of that kind is in the store.
INGESTED_BY = {
    "signups": "email_sequences",
    "bookings": "booking_state",
    "email-events": "email_events",
}


def last_ingested(instance: dg.DagsterInstance, kind: str, day: str) -> datetime | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(INGESTED_BY[kind]), asset_partitions=[day]),
        limit=1,
    ).records
    return datetime.fromtimestamp(records[0].timestamp, UTC) if records else None


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    days = settings.inbox_retention_days

    @dg.op(name="prune_inbox_days", description=f"Remove ingested inbox days over {days} days old.")
    def prune_op(context: dg.OpExecutionContext, inbox: InboxResource) -> dg.Output[int]:
        cutoff = cutoff_day(datetime.now(UTC).date(), days)
        box = inbox.get()
        waiting = days_waiting(box, campaigns.loaded, campaigns.default_slug, before=cutoff)
        report = prune_inbox(
            box,
            cutoff,
            lambda kind, day: last_ingested(context.instance, kind, day),
            waiting,
        )
        removed = sum(report.removed_files.values())
        context.log.info(f"{removed} inbox files past {days} days removed")
        return dg.Output(
            removed,
            metadata={
                "retention (days)": days,
                "removed before": cutoff,
                **{f"files removed {k}": n for k, n in sorted(report.removed_files.items())},
                "days removed": len(report.removed_days),
                "removed": md_table([{"day": d} for d in report.removed_days], ["day"]),
                "days kept": md_table(report.kept_days, ["day", "reason"]),
            },
        )

    @dg.job(
        name=RETENTION_JOB,
        description=(
            f"Remove inbox day folders older than XMAS_INBOX_RETENTION_DAYS ({days}) whose "
            "ingestion succeeded after their last file; never-ingested days are kept."
        ),
    )
    def prune_inbox_job() -> None:
        prune_op()

    schedule = dg.ScheduleDefinition(
        name="inbox_retention_schedule",
        job=prune_inbox_job,
        cron_schedule="30 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Applies the inbox retention once a day.",
    )
    return dg.Definitions(jobs=[prune_inbox_job], schedules=[schedule])
