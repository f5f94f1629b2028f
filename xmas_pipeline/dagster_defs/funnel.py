"""The `funnel` asset: per segment and step, sent -> delivered -> opened -> clicked -> booked."""

from typing import Any

import dagster as dg
import pandas as pd

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.funnel import COUNT_COLUMNS, Funnel, compute_funnel, events_from_status
from xmas_pipeline.dagster_defs.charts import funnel_charts_metadata
from xmas_pipeline.dagster_defs.metadata import in_group, md_table
from xmas_pipeline.dagster_defs.names import campaign_key, prefix_of
from xmas_pipeline.dagster_defs.resources import StateStoreResource
from xmas_pipeline.settings import Settings

# Far enough ahead that every message of the campaign is in the sent log.
_LAST_DAY = "2999-12-31"


def read_funnel(store: StateStoreResource, campaign: Campaign) -> tuple[Funnel, pd.DataFrame]:
    """A campaign's funnel, counted from the store, and the sent log it was counted from."""
    backend = store.prepared(campaign)
    sent = backend.sent_log(campaign, campaign.start_date, _LAST_DAY)
    events = events_from_status(backend.delivery_status(campaign))
    return compute_funnel(sent, events, backend.load_sequences(campaign)), sent


def funnel_metadata(funnel: Funnel) -> dict[str, Any]:
    totals = funnel.totals()
    steps = funnel.steps.rename(columns={"step_id": "step"})
    conversion = funnel.conversion.assign(
        conversion=funnel.conversion["conversion"].map(lambda v: f"{v:.1%}")
    )
    return {
        # Plain numbers: the UI plots each of these across materializations.
        **{name: totals[name] for name in COUNT_COLUMNS},
        "delivery rate": funnel.rate("delivered"),
        "open rate": funnel.rate("opened"),
        "click rate": funnel.rate("clicked"),
        "bounce rate": funnel.rate("bounced"),
        "booking conversion": funnel.overall_conversion(),
        **{
            f"conversion {row['segment']}": float(row["conversion"])
            for row in funnel.conversion.to_dict("records")
        },
        "funnel by segment and step": md_table(
            steps.to_dict("records"), ["segment", "step", *COUNT_COLUMNS], limit=100
        ),
        "booking conversion by segment": md_table(
            conversion.to_dict("records"),
            ["segment", "contacts", "emailed", "booked", "conversion"],
        ),
        "delivery events": "from Resend webhooks",
    }


def campaign_definitions(
    settings: Settings, campaign: Campaign, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    @dg.asset(
        key_prefix=[prefix_of(campaign.slug)],
        **in_group(prefix_of(campaign.slug)),
        kinds={"python", "pandas"},
        deps=[campaign_key(campaign.slug, "deliveries")],
        description=(
            "The campaign funnel: per segment and step, how many emails were sent, "
            "delivered, opened, clicked, bounced, and how many people unsubscribed or "
            "booked a call after them; booking conversion per segment. Counted from the "
            "send log, the Resend events and the contacts' booking status. Charts: the "
            "funnel per segment, and emails sent per day by step."
        ),
    )
    def funnel(
        context: dg.AssetExecutionContext,
        store: StateStoreResource,
    ) -> dg.MaterializeResult:
        result, sent = read_funnel(store, campaign)
        totals = result.totals()
        context.log.info(
            f"{totals['sent']} sent, {totals['opened']} opened, {totals['booked']} booked"
        )
        metadata = {**funnel_metadata(result), **funnel_charts_metadata(result, sent)}
        return dg.MaterializeResult(metadata=metadata)

    return dg.Definitions(assets=[funnel])
