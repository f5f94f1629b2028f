"""The code location, assembled from settings: each module's `definitions(settings,
campaign, partitions)`, merged. Tests build their own from other settings."""

import dagster as dg

from xmas_pipeline.dagster_defs import (
    alerts,
    delivery,
    executor,
    forget,
    funnel,
    ingestion,
    jobs,
    notion,
    notion_edits,
    pausing,
    resources,
    retention,
    schedules,
    sensors,
    sequences,
)
from xmas_pipeline.dagster_defs.partitions import daily_partitions
from xmas_pipeline.settings import Settings

MODULES = (
    resources,
    executor,
    ingestion,
    sequences,
    delivery,
    pausing,
    funnel,
    notion,
    notion_edits,
    jobs,
    forget,
    retention,
    schedules,
    sensors,
    alerts,
)


def build_definitions(settings: Settings) -> dg.Definitions:
    campaign = settings.campaign()
    partitions = daily_partitions(campaign)  # one for every partitioned asset and job
    return dg.Definitions.merge(
        *(module.definitions(settings, campaign, partitions) for module in MODULES)
    )
