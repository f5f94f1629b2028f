"""The sensors: one per inbox kind (a run per day folder whose files changed), and the
Cal.com poller (only with `CALCOM_API_KEY`), which feeds the bookings inbox."""

import json
from datetime import UTC, datetime

import dagster as dg

from xmas_pipeline.adapters.calcom import PollCursor, poll_bookings
from xmas_pipeline.core.bookings import API_SOURCE
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.dagster_defs.jobs import (
    INGEST_BOOKINGS_JOB,
    INGEST_EMAIL_EVENTS_JOB,
    INGEST_SIGNUPS_JOB,
)
from xmas_pipeline.dagster_defs.resources import CalcomResource, InboxResource
from xmas_pipeline.settings import Settings


def inbox_sensor(
    name: str,
    kind: str,
    job_name: str,
    partitions: dg.PartitionsDefinition,
    interval: int,
    description: str,
) -> dg.SensorDefinition:
    """A run per day folder whose files changed since the last tick (cursor: fingerprints)."""

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
            requests.append(dg.RunRequest(run_key=f"{kind}:{day}:{fingerprint}", partition_key=day))
            seen[day] = fingerprint
        context.update_cursor(json.dumps(seen, sort_keys=True))
        if not requests:
            return dg.SkipReason(f"no new files in inbox/{kind}/")
        return requests

    return _sensor


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


def definitions(
    settings: Settings, campaign: Campaign, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    interval = settings.sensor_interval_seconds
    sensors = [
        inbox_sensor(
            f"{name}_sensor",
            kind,
            job,
            partitions,
            interval,
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
    return dg.Definitions(sensors=sensors)
