"""The cross-campaign view: the `campaigns_overview` asset (group `campaigns`) shows the
emails each running campaign sent per day over the last two weeks (a table and a chart)
and every campaign's funnel side by side.

It is refreshed by one global job, `refresh_campaigns_overview`, started every hour by one
global schedule, `campaigns_overview_schedule`: however many campaigns run, the daemon
has one more tick per hour, not one per campaign. The counting itself is
`core.campaigns_overview`; each campaign's funnel is read as its own `funnel` reads it.
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.core.campaigns_overview import (
    ALL_CAMPAIGNS,
    DAY_COLUMN,
    DEFAULT_DAYS,
    MEASURE_COLUMN,
    funnels_side_by_side,
    sends_per_day,
)
from xmas_pipeline.core.funnel import Funnel
from xmas_pipeline.dagster_defs.charts import campaign_sends_chart, png_markdown
from xmas_pipeline.dagster_defs.funnel import read_funnel
from xmas_pipeline.dagster_defs.metadata import frame_table, in_group
from xmas_pipeline.dagster_defs.names import campaign_key
from xmas_pipeline.dagster_defs.resources import StateStoreResource
from xmas_pipeline.settings import Settings

ASSET = dg.AssetKey("campaigns_overview")
JOB = "refresh_campaigns_overview"
SCHEDULE = "campaigns_overview_schedule"
# Half past: the campaigns' funnels are recounted on the hour.
CRON = "30 * * * *"


def overview_metadata(
    per_day: pd.DataFrame, funnels: dict[str, Funnel], days: int, broken: int
) -> dict[str, Any]:
    """What the UI shows: plain numbers per campaign (plotted across materializations),
    the two tables and the chart."""
    slugs = list(funnels)
    newest_first = per_day.iloc[::-1]
    metadata: dict[str, Any] = {
        "campaigns": len(slugs),
        "campaigns not loaded": broken,
        "days shown": days,
    }
    for slug, funnel in funnels.items():
        totals = funnel.totals()
        metadata[f"sends in {days} days {slug}"] = int(per_day[slug].sum())
        metadata[f"emails sent {slug}"] = totals["sent"]
        metadata[f"booked {slug}"] = int(funnel.conversion["booked"].sum())
        metadata[f"booking conversion {slug}"] = funnel.overall_conversion()
    metadata["sends per day"] = frame_table(
        newest_first[[DAY_COLUMN, *slugs, ALL_CAMPAIGNS]], limit=days
    )
    metadata["sends per day chart"] = png_markdown(
        campaign_sends_chart(per_day, slugs),
        f"Emails sent per day over the last {days} days, one line per campaign",
        "Every accepted send, forced re-sends included, on the UTC day it was sent.",
    )
    metadata["funnels side by side"] = frame_table(
        funnels_side_by_side(funnels)[[MEASURE_COLUMN, *slugs]], limit=50
    )
    return metadata


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    running = dict(campaigns.loaded)

    @dg.asset(
        key=ASSET,
        **in_group("campaigns"),
        kinds={"python", "pandas"},
        deps=[campaign_key(slug, "deliveries") for slug in running],
        description=(
            f"Every running campaign side by side: the emails each sent per day over the "
            f"last {DEFAULT_DAYS} days (a table, newest day first, and a chart), and each "
            "campaign's funnel in one table (contacts, people emailed, emails sent, "
            "delivered, opened, clicked, bounced, unsubscribed, booked, rates). Counted "
            "from the store as each campaign's `funnel` counts it; refreshed every hour "
            f"by {SCHEDULE}."
        ),
    )
    def campaigns_overview(
        context: dg.AssetExecutionContext, store: StateStoreResource
    ) -> dg.MaterializeResult:
        logs: dict[str, pd.DataFrame] = {}
        funnels: dict[str, Funnel] = {}
        for slug, campaign in running.items():
            funnels[slug], logs[slug] = read_funnel(store, campaign)
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        per_day = sends_per_day(logs, today, DEFAULT_DAYS)
        context.log.info(
            ", ".join(f"{slug}: {int(per_day[slug].iloc[-1])} sent today" for slug in running)
            or "no campaign loaded"
        )
        return dg.MaterializeResult(
            metadata=overview_metadata(per_day, funnels, DEFAULT_DAYS, len(campaigns.broken))
        )

    job = dg.define_asset_job(
        JOB,
        selection=dg.AssetSelection.assets(ASSET),
        description="Recount the cross-campaign view (sends nothing).",
    )
    schedule = dg.ScheduleDefinition(
        name=SCHEDULE,
        job=job,
        cron_schedule=CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Recounts campaigns_overview every hour: one schedule for all the campaigns. "
            "It only reads: stopping it pauses no campaign."
        ),
    )
    return dg.Definitions(assets=[campaigns_overview], jobs=[job], schedules=[schedule])
