"""The sensors.

- one per inbox kind: a run per day folder whose files changed;
- `calcom_poll_sensor` (only with `CALCOM_API_KEY`): feeds the bookings inbox;
- `send_after_signups_sensor`: a send run of each campaign as soon as an ingestion run
  started new sequences in it, so a welcome email leaves within a minute of the signup
  (each campaign's cron stays for the rest of the cadence);
- `run_watchdog_sensor`: marks failed a run whose worker stopped its heartbeat (it died,
  with or without its code server), so it holds nothing back and ingestion is retried.

The sensors that tell ops (`ops_alerts_sensor`, `stuck_messages_sensor`,
`alert_outbox_sensor`) are in `alerts.py`.
"""

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from xmas_pipeline.adapters.calcom import PollCursor, poll_bookings
from xmas_pipeline.core.bookings import API_SOURCE
from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.dagster_defs.executor import HEARTBEAT_TAG
from xmas_pipeline.dagster_defs.jobs import (
    INGEST_BOOKINGS_JOB,
    INGEST_EMAIL_EVENTS_JOB,
    INGEST_SIGNUPS_JOB,
    SEND_JOB,
    SEND_TAG,
    deliveries_config,
)
from xmas_pipeline.dagster_defs.names import campaign_name
from xmas_pipeline.dagster_defs.resources import (
    CalcomResource,
    InboxResource,
    StateStoreResource,
)
from xmas_pipeline.dagster_defs.sequences import STARTED_COUNTS, started_key
from xmas_pipeline.settings import Settings


def inbox_sensor(
    name: str,
    kind: str,
    job_name: str,
    partitions: dg.PartitionsDefinition,
    interval: int,
    description: str,
) -> dg.SensorDefinition:
    """A run per day folder whose files changed since the last tick (cursor: fingerprints).

    One run per day at a time: a run of the day still waiting to start will read the new
    files anyway, so none is added; while one is running, the change is left for a tick
    after it ends. (Each run re-reads its whole day: overlapping runs only compete for the
    machine. Measured with 10,000 signups in 30 s: five runs at once, three of them idle.)
    """

    @dg.sensor(
        name=name,
        job_name=job_name,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def _sensor(context: dg.SensorEvaluationContext, inbox: InboxResource):  # type: ignore[no-untyped-def]
        box = inbox.get()
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        valid_days = set(partitions.get_partition_keys(dynamic_partitions_store=None))
        requests = []
        for day in box.days(kind):
            fingerprint = box.fingerprint(kind, day)
            if not fingerprint or seen.get(day) == fingerprint:
                continue
            if day not in valid_days:
                context.log.warning(f"{kind}/{day}: outside the campaign's days; not ingested")
                seen[day] = fingerprint
                continue
            busy = day_runs(context.instance, job_name, day)
            if busy == "waiting":
                seen[day] = fingerprint  # the queued run reads these files when it starts
                continue
            if busy == "running":
                continue  # fingerprint not kept: a tick after the run ends asks again
            requests.append(dg.RunRequest(run_key=f"{kind}:{day}:{fingerprint}", partition_key=day))
            seen[day] = fingerprint
        context.update_cursor(json.dumps(seen, sort_keys=True))
        if not requests:
            return dg.SkipReason(f"no new files in inbox/{kind}/")
        return requests

    return _sensor


WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
_RUNNING = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def day_runs(instance: dg.DagsterInstance, job_name: str, day: str) -> str:
    """ "waiting" when a run of `job_name` for `day` has yet to start, "running" when one
    is under way, "" when neither."""
    tags = {"dagster/partition": day}
    for state, statuses in (("waiting", WAITING), ("running", _RUNNING)):
        runs = dg.RunsFilter(job_name=job_name, statuses=statuses, tags=tags)
        if instance.get_runs_count(filters=runs):
            return state
    return ""


def calcom_poll_sensor(start_date: str, interval: int) -> dg.SensorDefinition:
    first_since = datetime.fromisoformat(start_date).replace(tzinfo=UTC)

    @dg.sensor(
        name="calcom_poll_sensor",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Polls Cal.com API v2 (`GET /v2/bookings`) for bookings created or changed since "
            "the last poll and writes each new version to inbox/bookings/<today>/, where "
            "bookings_sensor ingests it. Catches changes whose webhook never arrived."
        ),
    )
    def _sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext, calcom: CalcomResource, inbox: InboxResource
    ):
        cursor = PollCursor.from_json(context.cursor)
        with calcom.client() as client:
            # A Cal.com error fails the tick, visibly, and the cursor stays where it was.
            result = poll_bookings(client, cursor, first_since=first_since)
        box = inbox.get()
        for item in result.items:
            box.write_json("bookings", {"source": API_SOURCE, "booking": item})
        for uid, reason in result.rejected:
            context.log.warning(f"Cal.com booking {uid}: {reason} (kept in the inbox)")
        context.update_cursor(result.cursor.to_json())
        return dg.SkipReason(
            f"{len(result.items)} new booking versions written to inbox/bookings/"
            if result.items
            else "no booking changes since the last poll"
        )

    return _sensor


