"""`xmas-pipeline notion setup` and `notion import`: for every campaign loaded (each
campaign folder of XMAS_CAMPAIGNS_DIR, or the one XMAS_CAMPAIGN_FILE names), or the one
`--campaign SLUG` names."""

from __future__ import annotations

import argparse
import sys

from xmas_pipeline.adapters.notion.http import NotionCallError
from xmas_pipeline.adapters.notion.setup import setup_notion
from xmas_pipeline.core.campaign import Campaign
from xmas_pipeline.core.campaign_folders import discover_campaigns
from xmas_pipeline.core.ports import StoreSchemaError
from xmas_pipeline.dagster_defs.resources import build_store, notion_resource
from xmas_pipeline.services.notion_import import ImportReport, import_from_notion
from xmas_pipeline.services.notion_import_all import CampaignsImportReport, import_all_campaigns
from xmas_pipeline.services.notion_sync import check_distinct
from xmas_pipeline.settings import Settings


def notion_campaigns(settings: Settings, slug: str | None) -> tuple[list[Campaign], int]:
    """The campaigns a `notion` command works on, and the exit code so far: `--campaign
    SLUG`, else every campaign folder that loads (XMAS_CAMPAIGNS_DIR), or, when
    XMAS_CAMPAIGN_FILE is set, that one campaign. A broken folder is reported and left
    out (exit code 1 at the end); an unknown slug is an error (2, nothing done)."""
    if settings.campaign_file:
        campaign = settings.campaign()
        if slug and slug != campaign.slug:
            print(
                f"error: XMAS_CAMPAIGN_FILE runs campaign {campaign.slug!r}, not {slug!r}",
                file=sys.stderr,
            )
            return [], 2
        return [campaign], 0
    results = discover_campaigns(settings.campaigns_dir)
    loaded = [r.campaign for r in results if r.campaign is not None]
    if slug:
        chosen = [c for c in loaded if c.slug == slug]
        broken = [r for r in results if r.campaign is None and r.slug == slug]
        if broken:
            print(f"error: {broken[0].error}", file=sys.stderr)
            return [], 2
        if not chosen:
            known = ", ".join(c.slug for c in loaded) or "none"
            print(
                f"error: no campaign {slug!r} in {settings.campaigns_dir} (campaigns: {known})",
                file=sys.stderr,
            )
            return [], 2
        return chosen, 0
    code = 0
    for result in results:
        if result.campaign is None:
            print(f"warning: campaign left out: {result.error}", file=sys.stderr)
            code = 1
    if not loaded:
        print(f"error: no campaign loads from {settings.campaigns_dir}", file=sys.stderr)
        return [], 2
    return loaded, code


def notion_setup(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if not settings.notion_enabled:
        print("error: NOTION_TOKEN is not set", file=sys.stderr)
        return 2
    campaigns, code = notion_campaigns(settings, args.campaign)
    if not campaigns:
        return code
    resource = notion_resource(settings)
    assert resource is not None  # NOTION_TOKEN is set
    notion = resource.client()
    try:
        check_distinct(campaigns, notion.schema)
        report = setup_notion(notion, campaigns, templates_db_id=settings.notion_templates_db_id)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NotionCallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        notion.close()
    print(report)
    return code


def notion_import(args: argparse.Namespace) -> int:
    """The existing pages and CRM contacts into the store, once (idempotent)."""
    settings = Settings.from_env()
    if not settings.notion_enabled:
        print("error: NOTION_TOKEN is not set", file=sys.stderr)
        return 2
    campaigns, code = notion_campaigns(settings, args.campaign)
    if not campaigns:
        return code
    resource = notion_resource(settings)
    assert resource is not None  # NOTION_TOKEN is set
    store = build_store(settings)
    notion = resource.client()
    report: ImportReport | CampaignsImportReport
    try:
        if args.campaign:  # that campaign's pages only: the others are not read
            report = import_from_notion(store=store, notion=notion, campaign=campaigns[0])
        else:  # every page, so one naming no campaign loaded is listed, never lost
            report = import_all_campaigns(store=store, notion=notion, campaigns=campaigns)
    except StoreSchemaError as exc:  # found while reading, before the store is touched
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # campaigns that clash in Notion: nothing read
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NotionCallError as exc:  # Notion unavailable while reading: run it again later
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        notion.close()
        store.dispose()
    print(report.summary())
    return code
