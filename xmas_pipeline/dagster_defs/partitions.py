"""Daily partitions by UTC day: received day for ingestion, due day for deliveries."""

import dagster as dg

from xmas_pipeline.core.campaign import Campaign


def daily_partitions(campaign: Campaign) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today's partition exists today, so today's signups ingest today.
    return dg.DailyPartitionsDefinition(
        start_date=campaign.start_date, timezone="UTC", end_offset=1
    )
