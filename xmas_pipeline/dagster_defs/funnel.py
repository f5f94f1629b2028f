"""The `funnel` asset: per segment and step, sent -> delivered -> opened -> clicked -> booked."""

from typing import Any

import dagster as dg
import pandas as pd

from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.funnel import COUNT_COLUMNS, Funnel, compute_funnel, events_from_status
from xmas_pipeline.dagster_defs.ingestion import OWNERS
from xmas_pipeline.dagster_defs.metadata import md_table
from xmas_pipeline.dagster_defs.resources import CampaignResource, StateStoreResource

FUNNEL_JOB = "refresh_funnel"
# Far enough ahead that every message of the campaign is in the sent log.
_LAST_DAY = "2999-12-31"


def delivery_events(backend: Any, campaign: Campaign) -> pd.DataFrame | None:
    """What Resend told us about each sent message, as funnel events (None: this store
    keeps no delivery status)."""
    loader = getattr(backend, "delivery_status", None)
    return None if loader is None else events_from_status(loader(campaign))


def funnel_metadata(funnel: Funnel, events_known: bool) -> dict[str, Any]:
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
        "delivery events": "from Resend webhooks" if events_known else "not kept by this store",
    }


def build_funnel() -> dict[str, list]:
    @dg.asset(
        group_name="delivery",
        kinds={"python", "pandas"},
        owners=OWNERS,
        deps=["deliveries"],
        description=(
            "The campaign funnel: per segment and step, how many emails were sent, "
            "delivered, opened, clicked, bounced, and how many people unsubscribed or "
            "booked a call after them; booking conversion per segment. Counted from the "
            "send log, the Resend events and the contacts' booking status."
        ),
    )
    def funnel(
        context: dg.AssetExecutionContext,
        store: StateStoreResource,
        campaign_config: CampaignResource,
    ) -> dg.MaterializeResult:
        camp = campaign_config.campaign
        backend = store.get()
        backend.prepare(camp)
        sent = backend.sent_log(camp, camp.start_date, _LAST_DAY)
        events = delivery_events(backend, camp)
        result = compute_funnel(sent, events, backend.load_sequences(camp))
        totals = result.totals()
        context.log.info(
            f"{totals['sent']} sent, {totals['opened']} opened, {totals['booked']} booked"
        )
        return dg.MaterializeResult(metadata=funnel_metadata(result, events is not None))

    job = dg.define_asset_job(
        FUNNEL_JOB,
        selection=dg.AssetSelection.assets(funnel),
        description="Recount the funnel (sends nothing).",
    )
    schedule = dg.ScheduleDefinition(
        name="funnel_schedule",
        job=job,
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Recounts the funnel every hour. It only reads: stopping it does not pause the "
            "campaign (that is send_schedule)."
        ),
    )
    return {"assets": [funnel], "jobs": [job], "schedules": [schedule]}
