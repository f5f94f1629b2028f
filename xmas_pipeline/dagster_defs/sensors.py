"""The sensors.

- one per inbox kind: a run per day folder whose files changed;
- `calcom_poll_sensor` (only with `CALCOM_API_KEY`): feeds the bookings inbox;
- `send_after_signups_sensor`: a send run as soon as an ingestion run started new
  sequences, so a welcome email leaves within a minute of the signup (the cron stays for
  the rest of the cadence);
- `run_watchdog_sensor`: marks failed a run whose worker stopped its heartbeat (it died,
  with or without its code server), so it holds nothing back and ingestion is retried.

The sensors that tell ops (`ops_alerts_sensor`, `stuck_messages_sensor`,
`alert_outbox_sensor`) are in `alerts.py`.
"""

import json
import time
from datetime import UTC, datetime

import dagster as dg

from xmas_pipeline.adapters.calcom import PollCursor, poll_bookings
from xmas_pipeline.core.bookings import API_SOURCE
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.dagster_defs.executor import HEARTBEAT_TAG
from xmas_pipeline.dagster_defs.jobs import (
    INGEST_BOOKINGS_JOB,
    INGEST_EMAIL_EVENTS_JOB,
    INGEST_SIGNUPS_JOB,
    SEND_JOB,
    SEND_TAG,
)
from xmas_pipeline.dagster_defs.resources import (
    CalcomResource,
    CampaignResource,
    InboxResource,
    StateStoreResource,
)
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


def calcom_poll_sensor(campaign: Campaign, interval: int) -> dg.SensorDefinition:
    first_since = datetime.fromisoformat(campaign.start_date).replace(tzinfo=UTC)

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
# The `email_sequences` counts that each mean an email to send at once.
STARTED_COUNTS = ("new sequences", "confirmed", "confirmation emails owed")


def new_sequences(instance: dg.DagsterInstance, run_id: str) -> int:
    """How many sequences a run's `email_sequences` materializations started (new ones,
    and ones a confirmation started), plus the double opt-in confirmation emails it made
    due: each is an email to send at once."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    started = 0
    for record in records:
        materialization = record.asset_materialization
        if materialization is not None and materialization.asset_key == SEQUENCES_ASSET:
            for name in STARTED_COUNTS:
                value = materialization.metadata.get(name)
                started += int(getattr(value, "value", 0) or 0)
    return started


def send_after_signups_sensor(interval: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="send_after_signups_sensor",
        job_name=SEND_JOB,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Starts a send run as soon as an ingest_signups run started new sequences, so "
            "each welcome email leaves within a minute of the signup. Same send path, pool "
            "and exactly-once rules as send_schedule, which keeps the rest of the cadence."
        ),
    )
    def _sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext,
        store: StateStoreResource,
        campaign_config: CampaignResource,
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
        started = sum(new_sequences(instance, r.dagster_run.run_id) for r in records)
        if not started:
            return dg.SkipReason(f"{len(records)} ingest run(s), no new sequence to welcome")
        state = store.send_switch().state(campaign_config.campaign)
        if state.paused:
            # Not asked again later: resuming catches up through the schedule's next run.
            return dg.SkipReason(
                f"{started} new sequence(s), not welcomed now: sending is {state.describe()}"
            )
        waiting = instance.get_runs(
            filters=dg.RunsFilter(job_name=SEND_JOB, statuses=WAITING), limit=1
        )
        if waiting:  # it plans when it runs: these new sequences are in it
            return dg.SkipReason(f"send run {waiting[0].run_id[:8]} is about to start")
        last = records[-1].dagster_run.run_id
        return dg.RunRequest(
            run_key=f"after-signups:{last}",
            partition_key=datetime.now(UTC).strftime("%Y-%m-%d"),
            run_config={"ops": {"deliveries": {"config": {"catch_up": True}}}},
            tags={SEND_TAG: "1", "xmas/trigger": "new signups"},
        )

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
    settings: Settings, campaign: Campaign, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
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
        sensors.append(calcom_poll_sensor(campaign, max(60, interval)))
    dead_after = settings.run_dead_after_seconds
    sensors += [
        # A cheap look at finished runs: quicker than the inbox sensors, so the welcome
        # path stays within a minute on the default intervals.
        send_after_signups_sensor(max(1, min(interval, 5))),
        run_watchdog_sensor(dead_after, max(1, min(interval, int(dead_after / 4)))),
    ]
    return dg.Definitions(sensors=sensors)
