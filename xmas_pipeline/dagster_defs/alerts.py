"""The sensors that tell ops, through the alert outbox (`adapters.sql.alerts`):

- `ops_alerts_sensor`: reads the run failures recorded in the instance since its cursor and
  enqueues an alert for a failed send run, a run marked failed for a dead worker, and an
  ingestion run that failed after its retries: a campaign's run (its job named with the
  campaign's prefix) in that campaign's outbox, naming it; a global run in the default
  campaign's. Its cursor (the last failure event read) moves only once those alerts are
  in the outbox: a tick that fails reads them again.
- `stuck_messages_sensor`: enqueues an alert for messages still unsent well past their due
  time, each message once.
- `alert_outbox_sensor`: posts what the outbox holds, with backoff, until the chat accepts
  each alert (`services.alert_delivery`). A chat that is down or answers 429 delays the
  alerts; it never drops one.

Nothing here posts directly, so no alert depends on the chat being up at the moment its
event happens.
"""

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.core.due import stuck_after
from xmas_pipeline.core.exit_rules import SEND
from xmas_pipeline.core.ports import Alert
from xmas_pipeline.dagster_defs.jobs import INGEST_JOBS, SEND_TAG
from xmas_pipeline.dagster_defs.names import SEPARATOR, prefix_of
from xmas_pipeline.dagster_defs.resources import AlertResource, StateStoreResource
from xmas_pipeline.dagster_defs.sensors import DEAD_WORKER
from xmas_pipeline.services.alert_delivery import deliver_alerts
from xmas_pipeline.services.ops_alerts import (
    ops_alert,
    run_failed_key,
    run_failed_lines,
    stuck_alert,
    stuck_key,
)
from xmas_pipeline.services.planning import due_plan
from xmas_pipeline.settings import Settings

# A first tick (no cursor) looks this far back: failures of a fresh deployment's first
# minutes are not missed, and a failure announced before is a key the outbox knows.
FIRST_LOOK_BACK_S = 24 * 3600
FAILURES_PER_TICK = 100


def failure_cursor(cursor: str | None) -> int | None:
    """The storage id of the last run failure read, from this sensor's cursor, or from the
    one Dagster's run-failure sensor of the same name kept (an older release), which has
    the same `record_id`."""
    if not cursor:
        return None
    try:
        value = json.loads(cursor)
    except ValueError:
        return None
    record = value.get("record_id") if isinstance(value, dict) else None
    return record if isinstance(record, int) and record >= 0 else None


def _final_failure(run: dg.DagsterRun) -> bool:
    """No automatic retry will follow this failure."""
    retries = int(run.tags.get("dagster/max_retries") or 0)
    attempt = int(run.tags.get("dagster/retry_number") or 0)
    return attempt >= retries


def _step_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first failed step's error: the run's own failure message only names the step."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.step_failure_data if event is not None else None
        if data is not None and data.error is not None:
            return data.error.message.strip()
    return ""


def campaign_of_job(job_name: str, campaigns: CampaignSet) -> Campaign | None:
    """The loaded campaign whose prefix the job's name carries (None: a global job, or a
    campaign no longer loaded)."""
    if SEPARATOR not in job_name:
        return None
    prefix = job_name.split(SEPARATOR, 1)[0]
    for campaign in campaigns.loaded.values():
        if prefix_of(campaign.slug) == prefix:
            return campaign
    return None


def failure_alert(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    reason: str,
    campaign: Campaign | None = None,
) -> Alert | None:
    """The alert a failed run deserves, or None (a failure that is retried, or of no job
    that sends). `campaign`: the campaign whose job it was, named in the alert."""
    sends = SEND_TAG in run.tags
    dead = reason.startswith(DEAD_WORKER)
    ingest_final = run.job_name in INGEST_JOBS and _final_failure(run)
    if not (sends or dead or ingest_final):
        return None
    if dead:
        title = "A run's worker died"
    elif sends:
        title = "A send run failed"
    else:
        title = "An ingestion run failed after its retries"
    lines = run_failed_lines(run.job_name, run.run_id, reason)
    if campaign is not None:
        lines.insert(0, f"Campaign: {campaign.name} ({campaign.slug})")
    step = "" if dead else _step_error(instance, run.run_id)
    if step:
        lines.append(f"Error: {step[:600]}")
    return ops_alert(run_failed_key(run.run_id), title, lines)


