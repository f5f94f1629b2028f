"""The code location, assembled from settings: every campaign in one.

Global modules (one each: resources, executor, ingestion, the sensors, Notion, alerts, the
campaign folders, the cross-campaign overview...) get `definitions(settings, campaigns,
partitions)`, with daily partitions from the earliest campaign's start. Then, for each
campaign that loads, the asset factory `campaign_definitions(settings, campaign)` makes its
own assets, jobs and schedules, keyed and named with its prefix (`dagster_defs.names`) and
partitioned from its own start date.
A broken campaign folder only shows red in `campaign_folders`. Tests build their own
Definitions from other settings.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.dagster_defs import (
    alerts,
    campaigns,
    delivery,
    executor,
    forget,
    funnel,
    ingestion,
    jobs,
    notion,
    notion_edits,
    overview,
    pausing,
    resources,
    retention,
    schedules,
    sensors,
    sequences,
)
from xmas_pipeline.dagster_defs.partitions import daily_partitions
from xmas_pipeline.settings import Settings

GLOBAL_MODULES = (
    resources,
    executor,
    campaigns,
    overview,
    ingestion,
    sequences,
    notion,
    notion_edits,
    jobs,
    forget,
    retention,
    alerts,
)
# Each of these has `campaign_definitions(settings, campaign, partitions)`; `delivery`'s
# also takes every running campaign (the gap between nurture emails spans them).
CAMPAIGN_MODULES = (sequences, pausing, funnel, jobs, schedules)


def campaign_definitions(
    settings: Settings,
    campaign: Campaign,
    partitions: dg.PartitionsDefinition,
    send_job: Any,
    running: Mapping[str, Campaign],
) -> dg.Definitions:
    """The asset factory: one campaign's assets, checks, jobs and schedules, each closing
    over `campaign`, partitioned from its start date (`partitions`); `send_job` is its
    `jobs.send_job`; `running`: every campaign of the code location, by slug."""
    return dg.Definitions.merge(
        *(
            module.campaign_definitions(settings, campaign, partitions)
            for module in CAMPAIGN_MODULES
        ),
        delivery.campaign_definitions(settings, campaign, partitions, running),
        dg.Definitions(jobs=[send_job]),
    )


def build_definitions(settings: Settings) -> dg.Definitions:
    campaign_set = settings.campaigns()
    # One for every global partitioned asset and job: the earliest campaign's days onward.
    partitions = daily_partitions(campaign_set.earliest_start())
    own_partitions = {
        slug: daily_partitions(campaign.start_date)
        for slug, campaign in campaign_set.loaded.items()
    }
    send_jobs = {
        slug: jobs.send_job(campaign, own_partitions[slug])
        for slug, campaign in campaign_set.loaded.items()
    }
    return dg.Definitions.merge(
        *(module.definitions(settings, campaign_set, partitions) for module in GLOBAL_MODULES),
        sensors.definitions(settings, campaign_set, partitions, send_jobs),
        *(
            campaign_definitions(
                settings, campaign, own_partitions[slug], send_jobs[slug], campaign_set.loaded
            )
            for slug, campaign in campaign_set.loaded.items()
        ),
    )
