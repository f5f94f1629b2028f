"""People's edits in Notion, brought back (only with NOTION_TOKEN set):

- `notion_edits_sensor`: every XMAS_SENSOR_INTERVAL_SECONDS, reads what was edited in the
  Email Sequence DB, the CRM and the Templates DB since its cursors and applies it to the
  store (`services.notion_edits`): Paused and Unsubscribed, after-call statuses, templates.
  A tick with nothing changed costs one Notion request per database. It starts no run: its
  skip message says what changed.
"""

import dagster as dg

from xmas_pipeline.adapters.notion.http import NotionCallError
from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.dagster_defs.resources import (
    NotionResource,
    StateStoreResource,
)
from xmas_pipeline.services.notion_edits import apply_notion_edits_all
from xmas_pipeline.settings import Settings


class NotionEditsError(RuntimeError):
    """Notion could not be read: nothing of this tick was lost, the next one reads again."""


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    if not settings.notion_enabled:
        return dg.Definitions()

    @dg.sensor(
        name="notion_edits_sensor",
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Brings people's edits in Notion into the store: Paused and Unsubscribed on the "
            "Email Sequence DB, a Booking Status set to Completed or No-Show in the CRM, "
            "templates edited in the Templates DB, for every campaign. Reads only what was "
            "edited since its cursor (one request per database when nothing changed, the "
            "Email Sequence DB's once per campaign); starts no run."
        ),
    )
    def notion_edits_sensor(  # type: ignore[no-untyped-def]
        context: dg.SensorEvaluationContext,
        store: StateStoreResource,
        notion: NotionResource,
    ):
        running = list(campaigns.loaded.values())
        store.prepared(running[0])
        client = notion.client()
        try:
            # The CRM's and the Templates DB's edits are read once and go to every campaign
            # they touch (one cursor each: a read per campaign would lose them).
            report = apply_notion_edits_all(
                store=store.get(),
                pages=store.notion_pages(),
                notion=client,
                campaigns=running,
                templates_db_id=notion.templates_db_id,
            )
        except NotionCallError as error:
            # A failed tick, shown as such; the cursors stay where they were.
            raise NotionEditsError(
                f"Notion edits not read ({error}); the next tick tries again from the same point"
            ) from error
        finally:
            client.close()
        context.log.info(report.summary())
        return dg.SkipReason(report.summary())

    return dg.Definitions(sensors=[notion_edits_sensor])