def ops_alerts_sensor(campaigns: CampaignSet, interval: int) -> dg.SensorDefinition:
    # A global run's alerts: the default campaign's outbox (the first loaded campaign's
    # while the default's folder is broken), so they never depend on one folder loading.
    fallback = campaigns.default or next(iter(campaigns.loaded.values()), None)

    @dg.sensor(
        name="ops_alerts_sensor",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Reads the runs that failed since its last look and puts an alert in the alert "
            "outbox for a failed send run, a run marked failed because its worker died, and "
            "an ingestion run that failed after its retries (alert_outbox_sensor posts it): "
            "a campaign's run in that campaign's outbox, a global run in the default's."
        ),
    )
    def _sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext,
        alerts: AlertResource,
        store: StateStoreResource,
    ):
        instance = context.instance
        after = failure_cursor(context.cursor)
        records = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(
                event_type=dg.DagsterEventType.RUN_FAILURE,
                after_storage_id=after,
                after_timestamp=None if after is not None else time.time() - FIRST_LOOK_BACK_S,
            ),
            limit=FAILURES_PER_TICK,
            ascending=True,
        ).records
        if not records:
            return dg.SkipReason("no run failed since the last look")
        run_ids = list({r.event_log_entry.run_id for r in records})
        runs = {
            r.dagster_run.run_id: r.dagster_run
            for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids))
        }
        found: dict[str, tuple[Campaign, list[Alert]]] = {}
        for record in records:
            run = runs.get(record.event_log_entry.run_id)
            if run is None:
                continue
            event = record.event_log_entry.dagster_event
            reason = (event.message if event is not None else "") or ""
            owner = campaign_of_job(run.job_name, campaigns)
            alert = failure_alert(instance, run, reason, owner)
            outbox_of = owner or fallback
            if alert is not None and outbox_of is not None:
                found.setdefault(outbox_of.slug, (outbox_of, []))[1].append(alert)
        new: list[str] = []
        if alerts.webhook_url:
            # Before the cursor moves: if this raises, the next tick reads them again.
            for camp, mine in found.values():
                new += store.alert_outbox(camp).enqueue(mine)
        context.update_cursor(json.dumps({"record_id": records[-1].storage_id}))
        if not alerts.webhook_url:
            return dg.SkipReason(f"{len(records)} run failure(s); no XMAS_ALERT_WEBHOOK_URL")
        return dg.SkipReason(
            f"{len(records)} run failure(s) read, {len(new)} alert(s) added to the outbox"
        )

    return _sensor


def stuck_messages_sensor(campaigns: CampaignSet, interval: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="stuck_messages_sensor",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Puts an alert in the alert outbox when messages of any campaign are still unsent "
            "well past their due time (each message once), whatever the reason: a stopped "
            "schedule, failing runs, a provider refusing everything. Quiet for a campaign "
            "while its sending is paused."
        ),
    )
    def _sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext,
        alerts: AlertResource,
        store: StateStoreResource,
    ):
        if not alerts.webhook_url:
            return dg.SkipReason("no XMAS_ALERT_WEBHOOK_URL: nobody to tell")
        said = []
        for camp in campaigns.loaded.values():
            said.append(f"{camp.slug}: {_stuck_in(store, camp, campaigns.loaded)}")
        return dg.SkipReason("; ".join(said))

    return _sensor


def _stuck_in(store: StateStoreResource, camp: Campaign, running: Mapping[str, Campaign]) -> str:
    """One campaign's messages still unsent past their due time, alerted once each (an
    email the gap across campaigns holds back is not due, so not stuck)."""
    switch = store.send_switch().state(camp)
    if switch.paused:
        # Someone paused on purpose: what waits is expected, not stuck.
        return f"sending is {switch.describe()}: nothing is stuck"
    now = datetime.now(UTC)
    plan, _ = due_plan(store.prepared(camp), camp, now, running)
    late = plan[(plan["action"] == SEND) & (plan["due_at"] < now - stuck_after(camp))]
    outbox = store.alert_outbox(camp)
    told = outbox.known(stuck_key(m) for m in late["message_id"])
    new = late[[stuck_key(m) not in told for m in late["message_id"]]]
    if new.empty:
        return f"{len(late)} stuck message(s), none new"
    # The alert and the note of each message in one transaction: each message once.
    outbox.enqueue([stuck_alert(new)], noted=[stuck_key(m) for m in new["message_id"]])
    return f"alert added to the outbox for {len(new)} stuck message(s)"


def alert_outbox_sensor(campaigns: CampaignSet, interval: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="alert_outbox_sensor",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Posts every campaign's alert outbox to XMAS_ALERT_WEBHOOK_URL: each alert until "
            "the chat accepts it, marked delivered only then; a refusal is tried again with "
            "exponential backoff, never before the chat's Retry-After."
        ),
    )
    def _sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext,
        alerts: AlertResource,
        store: StateStoreResource,
    ):
        if not alerts.webhook_url:
            return dg.SkipReason("no XMAS_ALERT_WEBHOOK_URL: nobody to tell")
        said = []
        # The outbox is kept per campaign (a CRITICAL signup's alert is its campaign's).
        for camp in campaigns.loaded.values():
            outbox = store.alert_outbox(camp)
            report = deliver_alerts(outbox, alerts.webhook_url)
            for key, why in report.failed:
                context.log.warning(f"alert {key} not delivered yet: {why}")
            said.append(f"{camp.slug}: {report.summary()}; {outbox.waiting()} waiting")
        return dg.SkipReason("; ".join(said))

    return _sensor


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    interval = settings.sensor_interval_seconds
    return dg.Definitions(
        sensors=[
            ops_alerts_sensor(campaigns, interval),
            stuck_messages_sensor(campaigns, max(interval, 300)),
            # Often: a CRITICAL alert the ingestion run could not post waits at most this.
            alert_outbox_sensor(campaigns, max(1, min(interval, 15))),
        ]
    )
