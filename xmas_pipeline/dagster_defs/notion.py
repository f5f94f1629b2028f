"""The Notion sync in the UI (only with NOTION_TOKEN set):

- `notion_email_sequence` (group notion): brings the Email Sequence DB and the CRM's
  contacts in step with the store, draining the sync queue at Notion's pace; its check
  `notion_in_sync` turns red when a change has waited longer than
  XMAS_NOTION_MAX_LAG_SECONDS;
- `sync_notion`: the job that materializes it, one run at a time (pool `xmas/notion`);
- `notion_sync_sensor`: frees the contacts a sync run that ended without settling them had
  taken, and starts that job when contacts are waiting: once the oldest change has waited
  XMAS_NOTION_SYNC_DELAY_SECONDS (so changes close together cost one write) or as soon as
  100 contacts are waiting. At every tick it also watches the lag (`notion_lag.py`), so
  `notion_in_sync` turns red, and ops are told, without a sync run.

Sending never waits for any of this: the send path touches only the store.
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.core.ports import QueueStats
from xmas_pipeline.dagster_defs.executor import run_is_live
from xmas_pipeline.dagster_defs.metadata import in_group, md_table
from xmas_pipeline.dagster_defs.names import campaign_key
from xmas_pipeline.dagster_defs.notion_lag import (
    check_events,
    in_sync_metadata,
    lag_seconds,
    watch_episode,
)
from xmas_pipeline.dagster_defs.resources import (
    AlertResource,
    NotionResource,
    StateStoreResource,
)
from xmas_pipeline.services.notion_sync import (
    SyncReport,
    combined_report,
    combined_stats,
    sync_all_campaigns,
)
from xmas_pipeline.settings import Settings

SYNC_JOB = "sync_notion"
NOTION_POOL = "xmas/notion"
SYNC_TAG = "xmas/notion-sync"
BACKLOG = 100  # contacts waiting that start a sync at once
WAITING_OR_RUNNING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def sync_metadata(report: SyncReport, stats: QueueStats, now: datetime) -> dict[str, Any]:
    return {
        "contacts synced": report.contacts,
        "pages created": report.created,
        "pages found (created before)": report.found,
        "sequence page updates": report.sequence_updates,
        "contact page updates": report.contact_updates,
        "contacts looked up": report.contact_lookups,
        "send log pages": report.logged,
        "Notion requests": report.requests,
        "failed": len(report.failed),
        "stopped": report.stopped or "no: the queue was drained",
        "queue depth": stats.depth,
        "oldest change waiting (s)": round(lag_seconds(stats, now), 1),
        "contacts with an error": stats.failing,
        "errors": md_table(
            [{"contact": k, "attempts": a, "error": e} for k, a, e in stats.errors],
            ["contact", "attempts", "error"],
        ),
    }


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    if not settings.notion_enabled:
        return dg.Definitions()
    max_lag = settings.notion_max_lag_seconds
    delay = settings.notion_sync_delay_seconds

    @dg.asset(
        **in_group("notion"),
        kinds={"notion", "sql"},
        pool=NOTION_POOL,
        deps=[
            "email_sequences",
            "booking_state",
            *(campaign_key(slug, "deliveries") for slug in campaigns.loaded),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "notion_in_sync",
                asset="notion_email_sequence",
                description=(
                    f"No change has waited more than {max_lag:.0f} s for Notion "
                    "(XMAS_NOTION_MAX_LAG_SECONDS)."
                ),
            )
        ],
        description=(
            "The Email Sequence DB and the CRM contacts in Notion, kept in step with the "
            "store: every contact whose pages are behind is written, only what differs, at "
            "Notion's pace (3 requests/s). Sending never waits for it; a Notion outage "
            "only delays it. People's edits (Paused, after-call statuses, templates) come "
            "back through notion_edits_sensor."
        ),
    )
    def notion_email_sequence(
        context: dg.AssetExecutionContext,
        store: StateStoreResource,
        notion: NotionResource,
    ):  # type: ignore[no-untyped-def]
        running = list(campaigns.loaded.values())
        sql = store.prepared(running[0])
        queue = store.notion_queue()
        for camp in running:
            # Contacts a sync run that died had taken are free again.
            queue.release(camp, lambda run_id: run_is_live(context.instance, run_id))
        client = notion.client()
        try:
            # Every campaign through one client: one rate budget, a batch of each in turn.
            reports = sync_all_campaigns(
                campaigns=running,
                snapshots=sql.contact_snapshots,
                queue=queue,
                pages=store.notion_pages(),
                notion=client,
                holder=context.run_id,
            )
        finally:
            client.close()
        report = combined_report(reports)
        now = datetime.now(UTC)
        stats = combined_stats(queue.stats(camp) for camp in running)
        for key, error in report.failed[:20]:
            context.log.warning(f"{key}: not synced yet: {error}")
        if report.stopped:
            context.log.warning(f"sync stopped early: {report.stopped}")
        lag = lag_seconds(stats, now)
        yield dg.MaterializeResult(metadata=sync_metadata(report, stats, now))
        yield dg.AssetCheckResult(
            check_name="notion_in_sync",
            passed=lag <= max_lag,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=in_sync_metadata(lag, max_lag, stats),
            description=None
            if lag <= max_lag
            else f"Notion is {lag:.0f} s behind the store ({report.stopped or 'a backlog'})",
        )

    sync_job = dg.define_asset_job(
        SYNC_JOB,
        selection=dg.AssetSelection.assets("notion_email_sequence"),
        tags={SYNC_TAG: "1"},
        description="Bring Notion in step with the store (sends nothing).",
    )

    @dg.sensor(
        name="notion_sync_sensor",
        job=sync_job,
        minimum_interval_seconds=max(1, min(settings.sensor_interval_seconds, 10)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Frees the contacts a sync run that ended had taken, then starts sync_notion when "
            f"contacts are waiting for Notion: once the oldest change has waited {delay:.0f} "
            f"s, or at once with {BACKLOG} waiting; never while a sync run is queued or "
            "running. Every tick it also measures how far Notion is behind: over "
            f"{max_lag:.0f} s, notion_in_sync turns red and ops are told (once per episode), "
            "with or without a sync run."
        ),
    )
    def notion_sync_sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext,
        store: StateStoreResource,
        alerts: AlertResource,
    ):
        running = list(campaigns.loaded.values())
        # Lag alerts are the deployment's: they go through the default campaign's outbox.
        camp = campaigns.default or running[0]
        instance = context.instance
        queue = store.notion_queue()
        # A sync run that died (its code server killed, say) keeps its contacts until
        # someone frees them: here, not in the next sync run, which would never start.
        freed = sum(
            queue.release(one, lambda run_id: run_is_live(instance, run_id)) for one in running
        )
        stats = combined_stats(queue.stats(one) for one in running)
        now = datetime.now(UTC)
        lag = lag_seconds(stats, now)
        events = check_events(instance, lag, max_lag, stats)
        outbox = store.alert_outbox(camp) if alerts.webhook_url else None
        watch_episode(
            store.notion_pages(), outbox, camp, lag=lag, max_lag=max_lag, stats=stats, now=now
        )
        said = f"freed {freed} contacts of an ended sync run; " if freed else ""
        if freed:
            context.log.info(said.rstrip("; "))
        busy = instance.get_runs_count(
            filters=dg.RunsFilter(job_name=SYNC_JOB, statuses=WAITING_OR_RUNNING)
        )
        if busy:
            return dg.SensorResult(
                skip_reason=f"{said}a sync run is queued or running", asset_events=events
            )
        if not stats.ready:
            return dg.SensorResult(
                skip_reason=f"{said}nothing to sync ({stats.depth} waiting to retry)",
                asset_events=events,
            )
        if stats.ready < BACKLOG and lag < delay:
            return dg.SensorResult(
                skip_reason=f"{said}{stats.ready} waiting; the oldest for {lag:.0f} s",
                asset_events=events,
            )
        request = dg.RunRequest(run_key=f"notion-sync:{now.isoformat()}")
        return dg.SensorResult(run_requests=[request], asset_events=events)

    return dg.Definitions(
        assets=[notion_email_sequence], jobs=[sync_job], sensors=[notion_sync_sensor]
    )
