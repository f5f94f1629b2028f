"""The campaigns the intake takes signups for, loaded once when the app is built.

Every folder of `XMAS_CAMPAIGNS_DIR` is loaded on its own (`core.campaign_folders`): a
broken one is kept as its problem (the file, relative to the campaigns directory, and the
reason) and never stops the others from being served. `XMAS_CAMPAIGN_FILE` instead makes
its one campaign the only one. A folder added or fixed later is seen after a restart (or
reload) of the intake: the set is fixed for the life of the process, like the settings.

A lookup answers the campaign, or raises the `Reject` its signup path answers: 404 for a
slug that names no campaign (the answer lists the served ones and the broken ones, and
never repeats what the caller sent), 503 with `Retry-After` for a campaign whose folder
is broken (a sender that retries gets through once the folder is fixed and the intake
restarted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xmas_pipeline.core.campaign import Campaign, load_campaign
from xmas_pipeline.core.campaign_folders import (
    CampaignFolderError,
    campaign_folders,
    load_campaign_folder,
)
from xmas_pipeline.intake.http import Reject
from xmas_pipeline.settings import Settings

logger = logging.getLogger("xmas_pipeline.intake")

# What a broken campaign's 503 asks a sender to wait: an operator has to fix the folder
# and restart the intake, so a retry much sooner would only fail again.
BROKEN_RETRY_AFTER_S = 300
# A problem is shown to anyone who posts: kept to one short line.
_MAX_PROBLEM = 300


def _one_line(text: str) -> str:
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= _MAX_PROBLEM else flat[: _MAX_PROBLEM - 3] + "..."


@dataclass(frozen=True)
class IntakeCampaigns:
    """The served campaigns by slug, the broken ones' problems by slug, and the default."""

    default_slug: str
    served: dict[str, Campaign]
    broken: dict[str, str]

    def get(self, slug: str) -> Campaign:
        """The campaign of `slug`, or the Reject its signup answers (404, 503)."""
        campaign = self.served.get(slug)
        if campaign is not None:
            return campaign
        problem = self.broken.get(slug)
        if problem is not None:
            raise Reject(
                503,
                f"campaign {slug} is unavailable: {problem}",
                {"Retry-After": str(BROKEN_RETRY_AFTER_S)},
            )
        # The slug is not repeated: it is whatever the caller sent, of any length.
        known = {"campaigns": sorted(self.served), "unavailable": sorted(self.broken)}
        raise Reject(404, "unknown campaign", details=known)

    def default(self) -> Campaign:
        """The default campaign (the original paths'), or the Reject they answer."""
        return self.get(self.default_slug)

    def summary(self) -> list[dict[str, Any]]:
        """Each campaign for `/health`: slug, name, whether it is the default, and a broken
        one's problem (public information: no secret is read from a campaign folder)."""
        rows: list[dict[str, Any]] = []
        for slug in sorted({*self.served, *self.broken}):
            campaign = self.served.get(slug)
            row: dict[str, Any] = {"slug": slug, "default": slug == self.default_slug}
            if campaign is not None:
                row.update({"name": campaign.name, "status": "ok"})
            else:
                row.update({"status": "broken", "problem": self.broken[slug]})
            rows.append(row)
        return rows


def _folder_problem(exc: CampaignFolderError, directory: Path) -> str:
    # The file relative to the campaigns directory: where the server keeps it is nobody's
    # business, and an OSError's message may repeat the absolute path too.
    try:
        shown = exc.file.relative_to(directory).as_posix()
    except ValueError:
        shown = exc.file.name
    reason = exc.reason.replace(f"{directory}/", "").replace(str(directory), "")
    return _one_line(f"{shown}: {reason}")


def _from_folders(settings: Settings) -> tuple[dict[str, Campaign], dict[str, str]]:
    served: dict[str, Campaign] = {}
    broken: dict[str, str] = {}
    directory = settings.campaigns_dir
    for folder in campaign_folders(directory):
        try:
            campaign = load_campaign_folder(folder, testing_mode=settings.testing_mode)
        except CampaignFolderError as exc:
            broken[folder.name] = _folder_problem(exc, directory)
            logger.error("campaign folder %s is broken: %s", folder.name, broken[folder.name])
            continue
        served[campaign.slug] = campaign
    if settings.default_campaign not in served and settings.default_campaign not in broken:
        broken[settings.default_campaign] = (
            f"no folder {settings.default_campaign}/ in the campaigns directory"
        )
        logger.error("the default campaign %s has no folder", settings.default_campaign)
    return served, broken


def load_intake_campaigns(settings: Settings) -> IntakeCampaigns:
    """Every campaign the intake serves, as the settings say (see the module's doc)."""
    if not settings.campaign_file:
        served, broken = _from_folders(settings)
        return IntakeCampaigns(settings.default_campaign, served, broken)
    try:
        campaign = load_campaign(settings.campaign_file, testing_mode=settings.testing_mode)
    except (ValueError, yaml.YAMLError, OSError):
        # Its slug is unknown: the default paths answer 503 under the configured default.
        # The details go to the log only (a validation error's text repeats the file's
        # values, and the path is the server's).
        logger.exception("the campaign file (XMAS_CAMPAIGN_FILE) could not be loaded")
        problem = "the campaign file (XMAS_CAMPAIGN_FILE) could not be loaded; see the log"
        return IntakeCampaigns(settings.default_campaign, {}, {settings.default_campaign: problem})
    return IntakeCampaigns(campaign.slug, {campaign.slug: campaign}, {})