SEQUENCES_ASSET = dg.AssetKey("email_sequences")


def started_by_campaign(
    instance: dg.DagsterInstance, run_id: str, default_slug: str = ""
) -> dict[str, int]:
    """Per campaign, how many sequences a run's `email_sequences` materializations started
    (new ones, and ones a confirmation started), plus the double opt-in confirmation emails
    it made due: each is an email to send at once. A materialization from before campaigns
    were counted apart is the default campaign's."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    started: dict[str, int] = {}
    prefix = started_key("")
    for record in records:
        materialization = record.asset_materialization
        if materialization is None or materialization.asset_key != SEQUENCES_ASSET:
            continue
        metadata = materialization.metadata
        per_campaign = {
            name.removeprefix(prefix): int(getattr(value, "value", 0) or 0)
            for name, value in metadata.items()
            if name.startswith(prefix)
        }
        if not per_campaign:
            per_campaign = {
                default_slug: sum(
                    int(getattr(metadata.get(name), "value", 0) or 0) for name in STARTED_COUNTS
                )
            }
        for slug, n in per_campaign.items():
            started[slug] = started.get(slug, 0) + n
    return started


def new_sequences(instance: dg.DagsterInstance, run_id: str) -> int:
    """Every campaign's emails to send at once after this run (`started_by_campaign`)."""
    return sum(started_by_campaign(instance, run_id).values())


def send_after_signups_sensor(
    campaigns: CampaignSet, send_jobs: Mapping[str, Any], interval: int
) -> dg.SensorDefinition:
    @dg.sensor(
        name="send_after_signups_sensor",
        jobs=list(send_jobs.values()),
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Starts a send run of each campaign whose signups an ingest_signups run just "
            "enrolled, so each welcome email leaves within a minute of the signup. Same send "
            "path, pool and exactly-once rules as the campaign's send_schedule, which keeps "
            "the rest of the cadence; a paused campaign is not started, the others are."
        ),
    )
    def _sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext, store: StateStoreResource
    ):
        instance = context.instance
        # Cursor: when the last ingest run it looked at finished (ISO), so each once. The
        # first look starts the clock: what finished before it was welcomed by the cron.
        if not context.cursor:
            context.update_cursor(datetime.now(UTC).isoformat())
            return dg.SkipReason("started: watching ingest_signups runs from now on")
        since = datetime.fromisoformat(context.cursor)
        records = instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=INGEST_SIGNUPS_JOB,
                statuses=[dg.DagsterRunStatus.SUCCESS],
                updated_after=since,
            ),
            order_by="update_timestamp",
            ascending=True,
        )
        if not records:
            return dg.SkipReason("no ingest_signups run finished since the last look")
        context.update_cursor(records[-1].update_timestamp.isoformat())
        started: dict[str, int] = {}
        for record in records:
            for slug, n in started_by_campaign(
                instance, record.dagster_run.run_id, campaigns.default_slug
            ).items():
                started[slug] = started.get(slug, 0) + n
        last = records[-1].dagster_run.run_id
        requests = []
        skipped = []
        for slug, count in started.items():
            campaign = campaigns.loaded.get(slug)
            if not count or campaign is None:
                continue
            state = store.send_switch().state(campaign)
            if state.paused:
                # Not asked again later: resuming catches up through the schedule's next run.
                skipped.append(f"{slug}: {count} not welcomed now, sending is {state.describe()}")
                continue
            job_name = campaign_name(slug, SEND_JOB)
            waiting = instance.get_runs(
                filters=dg.RunsFilter(job_name=job_name, statuses=WAITING), limit=1
            )
            if waiting:  # it plans when it runs: these new sequences are in it
                skipped.append(f"{slug}: send run {waiting[0].run_id[:8]} is about to start")
                continue
            requests.append(
                dg.RunRequest(
                    job_name=job_name,
                    run_key=f"after-signups:{slug}:{last}",
                    partition_key=datetime.now(UTC).strftime("%Y-%m-%d"),
                    run_config=deliveries_config(slug, catch_up=True),
                    tags={SEND_TAG: "1", "xmas/trigger": "new signups"},
                )
            )
        if requests:
            return requests
        if skipped:
            return dg.SkipReason("; ".join(skipped))
        return dg.SkipReason(f"{len(records)} ingest run(s), no new sequence to welcome")

    return _sensor


