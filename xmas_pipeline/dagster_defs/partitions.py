"""Daily partitions by UTC day: received day for ingestion, due day for deliveries."""

import dagster as dg


def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    """Days from `start_date` (a campaign's, or the earliest campaign's for the global
    assets). end_offset=1: today's partition exists today, so today's signups ingest today."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=1)
