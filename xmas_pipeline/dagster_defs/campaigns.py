"""The campaign folders in the UI: the `campaign_folders` asset (group `campaigns`) lists
every folder the code location found, and its check `every_campaign_folder_loads` is red
while one is broken, naming the file and the reason. A broken folder stops nothing else:
every other campaign's assets, jobs and schedules load and run.

The folders are read when the code location loads, so the verdict is known then:
`campaign_folders_sensor` reports it (no run needed) at its first tick after a load that
changed it; materializing the asset reports it again.
"""

import json
from typing import Any

import dagster as dg

from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.dagster_defs.metadata import in_group, md_table
from xmas_pipeline.dagster_defs.names import prefix_of
from xmas_pipeline.settings import Settings

ASSET = dg.AssetKey("campaign_folders")
CHECK_NAME = "every_campaign_folder_loads"


def folder_rows(campaigns: CampaignSet) -> list[dict[str, str]]:
    """One row per campaign, loaded or broken, for the UI."""
    rows = [
        {
            "campaign": slug,
            "state": "loaded" + (" (default)" if slug == campaigns.default_slug else ""),
            "prefix": prefix_of(slug),
            "starts": campaign.start_date,
            "file": "",
            "reason": "",
        }
        for slug, campaign in campaigns.loaded.items()
    ]
    rows += [
        {
            "campaign": slug,
            "state": "BROKEN",
            "prefix": "",
            "starts": "",
            "file": broken.file,
            "reason": broken.reason,
        }
        for slug, broken in campaigns.broken.items()
    ]
    return rows


def folders_metadata(campaigns: CampaignSet) -> dict[str, Any]:
    return {
        "loaded": len(campaigns.loaded),
        "broken": len(campaigns.broken),
        "default campaign": campaigns.default_slug,
        "folders": md_table(
            folder_rows(campaigns), ["campaign", "state", "prefix", "starts", "file", "reason"]
        ),
    }


def folders_check(campaigns: CampaignSet, seen_by: str) -> dg.AssetCheckEvaluation:
    broken = list(campaigns.broken.values())
    return dg.AssetCheckEvaluation(
        asset_key=ASSET,
        check_name=CHECK_NAME,
        passed=not broken,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "broken": len(broken),
            "folders": md_table(
                [{"file": b.file, "reason": b.reason} for b in broken], ["file", "reason"]
            ),
            "seen by": seen_by,
        },
        description=(
            "every campaign folder loads"
            if not broken
            else "; ".join(f"{b.file}: {b.reason}" for b in broken)[:1000]
        ),
    )


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    @dg.asset(
        key=ASSET,
        **in_group("campaigns"),
        kinds={"yaml"},
        description=(
            f"The campaign folders of {settings.campaigns_dir} (or the one XMAS_CAMPAIGN_FILE) "
            "as the code location loaded them: each campaign, its asset prefix and start "
            "date, or the file at fault and why. A broken folder stops only its own campaign."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                CHECK_NAME,
                asset=ASSET,
                description=(
                    "Every campaign folder loads: red, naming the file and the reason, while "
                    "one is broken (fix it and reload the code location)."
                ),
            )
        ],
    )
    def campaign_folders(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        for broken in campaigns.broken.values():
            context.log.warning(
                f"campaign {broken.slug} not loaded: {broken.file}: {broken.reason}"
            )
        check = folders_check(campaigns, "campaign_folders")
        return dg.MaterializeResult(
            metadata=folders_metadata(campaigns),
            check_results=[
                dg.AssetCheckResult(
                    check_name=CHECK_NAME,
                    passed=check.passed,
                    severity=check.severity,
                    metadata=check.metadata,
                    description=check.description,
                )
            ],
        )

    # What the verdict is about: a load that changes it is reported once.
    verdict = json.dumps(
        {
            "loaded": sorted(campaigns.loaded),
            "broken": {b.slug: [b.file, b.reason] for b in campaigns.broken.values()},
        },
        sort_keys=True,
    )

    @dg.sensor(
        name="campaign_folders_sensor",
        minimum_interval_seconds=max(1, min(settings.sensor_interval_seconds, 60)),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Reports every_campaign_folder_loads (no run needed) after a code location load "
            "that changed which campaign folders load, so a broken one is red at once."
        ),
    )
    def campaign_folders_sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext,
    ):
        if context.cursor == verdict:
            return dg.SkipReason("the campaign folders are as last reported")
        context.update_cursor(verdict)
        return dg.SensorResult(
            skip_reason=f"{len(campaigns.loaded)} loaded, {len(campaigns.broken)} broken",
            asset_events=[folders_check(campaigns, "campaign_folders_sensor")],
        )

    return dg.Definitions(assets=[campaign_folders], sensors=[campaign_folders_sensor])
