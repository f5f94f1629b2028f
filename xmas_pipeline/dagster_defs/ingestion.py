"""Ingestion: inbox day folders -> the `signups` asset, one partition per received day."""

import json
from typing import Any

import dagster as dg
import pandas as pd

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.dagster_defs.metadata import md_table, rejected_files_check, segment_counts
from xmas_pipeline.dagster_defs.partitions import daily_partitions
from xmas_pipeline.dagster_defs.resources import InboxResource
from xmas_pipeline.ingest import read_signup_day

OWNERS = ["team:marketing-ops"]


def build_ingestion(campaign: Campaign, sensor_interval: int) -> dict[str, list]:
    partitions = daily_partitions(campaign)

    @dg.asset(
        group_name="ingestion",
        kinds={"python", "pandas"},
        owners=OWNERS,
        partitions_def=partitions,
        description=(
            "Assessment signups received on this day: every JSON file in "
            "`inbox/signups/<day>/`, validated. Bad files are reported with their reason "
            "and kept where they are."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "no_rejected_files",
                asset="signups",
                description="Every signup file of the day is valid JSON with valid fields.",
            )
        ],
    )
    def signups(context: dg.AssetExecutionContext, inbox: InboxResource):  # type: ignore[no-untyped-def]
        day = context.partition_key
        batch = read_signup_day(inbox.get(), day)
        frame = batch.frame()
        rejected = [{"file": r.file, "reason": r.reason} for r in batch.rejected]
        for item in rejected:
            context.log.warning(f"rejected {item['file']}: {item['reason']}")
        by_segment = segment_counts(frame.get("segment", pd.Series(dtype="object")))
        yield dg.Output(
            frame,
            metadata={
                "day": day,
                "accepted": len(frame),
                "rejected": len(rejected),
                "repeats": batch.repeats,
                **{f"segment {k}": v for k, v in by_segment.items()},
                "rejected files": md_table(rejected, ["file", "reason"]),
            },
        )
        yield rejected_files_check(day, rejected)

    return {"assets": [signups], "partitions": [partitions]}


def inbox_sensor(
    name: str,
    kind: str,
    job: Any,
    partitions: dg.DailyPartitionsDefinition,
    interval: int,
    description: str,
) -> dg.SensorDefinition:
    """A run per day folder whose files changed since the last tick (cursor: fingerprints)."""

    @dg.sensor(
        name=name,
        job=job,
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
