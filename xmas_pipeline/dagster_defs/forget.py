"""Forgetting a person from the UI: the `forget_contact` job (`xmas-pipeline forget` is the
same from a shell). Its metadata shows counts and the hash's prefix, never the address.

The address is in the launch's run config, which Dagster keeps with the run: the job's
description says to delete the run afterwards (the README's Privacy section too).
"""

from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

from xmas_pipeline.adapters.inbox import Inbox
from xmas_pipeline.adapters.notion.sync import NotionSync
from xmas_pipeline.adapters.sql.forget import SqlForget
from xmas_pipeline.core.campaign_set import CampaignSet
from xmas_pipeline.core.forget import checked_address
from xmas_pipeline.services.forget import UNREACHABLE, ForgetReport, forget_person
from xmas_pipeline.settings import Settings

FORGET_JOB = "forget_contact"


class ForgetConfig(dg.Config):
    email: str = Field(description="The address to forget everywhere (any case).")


def forget_everywhere(
    settings: Settings, email: str, notion: NotionSync | None = None
) -> ForgetReport:
    """Forget `email` everywhere the settings point (ValueError, before anything is
    touched, for a malformed address)."""
    key = checked_address(email)
    store = SqlForget(settings.database_url)
    try:
        return forget_person(
            key,
            store=store,
            inbox=Inbox(settings.inbox_root),
            outbox=UPath(settings.outbox_dir),
            # Every campaign's Notion pages and CRM status (the default's alone while
            # no folder loads, so a broken folder never blocks an erasure).
            campaigns=list(settings.campaigns().loaded.values()) or [settings.campaign()],
            notion=notion,
        )
    finally:
        store.dispose()


def forget_metadata(report: ForgetReport) -> dict[str, Any]:
    return {
        "address hash (prefix)": report.hash_prefix,
        **report.counts(),
        "notion": report.notion,
        "not reachable": dg.MetadataValue.md("\n".join(f"- {item}" for item in UNREACHABLE)),
    }


def definitions(
    settings: Settings, campaigns: CampaignSet, partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    with_notion = settings.notion_enabled

    @dg.op(
        name="forget_person",
        required_resource_keys={"notion"} if with_notion else set(),
        description="Erase one person everywhere the pipeline holds them; keep a salted hash.",
    )
    def forget_op(context: dg.OpExecutionContext, config: ForgetConfig) -> dg.Output[int]:
        try:
            checked_address(config.email)
        except ValueError:
            # The reason would repeat the address: the error stays generic.
            raise dg.Failure(description="Nothing done: `email` is not a valid address.") from None
        notion = context.resources.notion.client() if with_notion else None
        try:
            report = forget_everywhere(settings, config.email, notion)
        finally:
            if notion is not None:
                notion.close()
        context.log.info(f"forgotten: hash {report.hash_prefix}…")
        removed = sum(report.counts().values())
        return dg.Output(removed, metadata=forget_metadata(report))

    @dg.job(
        name=FORGET_JOB,
        description=(
            "Forget a person: set `email` in the launchpad. Removes them from the store, "
            "the inbox, the outbox and Notion, keeps only a salted hash so they are never "
            "emailed again. The launch's config holds the address: delete this run after."
        ),
    )
    def forget_contact() -> None:
        forget_op()

    return dg.Definitions(jobs=[forget_contact])