DEAD_WORKER = "run worker stopped"  # the start of the watchdog's failure message


def run_watchdog_sensor(dead_after: float, interval: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="run_watchdog_sensor",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Marks failed any run whose worker stopped its heartbeat (the process or its host "
            f"died) for {dead_after:.0f} s, so it holds no later run back; ingestion runs "
            "are then retried."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext):  # type: ignore[no-untyped-def]
        instance = context.instance
        now = time.time()
        marked = []
        for record in instance.get_run_records(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
        ):
            run = record.dagster_run
            last = float(
                run.tags.get(HEARTBEAT_TAG)
                or record.start_time
                or record.create_timestamp.timestamp()
            )
            silent = now - last
            if silent < dead_after:
                continue
            instance.report_run_failed(
                run,
                f"{DEAD_WORKER}: no heartbeat for {silent:.0f} s (its process or host died); "
                "marked failed by run_watchdog_sensor so that later runs go on",
            )
            marked.append(run.run_id[:8])
        return dg.SkipReason(
            f"marked failed: {', '.join(marked)}" if marked else "every run in progress is alive"
        )

    return _sensor


def definitions(
    settings: Settings,
    campaigns: CampaignSet,
    partitions: dg.PartitionsDefinition,
    send_jobs: Mapping[str, Any],
) -> dg.Definitions:
    """The global sensors; `send_jobs`: each loaded campaign's send job, by slug."""
    interval = settings.sensor_interval_seconds
    # A look at the inbox is a folder listing (or one LIST request): every 10 s at most,
    # so a new signup's welcome goes within a minute on the defaults (measured in
    # bench/bench_welcome_latency.py).
    inbox_interval = max(1, min(interval, 10))
    sensors = [
        inbox_sensor(
            f"{name}_sensor",
            kind,
            job,
            partitions,
            inbox_interval,
            f"Starts a run for each inbox/{kind}/<day>/ folder with new files.",
        )
        for name, kind, job in (
            ("signups", "signups", INGEST_SIGNUPS_JOB),
            ("bookings", "bookings", INGEST_BOOKINGS_JOB),
            ("email_events", "email-events", INGEST_EMAIL_EVENTS_JOB),
        )
    ]
    if settings.calcom_api_key is not None:
        # From the earliest campaign's start: every booking any campaign may hear of.
        sensors.append(calcom_poll_sensor(campaigns.earliest_start(), max(60, interval)))
    dead_after = settings.run_dead_after_seconds
    sensors += [
        # A cheap look at finished runs: quicker than the inbox sensors, so the welcome
        # path stays within a minute on the default intervals.
        send_after_signups_sensor(campaigns, send_jobs, max(1, min(interval, 5))),
        run_watchdog_sensor(dead_after, max(1, min(interval, int(dead_after / 4)))),
    ]
    return dg.Definitions(sensors=sensors)
