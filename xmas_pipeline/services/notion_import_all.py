"""`xmas-pipeline notion import` of several campaigns at once: the Email Sequence DB and
the CRM read once, each page given to the campaign its `Campaign` select names
(`notion_select`), so one person's pages in two campaigns become two sequences and no
campaign adopts another's page. A page naming no campaign loaded (or none) is counted and
listed, and left alone in Notion. Each campaign's pages are then imported as
`services.notion_import` does for one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xmas_pipeline.adapters.notion.props import page_values
from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.notion.workspace import SEQUENCES
from xmas_pipeline.adapters.sql.notion_pages import SqlNotionPages
from xmas_pipeline.adapters.sql.store import SqlStore
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.services.notion_import import ImportReport, import_pages, save_crm, text_of
from xmas_pipeline.services.notion_sync import check_distinct, load_schema


@dataclass
class CampaignsImportReport:
    """`notion import` of several campaigns: one report per campaign slug, and the pages
    whose Campaign select names none of them (never imported, never lost: listed)."""

    campaigns: dict[str, ImportReport] = field(default_factory=dict)
    unknown: list[tuple[str, str, str]] = field(default_factory=list)  # page, select, email
    crm_contacts: int = 0
    crm_saved: int = 0
    requests: int = 0
    seconds: float = 0.0

    def summary(self, limit: int = 10) -> str:
        lines: list[str] = []
        for slug, report in self.campaigns.items():
            lines.append(f"== {slug}")
            lines += [
                line
                for line in report.summary(limit).splitlines()
                if not line.startswith(("CRM contacts read", "Notion requests"))
            ]
        lines.append(f"CRM contacts read: {self.crm_contacts} ({self.crm_saved} recorded)")
        if self.unknown:
            lines.append(
                f"pages of no campaign loaded here (not imported, left in Notion): "
                f"{len(self.unknown)}"
            )
            for page_id, select, email in self.unknown[:limit]:
                shown = repr(select) if select else "no Campaign"
                lines.append(f"  {page_id} ({email or 'no address'}): {shown}")
            if len(self.unknown) > limit:
                lines.append(f"  ... and {len(self.unknown) - limit} more")
        lines.append(f"Notion requests: {self.requests} ({self.seconds:.1f} s)")
        return "\n".join(lines)


def import_all_campaigns(
    *,
    store: SqlStore,
    notion: NotionSync,
    campaigns: Sequence[Campaign],
    pages: SqlNotionPages | None = None,
) -> CampaignsImportReport:
    """Every campaign's pages in one read of the Email Sequence DB (and one of the CRM):
    each page goes to the campaign its Campaign select names (`notion_select`), so a
    person's page is never adopted by another campaign; a page naming no campaign given
    here, or none at all, is counted and listed, and left alone."""
    check_distinct(campaigns, notion.schema)
    started = time.monotonic()
    pages = pages or SqlNotionPages(store.url, engine=store.engine)
    result = CampaignsImportReport()
    first_request = notion.api.requests_sent
    try:
        for campaign in campaigns:
            load_schema(notion, pages, campaign)
        raw = notion.api.query(notion.source(SEQUENCES).id)
        crm = notion.all_contacts()
    finally:
        result.requests = notion.api.requests_sent - first_request
    crm_report = ImportReport()
    save_crm(pages, crm, crm_report)
    result.crm_contacts, result.crm_saved = crm_report.crm_contacts, crm_report.crm_saved
    by_select = {c.notion_select: c for c in campaigns}
    grouped: dict[str, list[dict[str, Any]]] = {c.slug: [] for c in campaigns}
    p = notion.schema.sequences
    for page in raw:
        values = page_values(page)
        select = text_of(values.get(p.campaign))
        owner = by_select.get(select)
        if owner is None:
            result.unknown.append((str(page["id"]), select, text_of(values.get(p.email))))
            continue
        grouped[owner.slug].append(page)
    for campaign in campaigns:
        report = ImportReport(crm_contacts=result.crm_contacts)
        import_pages(store, notion, campaign, pages, grouped[campaign.slug], crm, report)
        result.campaigns[campaign.slug] = report
    result.seconds = time.monotonic() - started
    return result
