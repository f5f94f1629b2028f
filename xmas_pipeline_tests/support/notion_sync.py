"""One Notion sync pass over an SQL store, as one `notion_email_sequence` run makes it."""

from __future__ import annotations

from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.notion_queue import SqlNotionQueue
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.services.notion_sync import SyncReport, sync_to_notion


def sync_pass(
    store: SqlStore, notion: NotionSync, campaign: Campaign, holder: str = "test-sync"
) -> SyncReport:
    """Drain the store's Notion queue through `notion`, then close it: a run's client lives
    for one pass, so nothing cached in memory carries over to the next."""
    try:
        return sync_to_notion(
            snapshots=store.contact_snapshots,
            queue=SqlNotionQueue(store.url, engine=store.engine),
            pages=SqlNotionPages(store.url, engine=store.engine),
            notion=notion,
            campaign=campaign,
            holder=holder,
        )
    finally:
        notion.close()
